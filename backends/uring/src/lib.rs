//! The io_uring backend for evmux.
//!
//! Readiness comes from **`IORING_OP_POLL_ADD`** requests, one per
//! registration, and every change of the interest set, every re-arm and
//! every level re-check is an SQE submitted by the very `io_uring_enter(2)`
//! that waits: a wait costs one syscall, whatever the batch holds (up to the
//! submission queue's 4096 SQEs) and however many registrations stay ready.
//!
//! # Design
//!
//! ## Level semantics from one-shot polls
//!
//! A poll request's completion says when the file *woke it up*, with the
//! mask of the wake-up, stashed then and posted later (task work). It says
//! nothing of whether the file is still ready at the next wait: "data
//! arrived, then the program read it all, then waited" yields a CQE saying
//! `POLLIN` for an empty pipe (the crate's tests provoke exactly this). A
//! multishot poll does not post again while the file merely stays ready
//! either. `IORING_POLL_ADD_LEVEL` is no way out: it was disabled at prep
//! time before Linux 6.0 shipped ("io_uring/poll: disable level triggered
//! poll", September 2022), and a `POLL_ADD` carrying it fails with `EINVAL`
//! on current kernels (checked on 6.18).
//!
//! One completion *is* exact: the one of arming. `POLL_ADD` calls the
//! file's `poll` method when it is submitted, and a one-shot poll on a
//! descriptor that is ready then completes at once, with the mask of that
//! moment, inside the `io_uring_enter` that submitted it; one on a
//! descriptor that is not ready stays armed. So the backend arms
//! **one-shot** polls and tells completions apart by *when they were
//! posted*:
//!
//! - **Posted during the wait's own `io_uring_enter`** (by arming, or by a
//!   wake-up while the enter ran): readiness at the time of the wait. Its
//!   mask (limited to [`Ready::reportable`] of the watch, merged over the
//!   completions of one registration) is reported, once per registration.
//! - **Posted before the wait began** (since the last wait): a *hint*. A
//!   wake-up caused by the program itself (its write into a pipe or socket
//!   it also watches) runs the poll's completion work on the way back from
//!   that write, so such a CQE is in the ring before the program can read
//!   the data, and the program may have read it since. Before it enters,
//!   the backend reaps these CQEs and re-arms each registration with a new
//!   one-shot `POLL_ADD` in the enter's own submission: if the descriptor is
//!   still ready, that poll completes at once, in the same enter, with the
//!   exact mask; if not, it stays armed (and the stale mask is dropped).
//! - **After a report**, the registration's one-shot poll has completed;
//!   the next wait's enter arms a new one. A descriptor that is still ready
//!   completes it at once and is reported again (level: at every wait while
//!   ready); one that is not stays armed until it becomes ready.
//!
//! No `poll(2)` re-check is needed, and nothing else: a level registration
//! that stays ready costs one SQE and one CQE per wait, no syscall of its
//! own. Between waits a reported registration has no poll armed (it holds
//! no file reference, and forgetting it costs nothing).
//!
//! The backend reports [`Capabilities::native_edge`] and
//! [`Capabilities::native_oneshot`] as false: the driver only sends
//! [`Trigger::Level`] watches and emulates edge and oneshot by changing the
//! watch.
//!
//! **Exactness, and its one limit.** A completion posted during the enter
//! by a wake-up rather than by arming carries the wake-up's mask (or, after
//! several wake-ups, the kernel's own re-poll at completion time). For the
//! program's own writes, reads and closes this cannot be stale: a thread's
//! syscalls run its pending completion work on their way back, so any
//! readiness the program consumed after a wake-up was posted *before* the
//! wait, as a hint. It can be stale in one race between threads: another
//! thread (or the network stack elsewhere) makes data readable, this thread
//! reads it, and only then does the other side's wake-up call run (a window
//! between publishing data and waking the wait queue, `pipe_write` and
//! `mutex_unlock` apart). The wait then reports the descriptor readable
//! once, although the program emptied it before the wait: a spurious
//! event, which a non-blocking read answers with `WouldBlock` (and edge or
//! oneshot registrations re-arm by the usual `would_block` or declaration).
//! Telling such a completion apart from a genuine wake-up during the wait
//! needs another look at the file after the completion, which is another
//! syscall (this backend used to pay it, a `poll(2)` re-check, on every
//! wait that reported anything). Single-threaded programs, the
//! request/reply churn workload and the conformance suite never meet the
//! race.
//!
//! ## The exception: `POLLRDHUP` on a write-only watch
//!
//! io_uring adds `POLLERR|POLLHUP|POLLRDHUP` to every poll's mask. On a
//! socket whose peer shut its write side, a write-only watch's one-shot poll
//! therefore completes at arming with `POLLRDHUP` alone while the socket is
//! not writable: nothing to report, and arming it again would complete at
//! once again. A one-shot completion with nothing reportable switches the
//! registration to a **multishot** poll (posting at arming with
//! `IORING_CQE_F_MORE`, then once per wake-up), until its watch changes.
//! Its completions are sorted as above; a report or a hint re-checks it
//! with a cancel and a new multishot poll, whose arming completion is exact;
//! completions with nothing reportable are dropped. The cost: the wait in
//! which a registration switches, and each wait after a report of such a
//! registration that is no longer writable, end early on an arming
//! completion with nothing to report, and the driver resumes them (one more
//! `io_uring_enter`).
//!
//! ## Changes
//!
//! - add: `POLL_ADD` (one-shot), `user_data` = the [`Key`], mask
//!   `POLLIN|POLLRDHUP` for readable, `POLLOUT` for writable (`POLLERR` and
//!   `POLLHUP` are always reported by the kernel);
//! - remove: `IORING_OP_ASYNC_CANCEL` by `user_data` (with
//!   `IORING_ASYNC_CANCEL_ALL` where available), `IOSQE_CQE_SKIP_SUCCESS`,
//!   normally submitted by `forget` itself rather than by the next batch
//!   ("Forget", below), and only if a poll is armed (a reported
//!   registration's has completed).
//!   Cancellation is used rather than `IORING_OP_POLL_REMOVE` because a
//!   remove can fail with `EALREADY` and leave the poll armed when it races
//!   with the poll's own completion work (the kernel's `io_poll_disarm`
//!   cannot take ownership then), whereas a cancel marks the poll cancelled
//!   in any state, and `CANCEL_ALL` catches every poll of the key;
//! - modify: a new `POLL_ADD` with the same key, preceded in the same
//!   submission by a cancel if a poll is still armed (a registration
//!   reported at the last wait has none: the modification is one SQE).
//!   `IORING_POLL_UPDATE_EVENTS` would save an SQE and a CQE, but the
//!   io-uring crate (0.7) has no builder for it, and an update goes through
//!   the same `io_poll_disarm` as a remove.
//!
//! The backend counts, per registration, the poll requests it submitted
//! whose final CQE (one without `IORING_CQE_F_MORE`) it has not seen yet, so
//! that the `-ECANCELED` of a replaced poll is told apart from the end of the
//! live one.
//!
//! ## Forget
//!
//! A removal is not left to the next batch: an armed poll holds a reference
//! to the file, and the program may close the descriptor right after
//! `forget`. [`Backend::forget_now`] first reaps the completions already
//! posted (the registration's one-shot poll may have fired since the last
//! wait, and then nothing is left to cancel); if a poll is still armed, it
//! queues the cancel SQE(s) of the registration, submits them (with
//! anything else still queued) in one `io_uring_enter(GETEVENTS,
//! min_complete = 0)`, and reaps the completion queue until every poll of
//! the registration has posted its final CQE.
//! The kernel posts that CQE from the cancelled poll's completion work,
//! which runs on the thread that armed the poll (this one) before the enter
//! returns, and frees the request, dropping its file reference, in the same
//! step. If a wake-up of the poll raced with the cancel, that work may be
//! queued a moment later: the backend then waits for it a little (at most
//! 20 ms; it normally takes microseconds).
//! The CQEs reaped on the way are handled as completions posted before a
//! wait: the forgotten key's are dropped; other registrations' readiness
//! becomes a hint, which the next wait re-checks in its own enter and
//! reports once per the mode's rules; a refusal is kept for the next wait;
//! a wake-up stays pending.
//!
//! **Forget on uring costs one `io_uring_enter` if a poll of the
//! registration is armed**, and nothing otherwise (declared and forgotten
//! between two waits, reported at the last wait or fired since, a regular
//! file, whose poll completes at once, or a refused addition).
//! An enter that fails consumed nothing: the backend reaps the completion
//! queue (making room if it was full) and enters again, up to 8 more times,
//! whatever the error (`EINTR`, `EAGAIN`, `EBUSY` are the expected ones; an
//! `ENOMEM` under memory pressure may pass too, and a persistent error
//! costs 8 failing calls once).
//!
//! It falls back to the batched removal (no syscall now; the next wait
//! cancels the polls, and the file stays open until then) exactly when:
//! - the polls were armed by another thread than the calling one, whose
//!   task work alone can complete them (see "Threads" below), or the
//!   registration is being forgotten already;
//! - an `io_uring_enter` fails nine times in a row, or a
//!   reaping error occurs (the waker's drain, a full submission queue that
//!   cannot be submitted);
//! - the completion is not seen within those 20 ms.
//!
//! ## Timeouts and the single syscall
//!
//! Every wait is one `io_uring_enter(to_submit, min_complete,
//! IORING_ENTER_GETEVENTS [| IORING_ENTER_EXT_ARG])`, after the completions
//! posted since the last wait were reaped (hints, above):
//! - `None`: `min_complete` ≥ 1, no timeout;
//! - `Some(t)`, `t > 0`: `IORING_ENTER_EXT_ARG` with a relative timespec
//!   (Linux ≥ 5.11), never shorter than `t`;
//! - `Some(0)`, or a wait that must not block (a wake-up is pending, a
//!   refusal is to be reported): `min_complete = 0`. `GETEVENTS` is still
//!   passed: it makes the kernel run the pending completion work before
//!   returning, which is what posts readiness CQEs for multishot polls armed
//!   by this very submission (one-shot polls that are ready complete inline,
//!   during the submission).
//!
//! A wait never has to avoid blocking because of possibly-ready
//! registrations: their re-arms are in its submission, and a ready one
//! completes at once, which ends the blocking part of the enter.
//!
//! A blocking wait whose batch cancels polls asks for one more completion
//! per cancel (each cancel is certain to produce one: the cancelled poll's
//! `-ECANCELED`, or, when the poll had ended already, that poll's final CQE
//! still unread, or the cancel's own `-ENOENT`), so that these do not end
//! the wait early. This is only done while every poll was submitted by the
//! waiting thread (below), since otherwise the `-ECANCELED` is posted by
//! another thread's task work.
//!
//! **Syscalls per wait:** one `io_uring_enter`, whatever is ready, changed,
//! re-armed or re-checked; plus one `read(2)` of the waker's eventfd when
//! the waker's poll fired. More only in these cases:
//! - a submission of more than 4096 SQEs (changes and re-arms together:
//!   more than ~2000 modifications, or more than 4096 level registrations
//!   that stay ready, or a mix) is submitted in chunks, one extra
//!   `io_uring_enter` per full submission queue;
//! - CQ overflow (below) costs one more per flush;
//! - a wait whose enter ends on completions that turn out to have nothing
//!   to report (an arming completion with only `POLLRDHUP` for a write-only
//!   watch, above; a completion for a registration forgotten or changed in
//!   the meantime; an `-ECANCELED` the backend did not count on, e.g. after
//!   the backend moved between threads) is resumed by the driver: one more
//!   `io_uring_enter`, as often as that happens.
//!
//! Removals are not part of the batch: **`forget` costs one
//! `io_uring_enter` if a poll is armed** (above), plus the eventfd
//! `read(2)` if it reaps a wake-up.
//!
//! ## Threads
//!
//! The backend is `Send`: a `Poller<UringBackend>` may be made and waited
//! on by one thread, then moved to another and driven there. io_uring runs
//! a poll's completion work (task work) on the thread that *submitted* the
//! poll, for a wake-up as for a cancel, and tells that thread by setting
//! `TIF_NOTIFY_SIGNAL`. `COOP_TASKRUN` only spares a thread running in user
//! space the interrupt: a thread blocked in an interruptible sleep is woken,
//! runs the work, and then restarts its call if the kernel restarts it on
//! its own, or fails it with `EINTR` if not (a socket read with
//! `SO_RCVTIMEO`, for instance). Polls left armed by a thread the backend
//! has left would do this to that thread at every wake-up, for as long as
//! they stay armed.
//!
//! **The rule.** Every wait compares [`std::thread::current`]'s id with the
//! thread that made the last submission (no syscall). When they differ, the
//! wait *moves* every armed poll, the registrations' and the waker's: it
//! cancels it and arms it again, both in the SQEs of its own
//! `io_uring_enter` (the change machinery above), so the move costs no
//! syscall of its own and the wait stays one `io_uring_enter`. Nothing is
//! lost: a poll re-armed on a ready descriptor completes at once, in that
//! enter. Nothing is duplicated: the old polls end with `-ECANCELED`, which
//! is dropped, and readiness reaped from them before the move is a hint,
//! re-checked by the new poll. From that wait on, the backend's polls
//! notify the new thread only. The test counters `QuirkStats::moves` and
//! `QuirkStats::rehomed` count the moves and the polls moved.
//!
//! **What the old thread still sees.** The kernel cannot hand a request
//! over to another thread: a cancelled poll's final completion work, which
//! frees it and drops its file reference, runs on the thread that submitted
//! it. So the move itself notifies the old thread, at the first wait after
//! the move (a blocking call of that thread that is not restarted fails
//! with `EINTR` then; normally once, as the kernel signals a thread only
//! when its task work list was empty). And when the ring is closed (the backend
//! dropped), the kernel sends task work, with an interrupt, to every live
//! thread that created the ring or submitted to it: the thread that made
//! the backend is notified once more then, even if it never waited on it.
//! Nothing else reaches the old thread. Programs whose other threads make
//! such calls should make the backend on the thread that drives it; moving
//! it before its first wait avoids the notification of the move, not that
//! of the drop.
//!
//! After a move the backend no longer counts on the cancels' completions
//! in a blocking wait (above), and a `forget` of a registration whose old
//! poll has not ended, or from another thread than the last waiting one,
//! is left to the next batch ("Forget", above).
//!
//! # Kernel requirements
//!
//! | feature | Linux | use |
//! |---|---|---|
//! | `IORING_POLL_ADD_MULTI` | 5.13 | required: the waker, and write-only watches of half-closed sockets |
//! | `IORING_FEAT_EXT_ARG` | 5.11 | required: timeouts in the waiting enter |
//! | `IORING_FEAT_NODROP` | 5.5 | required: no CQE is lost on overflow |
//! | `IOSQE_CQE_SKIP_SUCCESS` (`IORING_FEAT_CQE_SKIP`) | 5.17 | required: silent cancels |
//! | `IORING_SETUP_SUBMIT_ALL` | 5.18 | used when available: a failing SQE does not stop the batch |
//! | `IORING_SETUP_COOP_TASKRUN` | 5.19 | used when available: no IPI per wake-up |
//! | `IORING_ASYNC_CANCEL_ALL` | 5.19 | used when available (detected with `COOP_TASKRUN`) |
//!
//! `SINGLE_ISSUER`/`DEFER_TASKRUN` are not used: the backend is `Send`, and
//! those tie the ring to one task (`io_uring_enter` fails with `EEXIST`
//! from any other). `DEFER_TASKRUN` would also break the sorting above: it
//! runs all completion work inside `io_uring_enter`, so a wake-up caused by
//! the program's own write would be posted during the next wait, looking
//! fresh although the program may have read the data since. With or
//! without `COOP_TASKRUN` (which only drops the interrupt for a wake-up
//! from another CPU), completion work queued by a thread's own syscall runs
//! when that syscall returns; `COOP_TASKRUN` does not keep the work from
//! waking the submitting thread out of an interruptible sleep ("Threads",
//! above).
//!
//! # Kernel quirks handled
//!
//! - **Stale wake-ups** (a CQE saying `POLLIN` for data read since): posted
//!   before the wait, so re-checked by a new poll in the wait's own enter
//!   (above).
//! - **Regular files** have no wait queue: `POLL_ADD` completes at once with
//!   `POLLIN|POLLOUT`, as SEMANTICS requires, at every wait (one SQE per
//!   wait while the registration is watched).
//! - **`POLLRDHUP` forced into every mask**: the multishot exception above.
//! - **Multishot end** (a CQE without `IORING_CQE_F_MORE` and `res >= 0`,
//!   for the waker's poll or a multishot registration): the kernel stopped
//!   the poll (CQ overflow, or a file without a wait queue). Its readiness
//!   counts as any completion's, and a new `POLL_ADD` goes into the next
//!   submission.
//! - **`-ECANCELED`** never reaches the stream. It ends a poll this backend
//!   cancelled (removal, modification, re-check) or one the kernel
//!   cancelled (its submitting thread exited and a wake-up found it gone);
//!   in the latter case the registration is re-armed at the next wait.
//!   A cancel that finds nothing (the poll had ended) is not an error.
//! - **Refused additions**: a `POLL_ADD` whose CQE has a negative result other
//!   than `-ECANCELED` (`-EBADF` for a closed descriptor) becomes a
//!   [`Rejection`] with that errno when the driver asked for it (a new
//!   registration or a change); the rest of the batch still applies
//!   (`SUBMIT_ALL`), and the failed SQE's CQE ends the blocking part of the
//!   enter, so the call does not block. A re-arm the backend made on its own
//!   (after a report or a hint) that is refused means the number was closed
//!   under its registration: the registration falls silent (below).
//! - **CQ overflow**: the CQ ring has four times the SQ ring's entries, and
//!   the backend always empties it. If the kernel still had to keep CQEs
//!   aside (`IORING_SQ_CQ_OVERFLOW`), an `io_uring_enter(GETEVENTS)` flushes
//!   them before the wait returns, so they count for this wait.
//! - **The waker** is an eventfd ([`Notifier`]) watched by a multishot
//!   `POLL_ADD` with `user_data` = [`Key::WAKER`]. When it fires the eventfd
//!   is read; it is reported (once) only if a wake was actually pending, so a
//!   stale CQE gives no extra wake-up. Reading it wakes only writers
//!   (`POLLOUT`), which the poll does not watch: no spinning.
//! - **Stale CQEs** (a key whose generation is no longer in the table) are
//!   dropped, and not re-armed.
//! - **Threads**: a poll's completion work runs on the thread that submitted
//!   it. When the backend is used from another thread than the one that
//!   made its last submission, the first wait there cancels and re-adds
//!   every armed poll from the new thread, in its own enter ("Threads",
//!   above), so readiness never waits on another thread; the old thread is
//!   notified by the move itself (and again when the ring is closed).
//!   From then on a blocking wait no longer counts on the cancels'
//!   completions (above): one whose batch cancels polls may end early once,
//!   and the driver resumes it (one more `io_uring_enter`). The old polls
//!   end, and let go of their files, only when the old thread runs its task
//!   work: when it next passes through the kernel or is woken from an
//!   interruptible sleep by that work (at once if it has exited; not while
//!   it runs in user space or sleeps uninterruptibly). Until their final
//!   CQEs are reaped, a `forget` of such a registration, like a `forget`
//!   from another thread than the last waiting one, is left to the next
//!   batch rather than waiting for the other thread.
//! - **`EINTR`**: `io_uring_enter` submits before it waits, and reports an
//!   interrupted wait as success when it submitted something. An error
//!   therefore means nothing was consumed: the SQEs stay in the ring (the
//!   backend's bookkeeping already counts them) and go with the next enter,
//!   so a change is neither lost nor applied twice. The error is returned
//!   (`ErrorKind::Interrupted`); the driver retries with an empty batch.
//!   Readiness reaped after a failed enter is not reported by that call: it
//!   is re-checked by the next one.
//!
//! # Descriptors closed while registered
//!
//! An armed poll holds a reference to the *file*, not the number (epoll and
//! `poll(2)` hold none). So that this does not show:
//! - `forget` then `close` closes the file at once, as with the other
//!   backends: a socket's peer reads end of file and a pipe's writer gets
//!   `EPIPE` right after the `close`, before any wait
//!   (`tests/file_lifetime.rs`). `forget` does not wait for the next batch:
//!   through [`Backend::forget_now`] it cancels the registration's armed
//!   poll then and there (see "Forget" above).
//! - `close` without `forget`: while its poll is armed, the file stays open
//!   until the registration is forgotten, which then closes it at once;
//!   like a `dup`ed file in an epoll set. A re-arm (after a report, or to
//!   re-check a completion) looks at the *number*: a closed number is
//!   refused with `EBADF`, and the registration falls silent (it is not
//!   re-armed, so no error event either) until it is declared again with
//!   another watch or forgotten. SEMANTICS.md leaves this case unspecified,
//!   and the testkit's random scenarios perform no operation on any
//!   descriptor while a closed one is still registered.
//!
//! # Example
//!
//! ```
//! use std::os::fd::AsRawFd;
//! use std::time::Duration;
//! use evmux_interest::{Events, Interest, Mode, Poller, Token};
//! use evmux_uring::UringBackend;
//!
//! if !evmux_uring::is_supported() {
//!     return Ok(()); // io_uring refused here (sysctl, seccomp, old kernel)
//! }
//! let mut poller = Poller::new(UringBackend::new()?);
//! let (r, w) = evmux_sys::fd::pipe()?;
//! poller.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)?;
//! evmux_sys::fd::write(&w, b"x")?;
//! let mut events = Events::with_capacity(16);
//! // One io_uring_enter submits the POLL_ADD, which completes at once (the
//! // pipe is readable), and collects that completion: the whole wait.
//! poller.get_next_event(&mut events, Some(Duration::ZERO))?;
//! assert_eq!(events.iter().next().unwrap().token, Token(1));
//! // Still readable: the next wait re-arms the poll in its own enter, and
//! // reports it again.
//! poller.get_next_event(&mut events, Some(Duration::ZERO))?;
//! assert_eq!(events.iter().next().unwrap().token, Token(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![cfg(target_os = "linux")]

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, OnceLock};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use evmux_interest::{
    Backend, Capabilities, Change, Interest, Key, Output, RawEvent, Ready, Rejection, Trigger,
    Wake, Watch,
};
use evmux_sys::counter::{self, SyscallKind};
use evmux_sys::eventfd::Notifier;
use evmux_sys::poll::{POLLIN, POLLOUT, POLLRDHUP};
use io_uring::types::{CancelBuilder, SubmitArgs, Timespec};
use io_uring::{EnterFlags, IoUring, cqueue, opcode, squeue, types};

