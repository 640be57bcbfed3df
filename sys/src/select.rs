//! `select(2)` over fixed-size descriptor bitmaps.
//!
//! [`FdSet`](crate::select::FdSet) is our own bitmap of
//! [`FD_SETSIZE`](crate::select::FD_SETSIZE) bits, layout-compatible with
//! `libc::fd_set` (asserted at compile time): bit `fd % W` of word `fd / W`,
//! with `W` the bit width of a C `unsigned long`, exactly as glibc's
//! `FD_SET`/`FD_ISSET` lay it out. Its methods refuse numbers outside
//! `0..FD_SETSIZE` (they return `false` and touch nothing), so no bitmap
//! operation can reach memory out of range, which is the classic `fd_set`
//! overflow bug.
//!
//! [`select`](crate::select::select) takes the bitmaps by exclusive borrow
//! and refuses an `nfds` above `FD_SETSIZE` before calling the kernel, so
//! the kernel never reads or writes past the 128 bytes of a set.
//!
//! Two Linux behaviours callers must know (both checked by the tests below):
//! - a set holding a **closed** descriptor makes the whole call fail with
//!   `EBADF`, but only if the number is below the size of the process's
//!   descriptor table (`FDSize` in `/proc/self/status`, at least 64 and
//!   grown in steps as descriptors are opened). The kernel silently lowers
//!   `nfds` to that size, and it neither examines nor writes back the bits
//!   above it: a number that high is necessarily closed, and its bit comes
//!   back **still set**, as if it were ready, without being counted in the
//!   return value;
//! - the result sets only ever say "one of these conditions": read set
//!   `IN|RDNORM|RDBAND|HUP|ERR`, write set `OUT|WRNORM|WRBAND|ERR`, except set
//!   `PRI` (the kernel's `POLLIN_SET`, `POLLOUT_SET`, `POLLEX_SET`). Use
//!   [`crate::poll::poll`] to learn which.

use crate::counter::SyscallKind;
use crate::{cvt, enter};
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// How many descriptor numbers an [`FdSet`] holds: `0..FD_SETSIZE`.
#[allow(clippy::unnecessary_cast)]
pub const FD_SETSIZE: RawFd = libc::FD_SETSIZE as RawFd;

type Word = libc::c_ulong;
const WORD_BITS: usize = Word::BITS as usize;
const WORDS: usize = FD_SETSIZE as usize / WORD_BITS;

// libc's FD_SETSIZE is a `usize` on some platforms, a `c_int` on others.
#[allow(clippy::unnecessary_cast)]
const _: () = assert!(FD_SETSIZE as usize == libc::FD_SETSIZE as usize);
static_assertions::const_assert_eq!(FD_SETSIZE as usize % WORD_BITS, 0);
static_assertions::assert_eq_size!(FdSet, libc::fd_set);
static_assertions::const_assert!(
    std::mem::align_of::<FdSet>() >= std::mem::align_of::<libc::fd_set>()
);

/// A set of descriptor numbers in `0..FD_SETSIZE`, layout-compatible with
/// `libc::fd_set`.
///
/// Numbers outside the range are refused by every method (`false`, nothing
/// changed): they can never be set, so they are never handed to the kernel.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FdSet {
    bits: [Word; WORDS],
}

impl Default for FdSet {
    fn default() -> FdSet {
        FdSet::new()
    }
}

impl FdSet {
    /// An empty set (`FD_ZERO`).
    pub const fn new() -> FdSet {
        FdSet { bits: [0; WORDS] }
    }

    /// The word index and bit mask of `fd`, if it is in range.
    #[inline]
    fn locate(fd: RawFd) -> Option<(usize, Word)> {
        if (0..FD_SETSIZE).contains(&fd) {
            let fd = fd as usize;
            Some((fd / WORD_BITS, 1 << (fd % WORD_BITS)))
        } else {
            None
        }
    }

    /// Adds `fd` (`FD_SET`). Returns `false`, changing nothing, if `fd` is
    /// outside `0..FD_SETSIZE`.
    #[inline]
    pub fn set(&mut self, fd: RawFd) -> bool {
        match Self::locate(fd) {
            Some((w, m)) => {
                self.bits[w] |= m;
                true
            }
            None => false,
        }
    }

    /// Removes `fd` (`FD_CLR`). Returns `false`, changing nothing, if `fd`
    /// is outside `0..FD_SETSIZE`.
    #[inline]
    pub fn clear(&mut self, fd: RawFd) -> bool {
        match Self::locate(fd) {
            Some((w, m)) => {
                self.bits[w] &= !m;
                true
            }
            None => false,
        }
    }

