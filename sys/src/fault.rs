//! Fault-injection seam for tests.
//!
//! Every wrapper of this crate calls [`check`] with its [`SyscallKind`] right
//! before making the real syscall; if `check` fails, the wrapper returns that
//! error without calling the kernel and without recording a syscall in
//! [`crate::counter`].
//!
//! Without the cargo feature `fault-injection`, [`check`] is an
//! `#[inline(always)]` no-op returning `Ok(())`, so normal builds pay nothing.
//!
//! With the feature, each thread can `install` a deterministic
//! `FaultPlan`: which kinds of call to fail, with which errno, either with a
//! probability (from a small xorshift generator seeded by the plan's seed) or
//! on the n-th call of a kind. Plans are **per thread**, like the counter, so
//! parallel tests do not interfere. (Recovery paths: a faulted
//! [`close`](crate::fd::close) still closes the descriptor, a faulted
//! [`dup_onto`](crate::fd::dup_onto) still closes its target, and a faulted
//! `unlink` in [`open_tmp_regular_file`](crate::fd::open_tmp_regular_file)
//! still removes the file, so injected faults leak nothing.)
//!
#![cfg_attr(
    feature = "fault-injection",
    doc = r#"
```
use evmux_sys::counter::SyscallKind;
use evmux_sys::fault::{self, FaultPlan};
use std::io;

fault::install(FaultPlan::new(1).fail(SyscallKind::Poll, libc::EINTR, 1000));
let err = evmux_sys::poll::poll(&mut [], Some(std::time::Duration::ZERO)).unwrap_err();
assert_eq!(err.kind(), io::ErrorKind::Interrupted);
fault::clear();
```
"#
)]

use crate::counter::SyscallKind;
use std::io;

/// Whether this build has the `fault-injection` feature.
pub const ENABLED: bool = cfg!(feature = "fault-injection");

/// Asks the seam whether the next syscall of `kind` should fail.
///
/// Feature off: always `Ok(())`, inlined away.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn check(kind: SyscallKind) -> io::Result<()> {
    let _ = kind;
    Ok(())
}