/// Submission queue entries: a batch of up to this many SQEs costs one
/// `io_uring_enter`.
pub const SQ_ENTRIES: u32 = 4096;
/// Completion queue entries.
pub const CQ_ENTRIES: u32 = 4 * SQ_ENTRIES;

/// `user_data` of cancel SQEs. As a [`Key`] it would be slot index
/// `u32::MAX - 1`, which the driver cannot reach (its slot table would need
/// 2^32 entries); `u64::MAX` is [`Key::WAKER`].
const CANCEL_USER_DATA: u64 = u64::MAX - 1;

/// How long `forget` waits, at most, for the cancelled polls of the
/// registration to complete before it leaves the removal to the next batch.
/// Only reached if the kernel's completion work for the cancel is delayed
/// (it normally runs within the `io_uring_enter` that submits the cancel).
const FORGET_PATIENCE: Duration = Duration::from_millis(20);

/// How many times `forget` tries its `io_uring_enter` again after it
/// failed (see the crate docs, "Forget").
const FORGET_RETRIES: u32 = 8;

/// Checks the fault seam and counts one syscall of `kind`, as `evmux-sys`'s
/// wrappers do.
fn syscall(kind: SyscallKind) -> io::Result<()> {
    evmux_sys::fault::check(kind)?;
    counter::record(kind);
    Ok(())
}

