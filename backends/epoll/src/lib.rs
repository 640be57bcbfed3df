//! The epoll(7) backend for evmux.
//!
//! epoll keeps the interest set in the kernel, so a wait costs
//! O(ready), not O(registered), but every change to that set is its own
//! `epoll_ctl(2)` syscall. The driver in `evmux-interest` makes sure only
//! the *net* changes reach this backend, once per wait: a read → write →
//! read flip between two waits reaches it as nothing at all.
//!
//! ## Portability notes
//! - Linux (and Android) only.
//! - Edge and oneshot are native (`EPOLLET`, `EPOLLONESHOT`); the driver
//!   asks for a re-check (`rearm`) when a program declares an edge or fired
//!   oneshot registration again, which is an `EPOLL_CTL_MOD`: the kernel
//!   re-polls the file and queues it if it is ready.
//! - `EPOLL_CTL_ADD` refuses regular files with `EPERM`. Regular files are
//!   always ready, so this backend keeps them in a user-space list and
//!   reports them `IN|OUT` itself: every wait for level, once per (re)arm
//!   for edge and oneshot. No wait blocks while such a report is due.
//! - A descriptor closed while registered leaves the epoll set with its last
//!   open file description; if it was `dup`ed, the kernel keeps reporting it
//!   under the old key, and the driver drops those reports by generation.
//! - `EPOLL_CTL_DEL` failing with `EBADF`/`ENOENT` means the descriptor was
//!   closed (and maybe reused) already; it is not an error.
//! - A `MOD` refused with `ENOENT` or `EBADF` (closed descriptor) and an `ADD`
//!   refused for any reason become error events for the token. An `ADD`
//!   answered with `EEXIST` (the kernel still holds a registration the driver
//!   gave up on after a failed change) is retried as `MOD`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg(any(target_os = "linux", target_os = "android"))]

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evmux_interest::{
    Backend, Capabilities, Change, Key, Output, RawEvent, Ready, Rejection, Trigger, Wake, Watch,
};
use evmux_sys::epoll::{Epoll, EpollEvent, flags};
use evmux_sys::eventfd::Notifier;

/// A regular file, kept ready in user space.
#[derive(Debug, Clone, Copy)]
struct FileEntry {
    fd: RawFd,
    key: Key,
    watch: Watch,
    /// Edge/oneshot: a report is due.
    pending: bool,
}

/// The epoll backend. See the crate documentation.
#[derive(Debug)]
pub struct EpollBackend {
    epoll: Epoll,
    buf: Vec<EpollEvent>,
    files: Vec<FileEntry>,
    file_pos: HashMap<RawFd, usize>,
    waker: Option<Arc<EpollWaker>>,
    start: Instant,
    /// Signal and process sources ([`Backend::open_source`]).
    #[cfg(target_os = "linux")]
    sources: evmux_sys::source::Sources,
}

/// Wakes an [`EpollBackend`] through an eventfd in its epoll set.
#[derive(Debug)]
struct EpollWaker {
    notifier: Notifier,
}

impl Wake for EpollWaker {
    fn wake(&self) -> io::Result<()> {
        self.notifier.notify()
    }
}

fn epoll_flags(w: Watch) -> u32 {
    let mut f = 0;
    if w.interest.is_readable() {
        f |= flags::EPOLLIN | flags::EPOLLRDHUP;
    }
    if w.interest.is_writable() {
        f |= flags::EPOLLOUT;
    }
    match w.trigger {
        Trigger::Level => {}
        Trigger::Edge => f |= flags::EPOLLET,
        Trigger::Oneshot => f |= flags::EPOLLONESHOT,
    }
    f
}

/// epoll's event bits have the same values as `poll(2)`'s on Linux, which
/// is what [`Ready`] uses; keep the ones the mapping knows.
fn ready_from_epoll(bits: u32) -> Ready {
    Ready::from_linux(bits)
}