/// Asks the seam whether the next syscall of `kind` should fail.
///
/// Counts the call against the current thread's plan (for
/// [`FaultPlan::fail_nth`]) and returns the injected error, if any. Returns
/// `Ok(())` when no plan is installed on this thread.
///
/// # Errors
///
/// The errno chosen by the plan, as `io::Error::from_raw_os_error(errno)`.
#[cfg(feature = "fault-injection")]
pub fn check(kind: SyscallKind) -> io::Result<()> {
    let errno = imp::STATE
        .try_with(|s| s.borrow_mut().as_mut().and_then(|a| a.check(kind)))
        .ok()
        .flatten();
    match errno {
        None => Ok(()),
        Some(errno) => {
            let _ = imp::INJECTED.try_with(|n| n.set(n.get() + 1));
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

#[cfg(feature = "fault-injection")]
pub use imp::{FaultPlan, clear, injected, install};

#[cfg(feature = "fault-injection")]
mod imp {
    use crate::counter::SyscallKind;
    use std::cell::{Cell, RefCell};

    thread_local! {
        pub(super) static STATE: RefCell<Option<Active>> = const { RefCell::new(None) };
        pub(super) static INJECTED: Cell<u64> = const { Cell::new(0) };
    }

    #[derive(Clone, Copy, Debug)]
    enum Rule {
        Probability {
            kind: SyscallKind,
            errno: i32,
            per_mille: u32,
        },
        Nth {
            kind: SyscallKind,
            n: u64,
            errno: i32,
        },
    }

    /// A deterministic plan of syscall failures for one thread.
    ///
    /// Rules are tried in the order they were added; the first one that fires
    /// decides the errno. Call numbers for [`fail_nth`](Self::fail_nth) count
    /// every [`check`](super::check) of that kind since [`install`], including
    /// calls failed by other rules.
    #[derive(Clone, Debug)]
    pub struct FaultPlan {
        seed: u64,
        rules: Vec<Rule>,
    }

    impl FaultPlan {
        /// An empty plan whose random choices derive from `seed` (the same
        /// seed and the same call sequence give the same failures).
        pub fn new(seed: u64) -> Self {
            FaultPlan {
                seed,
                rules: Vec::new(),
            }
        }

        /// Fails each call of `kind` with `errno` (e.g. `libc::EINTR`) with
        /// probability `probability_per_mille / 1000` (values above 1000 mean
        /// always).
        #[must_use]
        pub fn fail(mut self, kind: SyscallKind, errno: i32, probability_per_mille: u32) -> Self {
            self.rules.push(Rule::Probability {
                kind,
                errno,
                per_mille: probability_per_mille.min(1000),
            });
            self
        }

        /// Fails the `n`-th call (1-based, counted from [`install`]) of `kind`
        /// with `errno`. `n == 0` never fires.
        #[must_use]
        pub fn fail_nth(mut self, kind: SyscallKind, n: u64, errno: i32) -> Self {
            self.rules.push(Rule::Nth { kind, n, errno });
            self
        }
    }

    /// A plan in force: rules, RNG state and per-kind call numbers.
    #[derive(Debug)]
    pub(super) struct Active {
        rules: Vec<Rule>,
        rng: u64,
        calls: Vec<u64>,
    }

    impl Active {
        fn new(plan: FaultPlan) -> Self {
            // xorshift must not start at zero.
            let rng = if plan.seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                plan.seed
            };
            Active {
                rules: plan.rules,
                rng,
                calls: vec![0; SyscallKind::ALL.len()],
            }
        }

        fn next_rand(&mut self) -> u64 {
            // xorshift64 (Marsaglia).
            let mut x = self.rng;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.rng = x;
            x
        }

        pub(super) fn check(&mut self, kind: SyscallKind) -> Option<i32> {
            let call = &mut self.calls[kind.index()];
            *call += 1;
            let call = *call;
            for i in 0..self.rules.len() {
                let (fires, errno) = match self.rules[i] {
                    Rule::Nth { kind: k, n, errno } => (k == kind && n == call, errno),
                    Rule::Probability {
                        kind: k,
                        errno,
                        per_mille,
                    } => (
                        // Draw only for matching rules, so the sequence of
                        // decisions depends only on calls of that kind.
                        k == kind && self.next_rand() % 1000 < u64::from(per_mille),
                        errno,
                    ),
                };
                if fires {
                    return Some(errno);
                }
            }
            None
        }
    }

    /// Installs `plan` for the calling thread, replacing any previous plan and
    /// resetting [`injected`] and the per-kind call numbers.
    pub fn install(plan: FaultPlan) {
        STATE.with(|s| *s.borrow_mut() = Some(Active::new(plan)));
        INJECTED.with(|n| n.set(0));
    }

    /// Removes the calling thread's plan; later calls are not failed.
    /// [`injected`] keeps its value until the next [`install`].
    pub fn clear() {
        STATE.with(|s| *s.borrow_mut() = None);
    }

    /// How many faults were injected on the calling thread since the last
    /// [`install`].
    pub fn injected() -> u64 {
        INJECTED.with(Cell::get)
    }
}

#[cfg(all(test, feature = "fault-injection"))]
mod tests {
    use super::*;
    use crate::counter;
    use std::io::ErrorKind;
    use std::time::Duration;

    #[test]
    fn eintr_injected_into_poll_without_syscall() {
        let (r, _w) = crate::fd::pipe().unwrap();
        let mut fds = [crate::poll::PollFd::new(
            std::os::fd::AsRawFd::as_raw_fd(&r),
            crate::poll::POLLIN,
        )];
        install(FaultPlan::new(7).fail(SyscallKind::Poll, libc::EINTR, 1000));
        let before = counter::get(SyscallKind::Poll);
        for _ in 0..3 {
            let err = crate::poll::poll(&mut fds, Some(Duration::ZERO)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Interrupted);
            assert_eq!(err.raw_os_error(), Some(libc::EINTR));
        }
        assert_eq!(
            counter::get(SyscallKind::Poll),
            before,
            "faults are not syscalls"
        );
        assert_eq!(injected(), 3);
        clear();
        assert_eq!(
            crate::poll::poll(&mut fds, Some(Duration::ZERO)).unwrap(),
            0
        );
        assert_eq!(counter::get(SyscallKind::Poll), before + 1);
        assert_eq!(injected(), 3, "clear keeps the count");
    }

    #[test]
    fn nth_call_fails() {
        let (r, w) = crate::fd::pipe().unwrap();
        crate::fd::write(&w, b"abc").unwrap();
        install(FaultPlan::new(1).fail_nth(SyscallKind::Read, 2, libc::EIO));
        let mut buf = [0u8; 1];
        assert_eq!(crate::fd::read(&r, &mut buf).unwrap(), 1);
        let err = crate::fd::read(&r, &mut buf).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        assert_eq!(crate::fd::read(&r, &mut buf).unwrap(), 1);
        assert_eq!(crate::fd::read(&r, &mut buf).unwrap(), 1);
        assert_eq!(injected(), 1);
        // Other kinds are unaffected.
        crate::fd::write(&w, b"x").unwrap();
        clear();
    }

    #[test]
    fn clear_stops_faults_and_install_resets() {
        install(FaultPlan::new(3).fail(SyscallKind::Other, libc::EPERM, 1000));
        assert!(check(SyscallKind::Other).is_err());
        assert!(check(SyscallKind::Read).is_ok());
        clear();
        assert!(check(SyscallKind::Other).is_ok());
        assert_eq!(injected(), 1);
        install(FaultPlan::new(3));
        assert_eq!(injected(), 0);
        assert!(check(SyscallKind::Other).is_ok());
        clear();
    }

    #[test]
    fn plans_are_per_thread() {
        install(FaultPlan::new(3).fail(SyscallKind::Other, libc::EPERM, 1000));
        let other = std::thread::spawn(|| (check(SyscallKind::Other).is_ok(), injected()))
            .join()
            .unwrap();
        assert_eq!(other, (true, 0));
        assert!(check(SyscallKind::Other).is_err());
        clear();
    }

    #[test]
    fn probability_is_deterministic_per_seed() {
        let run = |seed| {
            install(FaultPlan::new(seed).fail(SyscallKind::Write, libc::EAGAIN, 300));
            let v: Vec<bool> = (0..200)
                .map(|_| check(SyscallKind::Write).is_err())
                .collect();
            clear();
            v
        };
        let a = run(42);
        assert_eq!(a, run(42));
        let fails = a.iter().filter(|&&f| f).count();
        assert!((20..=120).contains(&fails), "{fails} of 200 at 30%");
        assert_ne!(a, run(43));
        // 0 per mille never fires, 1000 always.
        install(
            FaultPlan::new(0)
                .fail(SyscallKind::Read, libc::EIO, 0)
                .fail(SyscallKind::Dup, libc::EMFILE, 5000),
        );
        assert!((0..100).all(|_| check(SyscallKind::Read).is_ok()));
        assert!((0..100).all(|_| check(SyscallKind::Dup).is_err()));
        clear();
    }

    #[test]
    fn faulted_close_still_closes() {
        let (r, w) = crate::fd::pipe().unwrap();
        let before = counter::get(SyscallKind::Close);
        install(FaultPlan::new(1).fail_nth(SyscallKind::Close, 1, libc::EIO));
        let err = crate::fd::close(w).unwrap_err();
        clear();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        assert_eq!(counter::get(SyscallKind::Close), before + 1);
        // The write end is gone: the read end sees EOF. (We do not probe the
        // old number itself: another test thread may have reused it.)
        let mut buf = [0u8; 1];
        assert_eq!(crate::fd::read(&r, &mut buf).unwrap(), 0);
    }
}