/// Why io_uring cannot be used: the payload of the [`io::Error`] that
/// [`UringBackend::new`] returns (reach it with `get_ref()` and
/// `downcast_ref`). The error's kind is the one of the errno, when there is
/// one (`PermissionDenied` for `EPERM`, `Unsupported` for `ENOSYS`).
#[derive(Debug)]
pub struct Unavailable {
    errno: Option<i32>,
    reason: String,
}

impl Unavailable {
    /// The errno `io_uring_setup(2)` failed with, if it failed (`None` when
    /// the ring was created but lacks a required feature).
    pub fn errno(&self) -> Option<i32> {
        self.errno
    }

    /// Why, in words.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "io_uring is unavailable: {}", self.reason)?;
        if let Some(errno) = self.errno {
            write!(f, " ({})", io::Error::from_raw_os_error(errno))?;
        }
        Ok(())
    }
}

impl std::error::Error for Unavailable {}

fn unavailable(errno: Option<i32>, kind: io::ErrorKind, reason: String) -> io::Error {
    io::Error::new(kind, Unavailable { errno, reason })
}

/// Turns a failed `io_uring_setup` into an explanation.
fn setup_error(e: io::Error) -> io::Error {
    let Some(errno) = e.raw_os_error() else {
        return e;
    };
    let reason = match errno {
        libc::ENOSYS => "io_uring_setup(2) is not implemented: the kernel was built without \
                         CONFIG_IO_URING, or a seccomp filter (e.g. a container runtime's) \
                         blocks it"
            .to_owned(),
        libc::EPERM => {
            // Error path only: the open/read/close of /proc count as one.
            counter::record(SyscallKind::Other);
            match std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .map(|s| s.trim().to_owned())
                .as_deref()
            {
                Ok("2") => "disabled for every process by the sysctl \
                            kernel.io_uring_disabled = 2"
                    .to_owned(),
                Ok("1") => "restricted by the sysctl kernel.io_uring_disabled = 1 to \
                            privileged processes and members of kernel.io_uring_group"
                    .to_owned(),
                _ => "io_uring_setup(2) refused with EPERM (a seccomp or LSM policy, or \
                      the kernel.io_uring_disabled sysctl)"
                    .to_owned(),
            }
        }
        libc::EINVAL => "the kernel refused the ring parameters (Linux too old?)".to_owned(),
        libc::ENOMEM => "no memory for the rings (RLIMIT_MEMLOCK on Linux < 5.12?)".to_owned(),
        libc::EMFILE | libc::ENFILE => "no descriptor left for the ring".to_owned(),
        _ => "io_uring_setup(2) failed".to_owned(),
    };
    unavailable(Some(errno), e.kind(), reason)
}

