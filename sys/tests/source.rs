//! Signal and process sources (`evmux_sys::source`).
//!
//! Test threads share one process: signals are only ever sent to the
//! current thread (`pthread_kill(pthread_self())`), never to the process,
//! where another test thread that does not block them could take them.
#![cfg(target_os = "linux")]

use evmux_sys::counter::{self, SyscallKind};
use evmux_sys::poll::{POLLIN, PollFd, poll};
use evmux_sys::source::{Sources, SysExit, SysReport, SysSource};
use std::io::ErrorKind;
use std::os::fd::RawFd;
use std::process::Command;
use std::time::Duration;

const GUARD: Option<Duration> = Some(Duration::from_secs(10));

/// Sends `sig` to the calling thread only.
fn send_to_self(sig: i32) {
    // SAFETY: pthread_self() is the calling thread, alive; the signal is
    // blocked by the caller, so it stays pending instead of being delivered.
    let rc = unsafe { libc::pthread_kill(libc::pthread_self(), sig) };
    assert_eq!(rc, 0);
}

/// Whether `sig` is blocked in the calling thread.
fn blocked(sig: i32) -> bool {
    let mut old = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: a null new set only queries; `old` is a writable sigset_t.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), old.as_mut_ptr()) };
    assert_eq!(rc, 0);
    // SAFETY: initialised by the successful query.
    unsafe { libc::sigismember(old.as_ptr(), sig) == 1 }
}

fn readable(fd: RawFd, timeout: Option<Duration>) -> bool {
    let mut fds = [PollFd::new(fd, POLLIN)];
    poll(&mut fds, timeout).unwrap() == 1 && fds[0].revents & POLLIN != 0
}

#[test]
fn standard_signals_are_read_and_the_mask_restored() {
    for sig in [libc::SIGUSR1, libc::SIGUSR2] {
        assert!(!blocked(sig));
        let mut s = Sources::default();
        let before = counter::snapshot();
        let (fd, id) = s.open(SysSource::Signal(sig)).unwrap();
        let d = counter::snapshot() - before;
        assert_eq!(d.get(SyscallKind::Sigprocmask), 1);
        assert_eq!(d.get(SyscallKind::Signalfd), 1);
        assert!(blocked(sig));
        assert!(evmux_sys::fd::is_nonblocking(s.fd(id).unwrap()).unwrap());
        assert_eq!(s.read(id).unwrap(), SysReport::Nothing);
        assert!(!readable(fd, Some(Duration::ZERO)));

        send_to_self(sig);
        send_to_self(sig); // merges with the pending one
        assert!(readable(fd, GUARD));
        assert_eq!(s.read(id).unwrap(), SysReport::Signal { count: 1 });
        assert_eq!(s.read(id).unwrap(), SysReport::Nothing);
        assert!(!readable(fd, Some(Duration::ZERO)));

        s.close(id);
        assert!(!blocked(sig), "close restores the mask");
        assert!(s.is_empty());
        assert!(s.read(id).is_err());
    }
}

#[test]
fn realtime_signals_queue() {
    let sig = libc::SIGRTMIN() + 1;
    let mut s = Sources::default();
    let (fd, id) = s.open(SysSource::Signal(sig)).unwrap();
    for _ in 0..3 {
        send_to_self(sig);
    }
    assert!(readable(fd, GUARD));
    assert_eq!(s.read(id).unwrap(), SysReport::Signal { count: 3 });
    assert_eq!(s.read(id).unwrap(), SysReport::Nothing);
    // More than one read buffer's worth (8 records).
    for _ in 0..20 {
        send_to_self(sig);
    }
    assert_eq!(s.read(id).unwrap(), SysReport::Signal { count: 20 });
    drop(s);
    assert!(!blocked(sig), "dropping the table closes its sources");
}

#[test]
fn an_already_blocked_signal_stays_blocked() {
    let sig = libc::SIGRTMIN() + 2;
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: plain sigset manipulation on our own set, then blocking a
    // real-time signal in this thread only.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), sig);
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut()),
            0
        );
    }
    let mut s = Sources::default();
    let (_, id) = s.open(SysSource::Signal(sig)).unwrap();
    send_to_self(sig);
    assert_eq!(s.read(id).unwrap(), SysReport::Signal { count: 1 });
    s.close(id);
    assert!(blocked(sig), "it was blocked before open");
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_UNBLOCK, set.as_ptr(), std::ptr::null_mut()),
            0
        );
    }
}

#[test]
fn two_sources_of_one_signal_share_the_block() {
    let sig = libc::SIGRTMIN() + 3;
    let mut a = Sources::default();
    let mut b = Sources::default();
    let (_, ia) = a.open(SysSource::Signal(sig)).unwrap();
    let before = counter::get(SyscallKind::Sigprocmask);
    let (_, ib1) = b.open(SysSource::Signal(sig)).unwrap();
    let (_, ib2) = b.open(SysSource::Signal(sig)).unwrap();
    assert_eq!(
        counter::get(SyscallKind::Sigprocmask),
        before,
        "already held"
    );
    a.close(ia);
    assert!(blocked(sig), "b still holds it");
    send_to_self(sig);
    // Whichever reads first gets the delivery.
    assert_eq!(b.read(ib2).unwrap(), SysReport::Signal { count: 1 });
    assert_eq!(b.read(ib1).unwrap(), SysReport::Nothing);
    b.close(ib1);
    assert!(blocked(sig));
    b.close(ib2);
    assert!(!blocked(sig));
    assert_eq!(counter::get(SyscallKind::Sigprocmask), before + 1);
}