    /// Whether `fd` is in the set (`FD_ISSET`); `false` for numbers outside
    /// `0..FD_SETSIZE`.
    #[inline]
    pub fn contains(&self, fd: RawFd) -> bool {
        match Self::locate(fd) {
            Some((w, m)) => self.bits[w] & m != 0,
            None => false,
        }
    }

    /// Empties the set (`FD_ZERO`).
    pub fn clear_all(&mut self) {
        self.bits = [0; WORDS];
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&w| w == 0)
    }

    /// How many numbers the set holds.
    pub fn count(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The highest number in the set, if any (so `nfds` is this plus one).
    pub fn highest(&self) -> Option<RawFd> {
        let (i, &w) = self.bits.iter().enumerate().rev().find(|(_, w)| **w != 0)?;
        let bit = WORD_BITS - 1 - w.leading_zeros() as usize;
        // Below FD_SETSIZE, so it fits.
        Some((i * WORD_BITS + bit) as RawFd)
    }

    /// Adds every number of `other`.
    pub fn union_with(&mut self, other: &FdSet) {
        for (a, b) in self.bits.iter_mut().zip(other.bits.iter()) {
            *a |= *b;
        }
    }

    /// The numbers in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.bits.iter().enumerate().flat_map(|(i, &word)| {
            let mut w = word;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = w.trailing_zeros() as usize;
                w &= w - 1;
                Some((i * WORD_BITS + bit) as RawFd)
            })
        })
    }

    fn as_mut_ptr(&mut self) -> *mut libc::fd_set {
        (self as *mut FdSet).cast::<libc::fd_set>()
    }
}

impl fmt::Debug for FdSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// The most a timeout is allowed to be: `i32::MAX` seconds (about 68
/// years). Longer timeouts are clamped.
const MAX_TIMEOUT_SECS: u64 = i32::MAX as u64;

/// Converts a wait timeout to the `struct timeval` of `select(2)`: `None`
/// stays `None` (a NULL pointer: wait forever), anything else is rounded
/// **up** to whole microseconds (so a wait never ends early: 1 ns becomes
/// 1 µs) and clamped to [`MAX_TIMEOUT_SECS`].
fn to_timeval(timeout: Option<Duration>) -> Option<libc::timeval> {
    let d = timeout?;
    let micros = d.as_nanos().div_ceil(1_000);
    let (secs, usecs) = (micros / 1_000_000, micros % 1_000_000);
    let (secs, usecs) = if secs > u128::from(MAX_TIMEOUT_SECS) {
        (MAX_TIMEOUT_SECS, 0)
    } else {
        // Both fit: secs ≤ i32::MAX, usecs < 1_000_000.
        (secs as u64, usecs as u64)
    };
    Some(libc::timeval {
        tv_sec: secs as libc::time_t,
        tv_usec: usecs as libc::suseconds_t,
    })
}