/// A ring with the features this backend needs. Returns the ring and the
/// set-up level: 2 with `SUBMIT_ALL` and `COOP_TASKRUN` (Linux ≥ 5.19, which
/// also has `IORING_ASYNC_CANCEL_ALL`), 1 with `SUBMIT_ALL` only, 0 without.
fn setup(sq: u32, cq: u32) -> io::Result<(IoUring, u8)> {
    // Newest flags first; EINVAL means the kernel does not know one of them.
    // Level 2: SUBMIT_ALL (5.18) and COOP_TASKRUN (5.19); 1: SUBMIT_ALL; 0:
    // none.
    let build = |level: u8| -> io::Result<IoUring> {
        syscall(SyscallKind::IoUringSetup)?;
        let mut b = IoUring::builder();
        b.setup_cqsize(cq).setup_clamp();
        if level >= 1 {
            b.setup_submit_all();
        }
        if level >= 2 {
            b.setup_coop_taskrun();
        }
        b.build(sq)
    };
    let mut level = 2;
    let ring = loop {
        match build(level) {
            Ok(ring) => break ring,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && level > 0 => level -= 1,
            Err(e) => return Err(setup_error(e)),
        }
    };

    let p = ring.params();
    let missing = [
        (p.is_feature_nodrop(), "IORING_FEAT_NODROP (Linux 5.5)"),
        (p.is_feature_ext_arg(), "IORING_FEAT_EXT_ARG (Linux 5.11)"),
        (
            p.is_feature_skip_cqe_on_success(),
            "IORING_FEAT_CQE_SKIP (Linux 5.17)",
        ),
    ]
    .iter()
    .filter(|(ok, _)| !ok)
    .map(|(_, name)| *name)
    .collect::<Vec<_>>();
    if !missing.is_empty() {
        return Err(unavailable(
            None,
            io::ErrorKind::Unsupported,
            format!(
                "the kernel lacks {}; Linux 5.17 or later is required",
                missing.join(", ")
            ),
        ));
    }
    Ok((ring, level))
}

/// Whether io_uring can be used here (kernel support, sysctl, seccomp,
/// required features). Probed once per process by creating a small ring.
pub fn is_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| setup(2, 8).is_ok())
}

/// The poll mask for a watched interest.
fn poll_mask(interest: Interest) -> u32 {
    let mut mask = 0;
    if interest.is_readable() {
        mask |= (POLLIN | POLLRDHUP) as u16;
    }
    if interest.is_writable() {
        mask |= POLLOUT as u16;
    }
    u32::from(mask)
}

/// A poll CQE's result as `revents` (a poll mask fits in 16 bits).
fn revents_of(res: i32) -> i16 {
    (res & 0xffff) as u16 as i16
}

/// `revents` as a [`Ready`] mask (`POLLNVAL` never comes from io_uring: a
/// closed number is refused with `-EBADF`).
fn ready_from_revents(revents: i16) -> Ready {
    Ready::from_linux(u32::from(revents.cast_unsigned()))
}

/// One registration as the kernel should see it, and the state of its
/// poll requests.
#[derive(Copy, Clone, Debug)]
struct Reg {
    key: Key,
    fd: RawFd,
    interest: Interest,
    /// `POLL_ADD`s submitted (or queued) for this key whose final CQE (no
    /// `F_MORE`) has not been seen. 0: no poll is armed.
    instances: u32,
    /// One of `instances` may be a poll the backend has not cancelled (the
    /// live one). Cleared by a cancel, or when `instances` reaches 0; kept
    /// when unsure (a re-arm then cancels first, harmlessly).
    live: bool,
    /// A new poll is to be submitted at the next submission (listed in
    /// [`UringBackend::to_arm`]): a new registration, a change, a report
    /// (level re-check), a hint, or a poll that ended.
    arm: bool,
    /// The pending `arm` is for a change the driver asked for: its refusal
    /// is a [`Rejection`].
    changed: bool,
    /// The last `POLL_ADD` was a re-arm the backend made on its own: its
    /// refusal (`-EBADF`, the number was closed under the registration)
    /// makes the registration silent instead of an error event.
    internal: bool,
    /// Refused on a re-arm: the number was closed. Not armed again until
    /// the driver changes the watch.
    silent: bool,
    /// Arm multishot polls: a one-shot poll completed with nothing
    /// reportable (`POLLRDHUP`, which io_uring always watches, on a
    /// write-only watch) and would complete at once again. Until the watch
    /// changes.
    multi: bool,
    /// Of `instances`, the polls cancelled by [`UringBackend::migrate`]: their
    /// final CQE is posted by the thread that submitted them, whenever it
    /// next runs its task work.
    foreign: u32,
    /// Forgotten by the driver ([`Backend::forget_now`]): its polls are
    /// cancelled, its CQEs are only counted, and it is dropped once none is
    /// left (or by the removal in the next batch).
    forgetting: bool,
    /// Readiness from completions posted during this wait's enter, merged.
    ready: Ready,
    /// Listed in [`UringBackend::fresh`] (this wait has readiness for it).
    fresh: bool,
    /// Re-armed by this wait because of a hint (listed in
    /// [`UringBackend::checks`]).
    checking: bool,
}

impl Reg {
    fn new(key: Key, fd: RawFd, interest: Interest) -> Reg {
        Reg {
            key,
            fd,
            interest,
            instances: 0,
            live: false,
            arm: false,
            changed: false,
            internal: false,
            silent: false,
            multi: false,
            foreign: 0,
            forgetting: false,
            ready: Ready::EMPTY,
            fresh: false,
            checking: false,
        }
    }
}

/// An SQE waiting for room in the submission queue.
#[derive(Copy, Clone, Debug)]
enum Sqe {
    /// A `POLL_ADD`, one-shot or multishot.
    Add {
        key: Key,
        fd: RawFd,
        mask: u32,
        multi: bool,
    },
    /// An `ASYNC_CANCEL` of every poll with this key.
    Cancel { key: Key },
}

/// The io_uring entry for an [`Sqe`].
fn sqe_entry(sqe: Sqe, cancel_all: bool) -> squeue::Entry {
    match sqe {
        Sqe::Add {
            key,
            fd,
            mask,
            multi,
        } => opcode::PollAdd::new(types::Fd(fd), mask)
            .multi(multi)
            .build()
            .user_data(key.0),
        Sqe::Cancel { key } => {
            let entry = if cancel_all {
                opcode::AsyncCancel2::new(CancelBuilder::user_data(key.0).all()).build()
            } else {
                opcode::AsyncCancel::new(key.0).build()
            };
            // A cancel's own CQE only when it fails (found nothing, without
            // CANCEL_ALL): the cancelled poll posts -ECANCELED anyway.
            entry
                .flags(squeue::Flags::SKIP_SUCCESS)
                .user_data(CANCEL_USER_DATA)
        }
    }
}

/// Wakes a [`UringBackend`] through an eventfd its ring polls.
#[derive(Debug)]
struct UringWaker {
    notifier: Notifier,
}

impl Wake for UringWaker {
    fn wake(&self) -> io::Result<()> {
        self.notifier.notify()
    }
}