const EPERM: i32 = 1;
const ENOENT: i32 = 2;
const EBADF: i32 = 9;
const EIO: i32 = 5;
const EEXIST: i32 = 17;

impl EpollBackend {
    /// A new epoll instance (`epoll_create1(EPOLL_CLOEXEC)`).
    ///
    /// # Errors
    /// `EMFILE`/`ENFILE` when no descriptor is left, `ENOMEM`.
    pub fn new() -> io::Result<EpollBackend> {
        Ok(EpollBackend {
            epoll: Epoll::new()?,
            buf: Vec::with_capacity(256),
            files: Vec::new(),
            file_pos: HashMap::new(),
            waker: None,
            start: Instant::now(),
            #[cfg(target_os = "linux")]
            sources: evmux_sys::source::Sources::default(),
        })
    }

    /// How many regular files are kept ready in user space.
    pub fn user_space_files(&self) -> usize {
        self.files.len()
    }

    fn remove_file(&mut self, fd: RawFd) {
        if let Some(pos) = self.file_pos.remove(&fd) {
            self.files.swap_remove(pos);
            if let Some(moved) = self.files.get(pos) {
                self.file_pos.insert(moved.fd, pos);
            }
        }
    }

    fn add_file(&mut self, fd: RawFd, key: Key, watch: Watch) {
        self.file_pos.insert(fd, self.files.len());
        self.files.push(FileEntry {
            fd,
            key,
            watch,
            pending: true,
        });
    }

    /// Applies one change; `Err(errno)` when the kernel refused it.
    fn apply(&mut self, c: &Change) -> Result<(), i32> {
        let errno = |e: io::Error| e.raw_os_error().unwrap_or(EIO);
        // A regular file this backend keeps in user space?
        if let Some(&pos) = self.file_pos.get(&c.fd)
            && self.files[pos].key == c.key
        {
            match c.new {
                None => self.remove_file(c.fd),
                Some(w) => {
                    let f = &mut self.files[pos];
                    f.watch = w;
                    f.pending = true;
                }
            }
            return Ok(());
        }
        match (c.old, c.new) {
            (_, None) => {
                // Removal. EBADF/ENOENT: already gone with the descriptor.
                let _ = self.epoll.delete_raw(c.fd);
                Ok(())
            }
            (None, Some(w)) => match self.epoll.add_raw(c.fd, epoll_flags(w), c.key.0) {
                Ok(()) => Ok(()),
                Err(e) => match e.raw_os_error() {
                    Some(EPERM) if evmux_sys::fd::is_regular_file_raw(c.fd).unwrap_or(false) => {
                        self.add_file(c.fd, c.key, w);
                        Ok(())
                    }
                    Some(EEXIST) => self
                        .epoll
                        .modify_raw(c.fd, epoll_flags(w), c.key.0)
                        .map_err(errno),
                    _ => Err(errno(e)),
                },
            },
            (Some(_), Some(w)) => self
                .epoll
                .modify_raw(c.fd, epoll_flags(w), c.key.0)
                .map_err(errno),
        }
    }
}