#[test]
fn uncatchable_and_out_of_range_signals_are_refused() {
    let mut s = Sources::default();
    for sig in [
        libc::SIGKILL,
        libc::SIGSTOP,
        0,
        -1,
        65,
        libc::SIGRTMAX() + 1,
    ] {
        let before = counter::snapshot();
        let err = s.open(SysSource::Signal(sig)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{sig}: {err}");
        assert_eq!((counter::snapshot() - before).total(), 0, "no syscall");
        if sig == libc::SIGKILL {
            assert!(err.to_string().contains("SIGKILL"), "{err}");
        }
        if sig == libc::SIGSTOP {
            assert!(err.to_string().contains("SIGSTOP"), "{err}");
        }
    }
    assert!(s.is_empty());
    // The highest one is accepted.
    let (_, id) = s.open(SysSource::Signal(libc::SIGRTMAX())).unwrap();
    s.close(id);
    assert!(!blocked(libc::SIGRTMAX()));
}

/// Opens a process source for `child`, waits for it to poll readable and
/// reads it.
fn exit_of(child: &std::process::Child) -> SysReport {
    let mut s = Sources::default();
    let (fd, id) = s.open(SysSource::Process(child.id() as i32)).unwrap();
    assert!(readable(fd, GUARD));
    let before = counter::snapshot();
    let report = s.read(id).unwrap();
    let d = counter::snapshot() - before;
    assert_eq!(d.get(SyscallKind::Waitid), 1);
    assert_eq!(d.total(), 1);
    // Reported once.
    assert_eq!(s.read(id).unwrap(), SysReport::Nothing);
    assert_eq!((counter::snapshot() - before).total(), 1, "no syscall");
    report
}

#[test]
fn child_exit_code_is_read_without_reaping() {
    let mut child = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
    assert_eq!(exit_of(&child), SysReport::Exit(SysExit::Code(3)));
    // Still the parent's to reap.
    assert_eq!(child.wait().unwrap().code(), Some(3));
}

#[test]
fn running_child_reports_nothing_then_its_exit() {
    use std::io::Write;
    let mut child = Command::new("sh")
        .args(["-c", "read x; exit 7"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut s = Sources::default();
    let (fd, id) = s.open(SysSource::Process(child.id() as i32)).unwrap();
    assert_eq!(s.read(id).unwrap(), SysReport::Nothing);
    assert!(!readable(fd, Some(Duration::ZERO)));
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(readable(fd, GUARD));
    assert_eq!(s.read(id).unwrap(), SysReport::Exit(SysExit::Code(7)));
    s.close(id);
    assert_eq!(child.wait().unwrap().code(), Some(7));
}

#[test]
fn signaled_child() {
    use std::os::unix::process::ExitStatusExt;
    let mut child = Command::new("sh")
        .args(["-c", "kill -9 $$"])
        .spawn()
        .unwrap();
    assert_eq!(exit_of(&child), SysReport::Exit(SysExit::Signaled(9)));
    assert_eq!(child.wait().unwrap().signal(), Some(9));
}

#[test]
fn reaped_child_is_unknown() {
    let mut child = Command::new("sh").args(["-c", "exit 0"]).spawn().unwrap();
    let mut s = Sources::default();
    let (fd, id) = s.open(SysSource::Process(child.id() as i32)).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(readable(fd, GUARD));
    assert_eq!(s.read(id).unwrap(), SysReport::Exit(SysExit::Unknown));
}

#[test]
fn non_child_exit_is_unknown() {
    use std::io::BufRead;
    // The shell starts a grandchild and exits: the grandchild is not ours.
    let mut child = Command::new("sh")
        .args(["-c", "sleep 1 & echo $!"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid: i32 = line.trim().parse().unwrap();
    let mut s = Sources::default();
    let (fd, id) = s.open(SysSource::Process(pid)).unwrap();
    assert!(child.wait().unwrap().success());
    // Usually still sleeping: nothing (ECHILD, not readable) — unless the
    // machine is slow enough for the second to have passed.
    let first = s.read(id).unwrap();
    if first == SysReport::Nothing {
        assert!(readable(fd, GUARD));
        assert_eq!(s.read(id).unwrap(), SysReport::Exit(SysExit::Unknown));
    } else {
        assert_eq!(first, SysReport::Exit(SysExit::Unknown));
    }
}

#[test]
fn missing_process_is_not_found() {
    let mut s = Sources::default();
    // Above the kernel's PID_MAX_LIMIT (2^22): never a pid.
    let err = s.open(SysSource::Process(i32::MAX)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(&i32::MAX.to_string()), "{err}");
    for pid in [0, -1] {
        let err = s.open(SysSource::Process(pid)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{pid}: {err}");
    }
    assert!(s.is_empty());
    let err = s.read(12345).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    s.close(12345); // ignored
}

#[cfg(feature = "fault-injection")]
#[test]
fn faulted_open_leaves_the_mask_alone() {
    use evmux_sys::fault::{self, FaultPlan};
    let sig = libc::SIGRTMIN() + 4;
    let mut s = Sources::default();
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::Signalfd, 1, libc::EMFILE));
    let err = s.open(SysSource::Signal(sig)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EMFILE));
    assert!(!blocked(sig), "the block was undone");
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::Sigprocmask, 1, libc::EINVAL));
    assert!(s.open(SysSource::Signal(sig)).is_err());
    assert!(!blocked(sig));
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::PidfdOpen, 1, libc::ENOSYS));
    let err = s
        .open(SysSource::Process(std::process::id() as i32))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("Linux 5.3"), "{err}");
    fault::clear();
    assert!(s.is_empty());
    // Our own process: a pidfd that is not readable, not our child.
    let (_, id) = s
        .open(SysSource::Process(std::process::id() as i32))
        .unwrap();
    assert_eq!(s.read(id).unwrap(), SysReport::Nothing);
}