/// The waker's state inside the backend.
#[derive(Debug)]
struct WakerSlot {
    shared: Arc<UringWaker>,
    /// As [`Reg::instances`].
    instances: u32,
    /// A wake was drained from the eventfd and not reported yet.
    pending: bool,
    /// No poll is armed: arm one at the next submission.
    needs_arm: bool,
}

/// Counts of the kernel quirks the backend met, and of its re-arms, for
/// tests.
#[doc(hidden)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct QuirkStats {
    /// Polls that ended without the backend cancelling them and without a
    /// readiness completion of a one-shot poll: a multishot poll's CQE
    /// without `F_MORE` (`res >= 0`: CQ overflow, a file without wait
    /// queue), or an `-ECANCELED` the backend did not ask for, with no
    /// other poll left for the key.
    pub ended: u64,
    /// `POLL_ADD`s the backend submitted on its own, not for a change: the
    /// re-arm of a registration after a report (the level re-check), to
    /// re-check a hint, or after its poll ended.
    pub rearmed: u64,
    /// Enters made to flush CQEs the kernel kept aside (CQ overflow).
    pub overflow_flushes: u64,
    /// CQEs dropped because their key is no longer registered.
    pub stale: u64,
    /// Hints (readiness completions posted before a wait) that the wait
    /// re-checked with a new poll in its own enter.
    pub rechecked: u64,
    /// Of those, the ones the new poll found not ready (a stale or spurious
    /// wake-up, or readiness that went away): nothing reported.
    pub filtered: u64,
    /// Registrations switched to multishot polls because a one-shot poll
    /// completed with nothing reportable (`POLLRDHUP` on a write-only
    /// watch).
    pub multishot: u64,
    /// `forget`s of an armed registration whose polls were cancelled, and
    /// seen completed, at once (one `io_uring_enter` each).
    pub forgotten_now: u64,
    /// `forget`s of an armed registration left to the next batch instead:
    /// the polls were armed by another thread, or the cancellation could not
    /// be submitted or seen completed in time.
    pub forget_deferred: u64,
    /// Waits made on another thread than the one that made the last
    /// submission: each moved the armed polls to its thread (see the crate
    /// docs, "Threads").
    pub moves: u64,
    /// Polls (the registrations' and the waker's) cancelled and armed again
    /// from the new thread by those moves.
    pub rehomed: u64,
}

/// The io_uring backend. See the crate documentation.
pub struct UringBackend {
    ring: IoUring,
    /// See [`setup`].
    level: u8,
    /// `IORING_ASYNC_CANCEL_ALL` is available.
    cancel_all: bool,
    /// Registrations by slot index ([`Key::index`]).
    regs: Vec<Option<Reg>>,
    /// Keys whose registration gets a new poll at the next submission
    /// ([`Reg::arm`]; entries may be stale).
    to_arm: Vec<Key>,
    /// Keys with readiness from this wait's enter ([`Reg::fresh`]).
    fresh: Vec<Key>,
    /// Keys that were ready at the last wait but did not fit in its events:
    /// reported first by the next wait that finds them ready (no
    /// starvation when more are ready than fit).
    carry: Vec<Key>,
    /// Keys re-armed by this wait because of a hint ([`Reg::checking`]).
    checks: Vec<Key>,
    /// SQEs not yet in the submission queue (it was full).
    pending: VecDeque<Sqe>,
    waker: Option<WakerSlot>,
    /// The thread that submitted the live polls.
    owner: Option<ThreadId>,
    /// Every live poll was submitted by `owner` (see the crate docs on
    /// blocking waits with cancels).
    same_thread: bool,
    /// Scratch: CQEs, a key list.
    cqes: Vec<(u64, i32, u32)>,
    scratch: Vec<Key>,
    stats: QuirkStats,
    /// Refusals reaped by [`Backend::forget_now`], for the next wait.
    early: Output,
    start: Instant,
    /// Signal and process sources ([`Backend::open_source`]).
    sources: evmux_sys::source::Sources,
}

impl fmt::Debug for UringBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UringBackend")
            .field("ring_fd", &self.ring.as_raw_fd())
            .field("setup_level", &self.level)
            .field("registrations", &self.registrations())
            .field("armed_polls", &self.armed_polls())
            .field("to_arm", &self.to_arm.len())
            .field("carried", &self.carry.len())
            .field("pending_sqes", &self.pending.len())
            .field("waker", &self.waker.is_some())
            .finish_non_exhaustive()
    }
}

impl UringBackend {
    /// A new ring (4096 SQEs, 16384 CQEs) with an empty interest set.
    ///
    /// # Errors
    /// When io_uring cannot be used: the error's message says why, and its
    /// kind is the errno's (`PermissionDenied` for `EPERM` — the
    /// `kernel.io_uring_disabled` sysctl or a seccomp policy —,
    /// `Unsupported` for `ENOSYS` or a kernel older than 5.17); its payload
    /// is an [`Unavailable`].
    pub fn new() -> io::Result<UringBackend> {
        UringBackend::with_ring_sizes(SQ_ENTRIES, CQ_ENTRIES)
    }

    /// A backend with a ring of `sq` SQEs and `cq` CQEs (rounded up to
    /// powers of two, `cq` at least `2 * sq`). Small rings make the
    /// chunked submission and CQ overflow paths testable.
    ///
    /// # Errors
    /// As [`UringBackend::new`].
    #[doc(hidden)]
    pub fn with_ring_sizes(sq: u32, cq: u32) -> io::Result<UringBackend> {
        let sq = sq.max(1);
        let (ring, level) = setup(sq, cq.max(2 * sq))?;
        Ok(UringBackend {
            ring,
            level,
            // COOP_TASKRUN and IORING_ASYNC_CANCEL_ALL came with the same
            // release (5.19).
            cancel_all: level == 2,
            regs: Vec::new(),
            to_arm: Vec::new(),
            fresh: Vec::new(),
            carry: Vec::new(),
            checks: Vec::new(),
            pending: VecDeque::new(),
            waker: None,
            owner: None,
            same_thread: true,
            cqes: Vec::new(),
            scratch: Vec::new(),
            stats: QuirkStats::default(),
            early: Output::default(),
            start: Instant::now(),
            sources: evmux_sys::source::Sources::default(),
        })
    }

    /// How many registrations the backend holds. For tests.
    #[doc(hidden)]
    pub fn registrations(&self) -> usize {
        self.regs.iter().flatten().count()
    }

    /// How many poll requests the backend believes armed in the kernel
    /// (registrations and waker). For tests.
    #[doc(hidden)]
    pub fn armed_polls(&self) -> u64 {
        let regs: u64 = self
            .regs
            .iter()
            .flatten()
            .map(|r| u64::from(r.instances))
            .sum();
        regs + self.waker.as_ref().map_or(0, |w| u64::from(w.instances))
    }

    /// The ring's set-up flags: 2 = `SUBMIT_ALL|COOP_TASKRUN` (and
    /// `IORING_ASYNC_CANCEL_ALL` is used), 1 = `SUBMIT_ALL`, 0 = none. For
    /// tests.
    #[doc(hidden)]
    pub fn setup_level(&self) -> u8 {
        self.level
    }

    /// How many CQEs the kernel has posted that the backend has not reaped
    /// yet. For tests.
    #[doc(hidden)]
    pub fn unreaped_completions(&mut self) -> usize {
        self.ring.completion().len()
    }

    /// The kernel quirks met so far. For tests.
    #[doc(hidden)]
    pub fn quirk_stats(&self) -> QuirkStats {
        self.stats
    }

    /// The submission queue's size.
    pub fn sq_entries(&self) -> u32 {
        self.ring.params().sq_entries()
    }

    /// The completion queue's size.
    pub fn cq_entries(&self) -> u32 {
        self.ring.params().cq_entries()
    }

    fn reg(&self, key: Key) -> Option<&Reg> {
        self.regs
            .get(key.index() as usize)?
            .as_ref()
            .filter(|r| r.key == key)
    }

    fn reg_mut(&mut self, key: Key) -> Option<&mut Reg> {
        self.regs
            .get_mut(key.index() as usize)?
            .as_mut()
            .filter(|r| r.key == key)
    }

    /// Asks for a new poll for `key` at the next submission (see
    /// [`UringBackend::arm_pending`]). Not for a registration being
    /// forgotten or fallen silent.
    fn want_arm(&mut self, key: Key) {
        if let Some(Some(reg)) = self.regs.get_mut(key.index() as usize)
            && reg.key == key
            && !reg.arm
            && !reg.forgetting
            && !reg.silent
        {
            reg.arm = true;
            self.to_arm.push(key);
        }
    }