impl Backend for EpollBackend {
    fn name(&self) -> &'static str {
        "epoll"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_edge: true,
            native_oneshot: true,
            cheap_changes: false,
            max_fd: None,
        }
    }

    fn submit_and_wait(
        &mut self,
        changes: &[Change],
        out: &mut Output,
        max_events: usize,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        for c in changes {
            if let Err(errno) = self.apply(c) {
                // apply() never fails a removal (see the trait docs).
                debug_assert!(c.new.is_some());
                out.rejected.push(Rejection { key: c.key, errno });
            }
        }
        let max_events = max_events.max(1);
        // Regular files first: they are ready now. An edge or oneshot
        // file's report is consumed only once the wait succeeded, so a
        // failed epoll_wait does not lose it.
        let mut examined = 0;
        for f in &self.files {
            if out.events.len() >= max_events {
                break;
            }
            examined += 1;
            let due = match f.watch.trigger {
                Trigger::Level => true,
                Trigger::Edge | Trigger::Oneshot => f.pending,
            };
            if due {
                out.events.push(RawEvent {
                    key: f.key,
                    ready: (Ready::IN | Ready::OUT) & Ready::reportable(f.watch.interest),
                });
            }
        }
        let consume = |files: &mut [FileEntry]| {
            for f in files {
                f.pending = false;
            }
        };
        let room = max_events - out.events.len();
        if room == 0 {
            consume(&mut self.files[..examined]);
            return Ok(());
        }
        let timeout = if out.events.is_empty() && out.rejected.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        if self.buf.capacity() < room {
            self.buf.reserve(room - self.buf.len());
        }
        // Ask for no more than `room`: the rest stays queued in the kernel.
        let n = self.epoll.wait_max(&mut self.buf, room, timeout)?;
        consume(&mut self.files[..examined]);
        for ev in &self.buf[..n] {
            let key = Key(ev.data());
            if key == Key::WAKER {
                if let Some(w) = &self.waker {
                    // The kernel consumed every report of this wait: a
                    // failed drain must not drop them. The eventfd then
                    // stays readable and the next wait reports a wake-up
                    // the driver finds nothing behind.
                    let _ = w.notifier.drain();
                }
                out.events.push(RawEvent {
                    key,
                    ready: Ready::IN,
                });
                continue;
            }
            out.events.push(RawEvent {
                key,
                ready: ready_from_epoll(ev.events()),
            });
        }
        Ok(())
    }

    fn waker(&mut self) -> io::Result<Arc<dyn Wake>> {
        if let Some(w) = &self.waker {
            return Ok(w.clone());
        }
        let notifier = Notifier::new()?;
        self.epoll
            .add(notifier.as_fd(), flags::EPOLLIN, Key::WAKER.0)?;
        let w = Arc::new(EpollWaker { notifier });
        self.waker = Some(w.clone());
        Ok(w)
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Removes the registration at once (one `EPOLL_CTL_DEL`) instead of
    /// in the next batch. An epoll entry lives as long as its open *file*,
    /// not its descriptor: if the program closes the descriptor right after
    /// `forget` while the file stays open elsewhere (`dup`, `fork`), a
    /// deferred `EPOLL_CTL_DEL` would name a closed number (`EBADF`) and the
    /// entry would stay in the set for good, reporting readiness the driver
    /// must drop at every wait. A regular file kept in user space is
    /// dropped without a syscall. On an unexpected error (`ENOMEM`) the
    /// removal is left to the batch.
    fn forget_now(&mut self, fd: RawFd, key: Key, _old: Watch) -> bool {
        if let Some(&pos) = self.file_pos.get(&fd)
            && self.files[pos].key == key
        {
            self.remove_file(fd);
            return true;
        }
        match self.epoll.delete_raw(fd) {
            Ok(()) => true,
            Err(e) => matches!(e.raw_os_error(), Some(EBADF) | Some(ENOENT)),
        }
    }

    evmux_sys::backend_sources!(sources);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_bits_are_readiness_bits() {
        let all = flags::EPOLLIN
            | flags::EPOLLPRI
            | flags::EPOLLOUT
            | flags::EPOLLERR
            | flags::EPOLLHUP
            | flags::EPOLLRDHUP;
        assert_eq!(
            ready_from_epoll(all | flags::EPOLLET | flags::EPOLLONESHOT),
            Ready::IN | Ready::PRI | Ready::OUT | Ready::ERR | Ready::HUP | Ready::RDHUP
        );
        assert_eq!(ready_from_epoll(flags::EPOLLOUT), Ready::OUT);
        assert_eq!(ready_from_epoll(flags::EPOLLRDHUP), Ready::RDHUP);
        assert_eq!(ready_from_epoll(0), Ready::EMPTY);
    }
}