/// Waits until a descriptor of `read` is readable, one of `write` writable,
/// or one of `except` has an exceptional condition, the timeout expires or
/// a signal arrives. Returns the number of bits set in the result sets (a
/// descriptor ready in two sets counts twice).
///
/// The sets are overwritten with the result, for numbers below `nfds` (and,
/// on Linux, below the size of the descriptor table: see the module
/// documentation for the bits above it, which are left as they were).
/// `None` for a set passes a NULL pointer.
///
/// `timeout`: `None` blocks indefinitely; `Some(d)` is rounded **up** to
/// whole microseconds (never early) and clamped to `i32::MAX` seconds;
/// `Some(Duration::ZERO)` does not block. `Ok(0)` means the timeout expired.
///
/// `select(nfds, read, write, except, &tv)` — see select(2).
///
/// # Errors
///
/// - `EBADF`: a set holds a descriptor number that is not open (below the
///   descriptor table's size, see above); nothing was waited for and the
///   sets are unchanged;
/// - `EINTR` ([`io::ErrorKind::Interrupted`]): a signal arrived first; the
///   caller retries;
/// - `EINVAL`: `nfds` is negative or above [`FD_SETSIZE`] (refused here,
///   without a syscall, because the kernel would read and write past the
///   end of the sets), or the kernel found the timeout invalid;
/// - `ENOMEM`: no memory for the kernel's copies of the sets.
pub fn select(
    nfds: RawFd,
    read: Option<&mut FdSet>,
    write: Option<&mut FdSet>,
    except: Option<&mut FdSet>,
    timeout: Option<Duration>,
) -> io::Result<usize> {
    if !(0..=FD_SETSIZE).contains(&nfds) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut tv = to_timeval(timeout);
    let ptr = |s: Option<&mut FdSet>| s.map_or(std::ptr::null_mut(), FdSet::as_mut_ptr);
    let (r, w, e) = (ptr(read), ptr(write), ptr(except));
    let t = tv
        .as_mut()
        .map_or(std::ptr::null_mut(), |t| t as *mut libc::timeval);
    enter(SyscallKind::Select)?;
    // SAFETY: each non-null set pointer comes from an exclusive borrow of an
    // `FdSet`, which is exactly the size of `libc::fd_set` with at least its
    // alignment (asserted above); `nfds <= FD_SETSIZE` was checked, so the
    // kernel reads and writes at most the `FD_SETSIZE` bits of each set,
    // i.e. only memory we borrowed. The descriptor numbers in the sets are
    // merely looked up and polled (a closed one gives EBADF or is skipped),
    // so no descriptor is affected. `t` is NULL or points to our local
    // `timeval`, which the kernel may overwrite with the time left.
    let n = cvt(unsafe { libc::select(nfds, r, w, e, t) })?;
    Ok(usize::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{counter, fd};
    use std::os::fd::AsRawFd;

    const GUARD: Option<Duration> = Some(Duration::from_secs(10));

    #[test]
    fn bounds_are_refused_without_touching_memory() {
        let mut s = FdSet::new();
        for bad in [-1, i32::MIN, FD_SETSIZE, FD_SETSIZE + 1, i32::MAX] {
            assert!(!s.set(bad), "{bad}");
            assert!(!s.contains(bad), "{bad}");
            assert!(!s.clear(bad), "{bad}");
        }
        assert!(s.is_empty());
        assert_eq!(s, FdSet::new());
        for good in [0, 1, 63, 64, 65, FD_SETSIZE - 1] {
            assert!(s.set(good));
            assert!(s.contains(good));
        }
        assert_eq!(s.count(), 6);
        assert_eq!(s.highest(), Some(FD_SETSIZE - 1));
        assert!(!s.contains(2) && !s.contains(FD_SETSIZE - 2));
        assert_eq!(s.iter().collect::<Vec<_>>(), [0, 1, 63, 64, 65, 1023]);
        assert!(s.clear(FD_SETSIZE - 1));
        assert_eq!(s.highest(), Some(65));
        assert_eq!(format!("{s:?}"), "{0, 1, 63, 64, 65}");
        s.clear_all();
        assert!(s.is_empty() && s.highest().is_none() && s.iter().next().is_none());
    }

    #[test]
    fn layout_matches_the_libc_macros() {
        // What FdSet::set writes is what FD_ISSET reads, and what FD_SET
        // writes is what FdSet::contains reads.
        for fd in [0, 5, 31, 32, 63, 64, 100, FD_SETSIZE - 1] {
            let mut ours = FdSet::new();
            ours.set(fd);
            let p = ours.as_mut_ptr();
            for k in 0..FD_SETSIZE {
                // SAFETY: `p` points to a live FdSet, the size of fd_set
                // with at least its alignment; `k < FD_SETSIZE`.
                assert_eq!(unsafe { libc::FD_ISSET(k, p) }, k == fd, "{fd} {k}");
            }
            let mut theirs = FdSet::new();
            // SAFETY: as above, for `theirs`; `fd < FD_SETSIZE`.
            unsafe { libc::FD_SET(fd, theirs.as_mut_ptr()) };
            assert_eq!(theirs, ours, "{fd}");
        }
    }

    #[test]
    fn union_and_iter() {
        let mut a = FdSet::new();
        let mut b = FdSet::new();
        a.set(3);
        b.set(3);
        b.set(700);
        a.union_with(&b);
        assert_eq!(a.iter().collect::<Vec<_>>(), [3, 700]);
    }

    #[test]
    fn timeval_rounds_up_and_clamps() {
        // `time_t` and `suseconds_t` are `i64` here, `i32` on some targets.
        #[allow(clippy::useless_conversion)]
        let tv = |d| to_timeval(Some(d)).map(|t| (i64::from(t.tv_sec), i64::from(t.tv_usec)));
        assert!(to_timeval(None).is_none());
        assert_eq!(tv(Duration::ZERO), Some((0, 0)));
        assert_eq!(tv(Duration::from_nanos(1)), Some((0, 1)));
        assert_eq!(tv(Duration::from_nanos(1_001)), Some((0, 2)));
        assert_eq!(tv(Duration::from_micros(999_999)), Some((0, 999_999)));
        assert_eq!(tv(Duration::new(1, 999_999_001)), Some((2, 0)));
        assert_eq!(tv(Duration::from_millis(1500)), Some((1, 500_000)));
        assert_eq!(tv(Duration::MAX), Some((i64::from(i32::MAX), 0)));
    }

    fn set_of(fds: &[RawFd]) -> FdSet {
        let mut s = FdSet::new();
        for &fd in fds {
            assert!(s.set(fd));
        }
        s
    }

    #[test]
    fn pipe_readable_writable_and_counted() {
        let (r, w) = fd::pipe().unwrap();
        let (rn, wn) = (r.as_raw_fd(), w.as_raw_fd());
        let nfds = rn.max(wn) + 1;
        let before = counter::get(SyscallKind::Select);

        let mut rs = set_of(&[rn]);
        assert_eq!(
            select(nfds, Some(&mut rs), None, None, Some(Duration::ZERO)).unwrap(),
            0
        );
        assert!(rs.is_empty(), "results overwrite the set");

        fd::write(&w, b"x").unwrap();
        let mut rs = set_of(&[rn]);
        let mut ws = set_of(&[wn]);
        assert_eq!(
            select(nfds, Some(&mut rs), Some(&mut ws), None, GUARD).unwrap(),
            2
        );
        assert!(rs.contains(rn) && ws.contains(wn));

        // Hang-up is in the read set.
        drop(w);
        let mut buf = [0u8; 4];
        assert_eq!(fd::read(&r, &mut buf).unwrap(), 1);
        let mut rs = set_of(&[rn]);
        assert_eq!(select(nfds, Some(&mut rs), None, None, GUARD).unwrap(), 1);
        assert!(rs.contains(rn));

        assert_eq!(counter::get(SyscallKind::Select), before + 3);
    }

    #[test]
    fn nfds_out_of_range_is_einval_without_a_syscall() {
        let before = counter::get(SyscallKind::Select);
        for nfds in [-1, FD_SETSIZE + 1, i32::MAX] {
            let err = select(nfds, None, None, None, Some(Duration::ZERO)).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{nfds}");
        }
        assert_eq!(counter::get(SyscallKind::Select), before);
        // nfds == FD_SETSIZE with empty sets is fine.
        let mut s = FdSet::new();
        assert_eq!(
            select(FD_SETSIZE, Some(&mut s), None, None, Some(Duration::ZERO)).unwrap(),
            0
        );
        assert_eq!(counter::get(SyscallKind::Select), before + 1);
    }

    /// `FDSize` from `/proc/self/status`: the size of the descriptor table.
    fn fd_table_size() -> Option<RawFd> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("FDSize:"))?;
        line["FDSize:".len()..].trim().parse().ok()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn closed_number_above_the_descriptor_table_comes_back_set() {
        // The kernel lowers nfds to the table size and leaves the bits
        // above it alone: a closed number up there is not EBADF, and its
        // bit stays set without being counted.
        let Some(size) = fd_table_size() else { return };
        if size >= FD_SETSIZE {
            return; // the table grew (a test opened many descriptors)
        }
        let n = FD_SETSIZE - 1;
        let mut rs = set_of(&[n]);
        let got = match select(FD_SETSIZE, Some(&mut rs), None, None, Some(Duration::ZERO)) {
            Ok(got) => got,
            // Another test thread grew the table in between.
            Err(e) if fd_table_size() >= Some(FD_SETSIZE) => {
                assert_eq!(e.raw_os_error(), Some(libc::EBADF));
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert_eq!(got, 0);
        assert!(rs.contains(n));
    }

    #[test]
    fn closed_descriptor_in_a_set_is_ebadf() {
        // A number far above the ones other test threads get (the lowest
        // free ones), so that none of them reopens it between the close
        // and the call; an open descriptor above it keeps it inside the
        // descriptor table (the table never shrinks). Closing a low number
        // and checking afterwards that it stayed closed was not enough: a
        // thread could open and close it again around the check. Below
        // 511, so that the table grows to 512 at most and
        // `closed_number_above_the_descriptor_table_comes_back_set` still
        // finds it smaller than FD_SETSIZE.
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let at = i32::try_from(soft.saturating_sub(2))
            .unwrap_or(i32::MAX)
            .min(480);
        let (r, w) = fd::pipe().unwrap();
        let high = rustix::io::fcntl_dupfd_cloexec(&r, at).unwrap();
        let n = high.as_raw_fd();
        let _keep = rustix::io::fcntl_dupfd_cloexec(&w, n + 1).unwrap();
        assert!(n + 1 < 511);
        drop(high);
        let mut rs = set_of(&[n]);
        let res = select(n + 1, Some(&mut rs), None, None, Some(Duration::ZERO));
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EBADF));
    }
}