    /// Queues a `POLL_ADD` for a registration and counts it.
    fn add(&mut self, key: Key, internal: bool) {
        if let Some(reg) = self.reg_mut(key) {
            reg.instances += 1;
            reg.live = true;
            reg.internal = internal;
            let sqe = Sqe::Add {
                key,
                fd: reg.fd,
                mask: poll_mask(reg.interest),
                multi: reg.multi,
            };
            self.pending.push_back(sqe);
            if internal {
                self.stats.rearmed += 1;
            }
        }
    }

    /// Queues the new polls asked for since the last submission; returns
    /// how many cancels that queued. A registration whose poll may still be
    /// armed (a multishot poll re-checked, or a completion whose poll could
    /// not be told apart from a cancelled one) has it cancelled first, in
    /// the same submission, so that one poll at most is live.
    fn arm_pending(&mut self) -> usize {
        let mut cancels = 0;
        let mut keys = std::mem::take(&mut self.to_arm);
        for &key in &keys {
            let Some(reg) = self.reg_mut(key) else {
                continue;
            };
            if !std::mem::take(&mut reg.arm) || reg.forgetting || reg.silent {
                continue;
            }
            let internal = !std::mem::take(&mut reg.changed);
            let instances = reg.instances;
            if std::mem::take(&mut reg.live) && instances > 0 {
                cancels += self.cancel(key, instances);
            }
            self.add(key, internal);
        }
        keys.clear();
        if self.to_arm.is_empty() {
            self.to_arm = keys;
        }
        cancels
    }

    /// Queues the cancellation of every poll of `key` (`instances` of them,
    /// as counted); returns how many cancel SQEs that is. With
    /// `IORING_ASYNC_CANCEL_ALL` one SQE cancels them all; without it (Linux
    /// < 5.19) one cancel per poll, so that none survives. Each cancel is
    /// certain to produce a CQE: the `-ECANCELED` of the poll it found, or
    /// its own `-ENOENT` (without `CANCEL_ALL`) — or, with `CANCEL_ALL` and
    /// nothing found, the final CQE of the poll that had ended, still unread.
    /// (Callers cancel a key only while a poll of it may be live, and clear
    /// [`Reg::live`], so no two cancels of one submission count on the same
    /// completion.)
    fn cancel(&mut self, key: Key, instances: u32) -> usize {
        let n = if instances == 0 {
            0
        } else if self.cancel_all {
            1
        } else {
            instances as usize
        };
        for _ in 0..n {
            self.pending.push_back(Sqe::Cancel { key });
        }
        n
    }

    fn arm_waker(&mut self) {
        if let Some(w) = &mut self.waker {
            w.instances += 1;
            self.pending.push_back(Sqe::Add {
                key: Key::WAKER,
                fd: w.shared.notifier.as_raw_fd(),
                mask: u32::from(POLLIN as u16),
                multi: true,
            });
        }
    }

    /// Turns one change into SQEs (or into a request for a new poll, queued
    /// by [`UringBackend::arm_pending`]); returns how many cancels it
    /// queued.
    fn apply(&mut self, c: &Change) -> usize {
        let idx = c.key.index() as usize;
        if self.regs.len() <= idx {
            self.regs.resize(idx + 1, None);
        }
        let mut cancels = 0;
        // What the slot holds: this key's registration, or (defensively) an
        // older generation's that the driver never removed.
        let old = self.regs[idx];
        if let Some(old) = old
            && (old.key != c.key || c.new.is_none())
        {
            if old.live {
                cancels += self.cancel(old.key, old.instances);
            }
            self.regs[idx] = None;
        }
        let Some(watch) = c.new else {
            return cancels;
        };
        debug_assert_eq!(
            watch.trigger,
            Trigger::Level,
            "the driver sent a trigger this backend does not have"
        );
        debug_assert!(c.key.0 != CANCEL_USER_DATA, "key reserved for cancels");
        match &mut self.regs[idx] {
            Some(reg) => {
                // Same key: a modification or a re-check.
                if reg.interest != watch.interest || reg.fd != c.fd {
                    reg.interest = watch.interest;
                    reg.fd = c.fd;
                    reg.multi = false;
                    reg.silent = false;
                    reg.changed = true;
                    // A registration reported at the last wait has no poll
                    // armed any more: the modification is one POLL_ADD.
                    let instances = reg.instances;
                    if std::mem::take(&mut reg.live) {
                        cancels += self.cancel(c.key, instances);
                    }
                    self.want_arm(c.key);
                } else if c.rearm && !reg.live {
                    // An armed poll reports readiness when it arises; one
                    // that completed is re-armed (and so re-checked) anyway.
                    reg.silent = false;
                    reg.changed = true;
                    self.want_arm(c.key);
                }
            }
            None => {
                let mut reg = Reg::new(c.key, c.fd, watch.interest);
                reg.changed = true;
                self.regs[idx] = Some(reg);
                self.want_arm(c.key);
            }
        }
        cancels
    }

    /// The backend is used from another thread than the one that made its
    /// last submission: cancel every armed poll and arm it again from here,
    /// in this wait's submission (see the crate docs, "Threads").
    fn migrate(&mut self) {
        self.stats.moves += 1;
        // A registration being forgotten is removed by this very batch.
        let armed: Vec<(Key, u32)> = self
            .regs
            .iter()
            .flatten()
            .filter(|r| r.live && r.instances > 0 && !r.forgetting)
            .map(|r| (r.key, r.instances))
            .collect();
        for (key, instances) in armed {
            self.stats.rehomed += 1;
            self.cancel(key, instances);
            if let Some(reg) = self.reg_mut(key) {
                reg.foreign = instances;
                reg.live = false;
            }
            self.want_arm(key);
        }
        if let Some(instances) = self.waker.as_ref().map(|w| w.instances)
            && instances > 0
        {
            self.stats.rehomed += 1;
            self.cancel(Key::WAKER, instances);
            self.arm_waker();
        }
        // The old polls' -ECANCELED is posted by the old thread's task work:
        // stop counting on it.
        self.same_thread = false;
    }

    /// Moves pending SQEs into the submission queue, submitting (without
    /// waiting) whenever it is full. Returns whether it had to submit.
    fn fill_sq(&mut self) -> io::Result<bool> {
        let mut flushed = false;
        loop {
            let mut full = false;
            {
                let cancel_all = self.cancel_all;
                let mut sq = self.ring.submission();
                while let Some(&sqe) = self.pending.front() {
                    let entry = sqe_entry(sqe, cancel_all);
                    // SAFETY: POLL_ADD and ASYNC_CANCEL entries hold no
                    // pointer into our memory (a descriptor number, a mask
                    // and user_data), so nothing the kernel reads for them
                    // has to outlive the submission.
                    if unsafe { sq.push(&entry) }.is_err() {
                        full = true;
                        break;
                    }
                    self.pending.pop_front();
                }
            }
            if !full {
                return Ok(flushed);
            }
            // The submission queue is full: submit it without waiting.
            syscall(SyscallKind::IoUringEnter)?;
            let before = self.ring.submission().len();
            self.ring.submitter().submit()?;
            if self.ring.submission().len() >= before {
                return Err(io::Error::other(
                    "io_uring consumed no SQE of a full submission queue",
                ));
            }
            flushed = true;
        }
    }

    /// The waiting `io_uring_enter`.
    fn enter(&mut self, min_complete: u32, timeout: Option<Duration>) -> io::Result<()> {
        let to_submit = u32::try_from(self.ring.submission().len()).unwrap_or(u32::MAX);
        syscall(SyscallKind::IoUringEnter)?;
        let res = match timeout {
            _ if min_complete == 0 => {
                // SAFETY: no argument pointer is passed (`None`, size 0), the
                // only flag is GETEVENTS, and `to_submit` is the number of
                // SQEs we published in the submission queue.
                unsafe {
                    self.ring.submitter().enter::<libc::sigset_t>(
                        to_submit,
                        0,
                        EnterFlags::GETEVENTS.bits(),
                        None,
                    )
                }
            }
            None => self.ring.submitter().submit_and_wait(min_complete as usize),
            Some(t) => {
                let ts = Timespec::from(t);
                let args = SubmitArgs::new().timespec(&ts);
                self.ring
                    .submitter()
                    .submit_with_args(min_complete as usize, &args)
            }
        };
        match res {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                // The timeout passed with nothing to submit.
                Some(libc::ETIME) => Ok(()),
                // Linux < 5.19 refuses to submit while CQEs sit in the
                // overflow list (EBUSY), or found no memory for requests
                // (EAGAIN): nothing was consumed; the drain below flushes
                // the overflow and the SQEs go with the next enter.
                Some(libc::EBUSY | libc::EAGAIN) => Ok(()),
                _ => Err(e),
            },
        }
    }

    /// Empties the completion queue (and the kernel's overflow list) into
    /// the registrations' state. `fresh`: the completions were posted during
    /// this wait's enter, and their readiness is this wait's; otherwise they
    /// were posted before it and are hints (see the crate docs).
    fn drain(&mut self, out: &mut Output, fresh: bool) -> io::Result<()> {
        loop {
            let mut cqes = std::mem::take(&mut self.cqes);
            cqes.clear();
            cqes.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            let mut result = Ok(());
            for &(user_data, res, flags) in &cqes {
                if let Err(e) = self.on_cqe(user_data, res, flags, out, fresh) {
                    result = Err(e);
                }
            }
            self.cqes = cqes;
            result?;
            if !self.ring.submission().cq_overflow() {
                return Ok(());
            }
            // CQEs were kept aside: flush them into the ring (the crate's
            // submit passes GETEVENTS while the overflow flag is set).
            self.stats.overflow_flushes += 1;
            syscall(SyscallKind::IoUringEnter)?;
            self.ring.submitter().submit()?;
        }
    }

    fn on_cqe(
        &mut self,
        user_data: u64,
        res: i32,
        flags: u32,
        out: &mut Output,
        fresh: bool,
    ) -> io::Result<()> {
        let more = cqueue::more(flags);
        if user_data == CANCEL_USER_DATA {
            // A cancel that found nothing (-ENOENT, or -EALREADY/0 on older
            // kernels): the poll had ended already. Not an error.
            return Ok(());
        }
        let key = Key(user_data);
        if key == Key::WAKER {
            let Some(w) = &mut self.waker else {
                return Ok(());
            };
            if !more {
                w.instances = w.instances.saturating_sub(1);
            }
            if res >= 0 && w.shared.notifier.drain()? {
                w.pending = true;
            }
            // The poll ended (overflow, or cancelled under us): arm it again
            // at the next submission. Arming posts at once if a wake is
            // pending.
            w.needs_arm = w.instances == 0;
            return Ok(());
        }
        let reg = match self.regs.get_mut(key.index() as usize) {
            Some(Some(reg)) if reg.key == key => reg,
            _ => {
                // A removed registration, or an older generation: drop.
                self.stats.stale += 1;
                return Ok(());
            }
        };
        // Whether the registration's last counted poll just ended although
        // the backend had not cancelled it.
        let mut was_live = false;
        if !more {
            reg.instances = reg.instances.saturating_sub(1);
            // Polls cancelled by a migration end with -ECANCELED. (So does
            // the live poll when a later change cancels it too, so the count
            // can reach 0 early; `forget_now` then waits for the remaining
            // foreign poll at most FORGET_PATIENCE before it gives up.)
            if res == -libc::ECANCELED {
                reg.foreign = reg.foreign.saturating_sub(1);
            }
            reg.foreign = reg.foreign.min(reg.instances);
            if reg.instances == 0 {
                was_live = std::mem::take(&mut reg.live);
            }
        }
        if reg.forgetting {
            // Forgotten: readiness and the final CQEs of its cancelled polls
            // are only counted.
            self.stats.stale += 1;
            return Ok(());
        }
        if res == -libc::ECANCELED {
            // A poll this backend cancelled (a removal, a modification, a
            // re-check, a migration) needs nothing. One it still counted on,
            // with no other poll left, was cancelled by the kernel (its
            // submitting thread exited): arm a new one.
            if was_live {
                self.stats.ended += 1;
                self.want_arm(key);
            }
            return Ok(());
        }
        if res < 0 {
            if reg.internal {
                // A re-arm the backend made on its own, refused: the number
                // was closed under the registration. Silent (and not armed
                // again) until the driver changes the watch or forgets it,
                // as SEMANTICS leaves this case unspecified.
                reg.silent = true;
                return Ok(());
            }
            // A POLL_ADD the driver asked for, refused (-EBADF for a closed
            // number): the registration is not in effect. Any other poll of
            // this key was cancelled in the same submission.
            out.rejected.push(Rejection { key, errno: -res });
            self.regs[key.index() as usize] = None;
            return Ok(());
        }
        if reg.silent {
            return Ok(());
        }
        if !more && reg.multi {
            // A multishot poll ended (CQ overflow, a file without wait
            // queue).
            self.stats.ended += 1;
        }
        let ready = ready_from_revents(revents_of(res)) & Ready::reportable(reg.interest);
        if ready.is_empty() {
            if !more {
                // A one-shot poll completed with nothing to report:
                // POLLRDHUP, which io_uring adds to every poll, on a
                // write-only watch. Armed one-shot again, it would complete
                // at once again: arm a multishot poll instead.
                if res != 0 && !reg.multi {
                    reg.multi = true;
                    self.stats.multishot += 1;
                }
                self.want_arm(key);
            }
            return Ok(());
        }
        if fresh {
            // Readiness at the time of this wait: reported by `report`,
            // which also asks for the next poll (the level re-check).
            reg.ready |= ready;
            if !std::mem::replace(&mut reg.fresh, true) {
                self.fresh.push(key);
            }
        } else {
            // Posted before this wait: the program may have consumed it
            // since. A new poll in this wait's own enter tells: it
            // completes at once if the descriptor is still ready.
            if !std::mem::replace(&mut reg.checking, true) {
                self.checks.push(key);
            }
            self.want_arm(key);
        }
        Ok(())
    }

    /// Submits the queued SQEs (ending with the cancels of `key`'s polls) and
    /// reaps completions until every poll of `key` has posted its final CQE,
    /// which the kernel does only after it let go of the request and so of
    /// its file reference. Other keys' CQEs go into the registrations' state
    /// as completions posted before a wait (readiness becomes a hint, which
    /// the next wait re-checks in its own enter), refusals into `out`.
    ///
    /// One `io_uring_enter` with `GETEVENTS` and `min_complete = 0`
    /// normally suffices: the cancel marks the poll cancelled and queues its
    /// completion as task work for this thread, which the kernel runs before
    /// the enter returns. If a wake-up of the poll raced with the cancel,
    /// that task work may be queued a moment later; the loop then waits for
    /// it, briefly. `Ok(false)`: not seen within [`FORGET_PATIENCE`].
    ///
    /// An enter that fails with `EINTR`, `EAGAIN` or `EBUSY` consumed
    /// nothing: the completions are reaped (which makes room when the
    /// completion queue was full) and the enter is tried again, up to
    /// [`FORGET_RETRIES`] times; any other error, or one of these past the
    /// retries, is returned.
    fn reap_cancelled(&mut self, key: Key, out: &mut Output) -> io::Result<bool> {
        let deadline = Instant::now() + FORGET_PATIENCE;
        let mut first = true;
        let mut retries = 0;
        loop {
            self.fill_sq()?;
            let entered = if first {
                first = false;
                self.enter(0, None)
            } else {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                self.enter(1, Some(left.min(Duration::from_millis(1))))
            };
            self.drain(out, false)?;
            match entered {
                Ok(()) => {}
                // Nothing was consumed: the SQEs go with the next enter,
                // made at once (as the first one) after the reaping above.
                Err(_) if retries < FORGET_RETRIES => {
                    retries += 1;
                    first = true;
                    continue;
                }
                Err(e) => return Err(e),
            }
            if self.reg(key).is_none_or(|r| r.instances == 0) {
                return Ok(true);
            }
        }
    }

    /// Turns this wait's readiness into events: registrations carried over
    /// from the last wait first, then the others, at most `max_events` in
    /// all (counting what `out` holds). Each registration with readiness
    /// gets a new poll at the next submission: its one-shot poll has
    /// completed (a multishot one is re-checked), and a level registration
    /// must be reported at every wait while it stays ready.
    fn report(&mut self, out: &mut Output, max_events: usize) {
        let mut checks = std::mem::take(&mut self.checks);
        for &key in &checks {
            let Some(reg) = self.reg_mut(key) else {
                continue;
            };
            if !std::mem::take(&mut reg.checking) {
                continue;
            }
            let found = reg.fresh;
            self.stats.rechecked += 1;
            if !found {
                self.stats.filtered += 1;
            }
        }
        checks.clear();
        self.checks = checks;
        let mut fresh = std::mem::take(&mut self.fresh);
        let mut carry = std::mem::take(&mut self.carry);
        let mut unreported = std::mem::take(&mut self.scratch);
        unreported.clear();
        for &key in carry.iter().chain(fresh.iter()) {
            let Some(reg) = self.reg_mut(key) else {
                continue;
            };
            // Not ready at this wait, or handled already (carried).
            if !std::mem::take(&mut reg.fresh) {
                continue;
            }
            let ready = std::mem::take(&mut reg.ready);
            if ready.is_empty() {
                continue;
            }
            if out.events.len() < max_events {
                out.events.push(RawEvent { key, ready });
            } else {
                unreported.push(key);
            }
            self.want_arm(key);
        }
        fresh.clear();
        carry.clear();
        self.fresh = fresh;
        self.carry = unreported;
        self.scratch = carry;
    }

    /// After a failed enter: this wait's readiness is not reported, but
    /// re-checked by the next one (as a hint).
    fn demote_fresh(&mut self) {
        let mut fresh = std::mem::take(&mut self.fresh);
        for &key in &fresh {
            if let Some(reg) = self.reg_mut(key) {
                reg.fresh = false;
                reg.ready = Ready::EMPTY;
            }
            self.want_arm(key);
        }
        fresh.clear();
        self.fresh = fresh;
        let mut checks = std::mem::take(&mut self.checks);
        for &key in &checks {
            if let Some(reg) = self.reg_mut(key) {
                reg.checking = false;
            }
        }
        checks.clear();
        self.checks = checks;
    }
}

impl Backend for UringBackend {
    fn name(&self) -> &'static str {
        "uring"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_edge: false,
            native_oneshot: false,
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
        let max_events = max_events.max(1);
        // Refusals met while a `forget` reaped completions.
        out.rejected.append(&mut self.early.rejected);
        let backlog = !self.pending.is_empty();
        // Completions posted since the last wait (the program's own writes
        // run the polls' completion work on their way back to user space):
        // hints, re-checked by new polls in this wait's enter. Reaped first,
        // so that they do not count towards `min_complete`, and so that a
        // change does not cancel a one-shot poll that has completed.
        let reaped = self.drain(out, false);
        let me = thread::current().id();
        match self.owner {
            Some(owner) if owner != me => self.migrate(),
            _ => {}
        }
        self.owner = Some(me);
        let mut cancels = 0;
        for c in changes {
            cancels += self.apply(c);
        }
        if self
            .waker
            .as_mut()
            .is_some_and(|w| std::mem::take(&mut w.needs_arm) && w.instances == 0)
        {
            self.arm_waker();
        }
        // New registrations, changes, level re-checks of the registrations
        // reported at the last wait, hints, ended polls: all in this enter.
        cancels += self.arm_pending();
        let flushed = match self.fill_sq() {
            Ok(flushed) => flushed,
            Err(e) => {
                self.drain(out, false)?;
                return Err(e);
            }
        };
        // The changes are applied (queued); a failure of the reaping above
        // (the waker's eventfd) is reported now, and the SQEs go with the
        // next enter.
        reaped?;
        let waker_pending = self.waker.as_ref().is_some_and(|w| w.pending);
        let must_not_block = waker_pending || !out.rejected.is_empty();
        let min_complete = if must_not_block || timeout == Some(Duration::ZERO) {
            0
        } else if self.same_thread && !flushed && !backlog {
            u32::try_from(1 + cancels).unwrap_or(u32::MAX)
        } else {
            1
        };
        let entered = self.enter(min_complete, timeout);
        if let Err(e) = self.drain(out, true).and(entered) {
            self.demote_fresh();
            return Err(e);
        }
        if let Some(w) = &mut self.waker
            && w.pending
            && out.events.len() < max_events
        {
            w.pending = false;
            out.events.push(RawEvent {
                key: Key::WAKER,
                ready: Ready::IN,
            });
        }
        self.report(out, max_events);
        Ok(())
    }

    fn waker(&mut self) -> io::Result<Arc<dyn Wake>> {
        if let Some(w) = &self.waker {
            return Ok(w.shared.clone());
        }
        let shared = Arc::new(UringWaker {
            notifier: Notifier::new()?,
        });
        // Armed by the next wait's submission.
        self.waker = Some(WakerSlot {
            shared: shared.clone(),
            instances: 0,
            pending: false,
            needs_arm: true,
        });
        Ok(shared)
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Cancels the registration's polls now and reaps their final CQEs, so
    /// that the kernel has dropped its reference to the file when this
    /// returns `true` (see the crate docs, "Forget"). Costs one
    /// `io_uring_enter` when a poll is armed, nothing otherwise.
    fn forget_now(&mut self, fd: RawFd, key: Key, old: Watch) -> bool {
        let _ = (fd, old);
        // A refusal reaped by an earlier `forget` must not outlive it.
        self.early.rejected.retain(|r| r.key != key);
        let idx = key.index() as usize;
        let Some(reg) = self.regs.get(idx).copied().flatten() else {
            // Nothing in the kernel (a refused addition): nothing to do.
            return true;
        };
        if reg.key != key {
            // Defensive: another generation holds the slot; let the batch's
            // removal sort it out.
            return false;
        }
        if reg.instances > 0 {
            // Its one-shot poll may have fired since the last wait, its CQE
            // posted and unread: then nothing is armed. Reap what was posted
            // (other keys' completions become hints for the next wait, as
            // they would at its start) and look again.
            let mut early = std::mem::take(&mut self.early);
            // A failure (the waker's eventfd) leaves the count as it is:
            // the cancel below then finds out.
            let _ = self.drain(&mut early, false);
            early.rejected.retain(|r| r.key != key);
            self.early = early;
        }
        let Some(reg) = self.reg(key).copied() else {
            // Refused meanwhile: nothing in the kernel.
            return true;
        };
        if reg.instances == 0 {
            // No poll armed (reported at the last wait, fired since, a
            // regular file's, or waiting to be re-armed): no file
            // reference, no syscall.
            self.regs[idx] = None;
            return true;
        }
        if self.owner != Some(thread::current().id()) || reg.foreign > 0 || reg.forgetting {
            // A poll's final CQE is posted by the thread that armed it, when
            // that thread next runs its task work: this thread cannot make
            // it complete.
            self.stats.forget_deferred += 1;
            return false;
        }
        if let Some(r) = self.reg_mut(key) {
            r.forgetting = true;
            r.live = false;
            r.arm = false;
        }
        self.cancel(key, reg.instances);
        let mut early = std::mem::take(&mut self.early);
        let done = self.reap_cancelled(key, &mut early);
        self.early = early;
        match done {
            Ok(true) => {
                self.stats.forgotten_now += 1;
                self.regs[idx] = None;
                true
            }
            // Still `forgetting` (its CQEs are only counted): the removal in
            // the next batch drops it. Its cancels are submitted (or still
            // queued, and go with the next enter).
            Ok(false) | Err(_) => {
                self.stats.forget_deferred += 1;
                false
            }
        }
    }

    evmux_sys::backend_sources!(sources);
}

#[cfg(test)]
mod tests {
    use super::*;
    use evmux_sys::poll::{POLLERR, POLLHUP, POLLPRI};

    #[test]
    fn masks() {
        assert_eq!(
            poll_mask(Interest::READABLE),
            (libc::POLLIN | libc::POLLRDHUP) as u32
        );
        assert_eq!(poll_mask(Interest::WRITABLE), libc::POLLOUT as u32);
        assert_eq!(
            poll_mask(Interest::BOTH),
            (libc::POLLIN | libc::POLLRDHUP | libc::POLLOUT) as u32
        );
        assert_eq!(
            ready_from_revents(POLLIN | POLLPRI | POLLOUT | POLLERR | POLLHUP | POLLRDHUP),
            Ready::IN | Ready::PRI | Ready::OUT | Ready::ERR | Ready::HUP | Ready::RDHUP
        );
    }

    #[test]
    fn cancel_user_data_is_not_a_reachable_key() {
        let k = Key(CANCEL_USER_DATA);
        assert_eq!(k.index(), u32::MAX - 1);
        assert_ne!(k, Key::WAKER);
    }

    #[test]
    fn unavailable_message_names_the_cause() {
        let e = setup_error(io::Error::from_raw_os_error(libc::ENOSYS));
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert!(e.to_string().contains("io_uring is unavailable"), "{e}");
        let inner = e.get_ref().unwrap().downcast_ref::<Unavailable>().unwrap();
        assert_eq!(inner.errno(), Some(libc::ENOSYS));
    }
}
