//! Signal and process sources: validation, the entries that add and delete
//! their knotes, the decoding of what comes back, and how the driver's
//! changes for their identity descriptors and the returned entries become
//! readiness.

mod common;

use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus as StdExit;

use common::*;
use evmux_interest::{ExitStatus, Key, Output, RawEvent, Ready, SourceReport, SourceSpec};
use evmux_kqueue::consts::*;
use evmux_kqueue::source::{
    ExitData, check_pid, check_signal, decode_wait_status, exit_status, is_exit,
};
use evmux_kqueue::translate::{FdKind, Filter, KEvent, KTimespec, Translator};

const K1: Key = Key::new(1, 0);
const K2: Key = Key::new(2, 5);
const SIGINT: i32 = 2;
const SIGUSR1: i32 = 30; // BSD and macOS numbering
const PID: i32 = 4242;
const ENOMEM: i32 = 12;

fn no_classify(fd: i32) -> FdKind {
    panic!("a source's identity descriptor {fd} must not be classified")
}

/// Opens `spec` as the syscall layer would after the kernel accepted the
/// add; `fd` is the identity descriptor.
fn open(tr: &mut Translator, os: Os, spec: SourceSpec, fd: i32) -> u64 {
    let plan = tr.plan_source(os, spec).expect("valid source");
    tr.open_source(plan, fd)
}

/// One wait: `changes`, then the kernel returns `entries`.
fn wait(tr: &mut Translator, changes: &[evmux_interest::Change], entries: &[KEvent]) -> Output {
    let (_, mut out) = begin_with(tr, changes, no_classify);
    tr.take_results(entries, &mut out);
    out
}

fn signal_entry(signo: i32, count: i64) -> KEvent {
    KEvent {
        ident: signo as usize,
        filter: Filter::Signal,
        flags: EV_CLEAR,
        fflags: 0,
        data: count,
        udata: 0,
    }
}

/// A `NOTE_EXIT` entry as the BSDs return it (status in `data`).
fn exit_entry(pid: i32, status: i64) -> KEvent {
    KEvent {
        ident: pid as usize,
        filter: Filter::Proc,
        flags: EV_ONESHOT | EV_EOF,
        fflags: NOTE_EXIT,
        data: status,
        udata: 0,
    }
}

fn input(key: Key) -> RawEvent {
    RawEvent {
        key,
        ready: Ready::IN,
    }
}

// ---- the per-system numbers --------------------------------------------

#[test]
fn source_filter_numbers_per_system() {
    let table = [
        (Os::MacOs, -5, -6),
        (Os::FreeBsd, -5, -6),
        (Os::DragonFly, -5, -6),
        (Os::NetBsd, 4, 5),
        (Os::OpenBsd, -5, -6),
    ];
    for (os, proc, signal) in table {
        assert_eq!(Filter::Proc.raw(os), proc, "{os:?}");
        assert_eq!(Filter::Signal.raw(os), signal, "{os:?}");
        assert_eq!(Filter::from_raw(os, proc), Some(Filter::Proc), "{os:?}");
        assert_eq!(Filter::from_raw(os, signal), Some(Filter::Signal), "{os:?}");
    }
    for f in Filter::ALL {
        assert_eq!(f.is_source(), matches!(f, Filter::Proc | Filter::Signal));
    }
}

#[test]
fn only_macos_asks_for_the_exit_status() {
    assert_eq!(Os::MacOs.exit_status_fflag(), Some(NOTE_EXITSTATUS));
    for os in [Os::FreeBsd, Os::DragonFly, Os::NetBsd, Os::OpenBsd] {
        assert_eq!(os.exit_status_fflag(), None, "{os:?}");
    }
}

// ---- validation --------------------------------------------------------

#[test]
fn uncatchable_and_out_of_range_signals_are_invalid_input() {
    for os in Os::ALL {
        let max = os.max_signal();
        for bad in [SIGKILL, SIGSTOP, 0, -1, i32::MIN, max + 1, i32::MAX] {
            let e = check_signal(os, bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{os:?} {bad}");
        }
        for good in [1, SIGINT, SIGUSR1, 19, max] {
            check_signal(os, good).unwrap_or_else(|e| panic!("{os:?} {good}: {e}"));
        }
    }
    assert_eq!(Os::MacOs.max_signal(), 31);
    assert_eq!(Os::FreeBsd.max_signal(), 128);
    assert_eq!(Os::OpenBsd.max_signal(), 32);
}

#[test]
fn non_positive_pids_are_invalid_input() {
    for bad in [0, -1, -PID, i32::MIN] {
        assert_eq!(
            check_pid(bad).unwrap_err().kind(),
            ErrorKind::InvalidInput,
            "{bad}"
        );
    }
    check_pid(1).unwrap();
    check_pid(i32::MAX).unwrap();
}

#[test]
fn planning_validates_without_changing_anything() {
    let tr = Translator::new();
    for spec in [
        SourceSpec::Signal(SIGKILL),
        SourceSpec::Signal(SIGSTOP),
        SourceSpec::Signal(65),
        SourceSpec::Process(0),
        SourceSpec::Process(-7),
    ] {
        let e = tr.plan_source(Os::OpenBsd, spec).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{spec:?}");
    }
    assert_eq!(tr.open_sources(), 0);
}

// ---- the entries that add and delete knotes ----------------------------

#[test]
fn a_signal_is_an_edge_evfilt_signal_on_its_number() {
    for os in Os::ALL {
        let tr = Translator::new();
        let plan = tr.plan_source(os, SourceSpec::Signal(SIGINT)).unwrap();
        assert_eq!(plan.spec(), SourceSpec::Signal(SIGINT));
        assert_eq!(
            plan.add(),
            Some(&KEvent {
                ident: SIGINT as usize,
                filter: Filter::Signal,
                flags: EV_ADD | EV_CLEAR,
                fflags: 0,
                data: 0,
                udata: 0,
            }),
            "{os:?}"
        );
    }
}

#[test]
fn a_process_is_a_oneshot_note_exit_on_its_pid() {
    for os in Os::ALL {
        let tr = Translator::new();
        let plan = tr.plan_source(os, SourceSpec::Process(PID)).unwrap();
        let fflags = if os == Os::MacOs {
            NOTE_EXIT | NOTE_EXITSTATUS
        } else {
            NOTE_EXIT
        };
        assert_eq!(
            plan.add(),
            Some(&KEvent {
                ident: PID as usize,
                filter: Filter::Proc,
                flags: EV_ADD | EV_ONESHOT,
                fflags,
                data: 0,
                udata: 0,
            }),
            "{os:?}"
        );
        let rule = if os == Os::MacOs {
            ExitData::IfFlagged(NOTE_EXITSTATUS)
        } else {
            ExitData::Always
        };
        assert_eq!(plan.exit_data(), rule, "{os:?}");
    }
}

#[test]
fn closing_deletes_the_knote_with_the_delete_marker() {
    let mut tr = Translator::new();
    let sig = open(&mut tr, Os::FreeBsd, SourceSpec::Signal(SIGUSR1), 40);
    let proc = open(&mut tr, Os::FreeBsd, SourceSpec::Process(PID), 41);
    assert_eq!(tr.open_sources(), 2);

    let closed = tr.close_source(sig).unwrap();
    assert_eq!(closed.spec, SourceSpec::Signal(SIGUSR1));
    assert_eq!(closed.fd, 40);
    assert_eq!(
        closed.delete,
        Some(KEvent {
            ident: SIGUSR1 as usize,
            filter: Filter::Signal,
            flags: EV_DELETE,
            fflags: 0,
            data: 0,
            udata: u64::MAX,
        })
    );
    let closed = tr.close_source(proc).unwrap();
    assert_eq!(closed.fd, 41);
    let delete = closed.delete.unwrap();
    assert_eq!(
        (delete.filter, delete.ident, delete.flags),
        (Filter::Proc, PID as usize, EV_DELETE)
    );
    assert_eq!(tr.open_sources(), 0);
    assert!(tr.close_source(proc).is_none(), "closing twice is nothing");
}

#[test]
fn on_32_bit_systems_the_delete_marker_is_32_bits() {
    let mut tr = Translator::with_udata_bits(32);
    let id = open(&mut tr, Os::NetBsd, SourceSpec::Signal(SIGINT), 40);
    assert_eq!(
        tr.close_source(id).unwrap().delete.unwrap().udata,
        0xffff_ffff
    );
}

// ---- refusals ----------------------------------------------------------

#[test]
fn refusals_of_the_add_become_errors_of_open_source() {
    let tr = Translator::new();
    let proc = tr
        .plan_source(Os::FreeBsd, SourceSpec::Process(PID))
        .unwrap();
    let sig = tr
        .plan_source(Os::FreeBsd, SourceSpec::Signal(SIGINT))
        .unwrap();
    let cases = [
        (proc, ESRCH, ErrorKind::NotFound),
        (proc, EPERM, ErrorKind::PermissionDenied),
        (proc, EACCES, ErrorKind::PermissionDenied),
        (sig, EINVAL, ErrorKind::InvalidInput),
        (sig, ENOMEM, ErrorKind::OutOfMemory),
    ];
    for (plan, errno, kind) in cases {
        let e = plan.refused(errno).unwrap_err();
        assert_eq!(e.kind(), kind, "{:?} errno {errno}", plan.spec());
    }
    let e = proc.refused(ESRCH).unwrap_err();
    assert!(e.to_string().contains("4242"), "{e}");
}

#[test]
fn macos_retries_without_the_exit_status_for_a_process_it_may_not_ask() {
    let tr = Translator::new();
    let plan = tr.plan_source(Os::MacOs, SourceSpec::Process(PID)).unwrap();
    let retry = plan.refused(EACCES).expect("a retry");
    assert_eq!(retry.add().unwrap().fflags, NOTE_EXIT);
    assert_eq!(retry.add().unwrap().flags, EV_ADD | EV_ONESHOT);
    assert_eq!(retry.exit_data(), ExitData::Never);
    // Once only.
    assert_eq!(
        retry.refused(EACCES).unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    // Other refusals are not retried.
    assert_eq!(plan.refused(ESRCH).unwrap_err().kind(), ErrorKind::NotFound);
}

// ---- exit statuses -----------------------------------------------------

#[test]
fn wait_statuses_decode_like_the_c_macros() {
    assert_eq!(decode_wait_status(0), ExitStatus::Code(0));
    assert_eq!(decode_wait_status(3 << 8), ExitStatus::Code(3));
    assert_eq!(decode_wait_status(255 << 8), ExitStatus::Code(255));
    assert_eq!(decode_wait_status(9), ExitStatus::Signaled(9));
    assert_eq!(decode_wait_status(0x80 | 11), ExitStatus::Signaled(11)); // core dumped
    assert_eq!(decode_wait_status((17 << 8) | 0x7f), ExitStatus::Unknown); // stopped
    // Every 16-bit status, against the host's WIFEXITED & co. (Linux uses
    // the same encoding as the BSDs).
    for raw in 0..=0xffff_i32 {
        let std = StdExit::from_raw(raw);
        let want = match (std.code(), std.signal()) {
            (Some(code), _) => ExitStatus::Code(code),
            (None, Some(sig)) => ExitStatus::Signaled(sig),
            (None, None) => ExitStatus::Unknown,
        };
        assert_eq!(decode_wait_status(i64::from(raw)), want, "{raw:#x}");
    }
}

#[test]
fn real_children_decode() {
    let code = std::process::Command::new("sh")
        .args(["-c", "exit 7"])
        .status()
        .unwrap();
    assert_eq!(
        decode_wait_status(i64::from(code.into_raw())),
        ExitStatus::Code(7)
    );
    let killed = std::process::Command::new("sh")
        .args(["-c", "kill -TERM $$"])
        .status()
        .unwrap();
    assert_eq!(
        decode_wait_status(i64::from(killed.into_raw())),
        ExitStatus::Signaled(15)
    );
}

#[test]
fn where_the_status_comes_from() {
    let bsd = exit_entry(PID, 2 << 8);
    assert!(is_exit(&bsd));
    assert_eq!(exit_status(&bsd, ExitData::Always), ExitStatus::Code(2));
    assert_eq!(exit_status(&bsd, ExitData::Never), ExitStatus::Unknown);
    let rule = ExitData::IfFlagged(NOTE_EXITSTATUS);
    assert_eq!(exit_status(&bsd, rule), ExitStatus::Unknown);
    let mac = KEvent {
        fflags: NOTE_EXIT | NOTE_EXITSTATUS,
        data: 6,
        ..bsd
    };
    assert_eq!(exit_status(&mac, rule), ExitStatus::Signaled(6));
    // An entry without NOTE_EXIT and EV_EOF is not an exit.
    let other = KEvent {
        flags: 0,
        fflags: 0,
        ..bsd
    };
    assert!(!is_exit(&other));
}

// ---- waits -------------------------------------------------------------

#[test]
fn the_drivers_watch_of_the_identity_descriptor_never_reaches_the_kernel() {
    let mut tr = Translator::new();
    open(&mut tr, Os::FreeBsd, SourceSpec::Signal(SIGINT), 40);
    let (call, _) = begin_with(&mut tr, &[add(40, K1, level(R))], no_classify);
    assert!(tr.changelist().is_empty(), "{:?}", tr.changelist());
    let call = call.unwrap();
    assert!(!call.submit_changes);
    assert_eq!(call.timeout, None, "nothing to report: the wait blocks");
    assert_eq!(tr.kernel_registrations(), 0);
    // Forgetting it is no kernel entry either.
    wait(&mut tr, &[], &[]);
    begin_with(&mut tr, &[remove(40, K1, level(R))], no_classify);
    assert!(tr.changelist().is_empty());
}

#[test]
fn signal_deliveries_are_readable_and_add_up_until_read() {
    let mut tr = Translator::new();
    let id = open(&mut tr, Os::FreeBsd, SourceSpec::Signal(SIGINT), 40);
    let out = wait(
        &mut tr,
        &[add(40, K1, level(R))],
        &[signal_entry(SIGINT, 3)],
    );
    assert_eq!(out.events, vec![input(K1)]);
    assert!(out.rejected.is_empty());
    assert_eq!(
        tr.read_source(id).unwrap(),
        SourceReport::Signal { count: 3 }
    );
    assert_eq!(tr.read_source(id).unwrap(), SourceReport::Nothing);
    // Nothing unread: nothing reported, and the next wait blocks.
    let (call, out) = begin_with(&mut tr, &[], no_classify);
    assert!(out.events.is_empty());
    assert_eq!(call.unwrap().timeout, None);
}

#[test]
fn an_unread_source_stays_readable_level() {
    let mut tr = Translator::new();
    let id = open(&mut tr, Os::FreeBsd, SourceSpec::Signal(SIGINT), 40);
    wait(
        &mut tr,
        &[add(40, K1, level(R))],
        &[signal_entry(SIGINT, 1)],
    );
    // Not read: the next wait reports it from user space at once ...
    let (call, mut out) = begin_with(&mut tr, &[], no_classify);
    assert_eq!(out.events, vec![input(K1)]);
    assert_eq!(call.unwrap().timeout, Some(KTimespec::ZERO));
    // ... merged with what the kernel adds in the same wait.
    tr.take_results(&[signal_entry(SIGINT, 2)], &mut out);
    assert_eq!(out.events, vec![input(K1)]);
    assert_eq!(
        tr.read_source(id).unwrap(),
        SourceReport::Signal { count: 3 }
    );
}

#[test]
fn counts_saturate_and_an_entry_is_at_least_one_delivery() {
    let mut tr = Translator::new();
    let id = open(&mut tr, Os::MacOs, SourceSpec::Signal(SIGINT), 40);
    wait(
        &mut tr,
        &[add(40, K1, level(R))],
        &[signal_entry(SIGINT, 0)],
    );
    assert_eq!(
        tr.read_source(id).unwrap(),
        SourceReport::Signal { count: 1 }
    );
    wait(
        &mut tr,
        &[],
        &[signal_entry(SIGINT, i64::from(u32::MAX) + 5)],
    );
    assert_eq!(
        tr.read_source(id).unwrap(),
        SourceReport::Signal { count: u32::MAX }
    );
}

#[test]
fn deliveries_before_the_first_wait_are_reported_by_it() {
    let mut tr = Translator::new();
    let id = open(&mut tr, Os::FreeBsd, SourceSpec::Signal(SIGINT), 40);
    // Not bound yet (the driver's change comes with the next batch): kept.
    let out = wait(&mut tr, &[], &[signal_entry(SIGINT, 2)]);
    assert!(out.events.is_empty());
    let (_, out) = begin_with(&mut tr, &[add(40, K1, level(R))], no_classify);
    assert_eq!(out.events, vec![input(K1)]);
    assert_eq!(
        tr.read_source(id).unwrap(),
        SourceReport::Signal { count: 2 }
    );
}

#[test]
fn a_process_exit_is_reported_once_and_its_knote_is_gone() {
    let mut tr = Translator::new();
    let id = open(&mut tr, Os::OpenBsd, SourceSpec::Process(PID), 41);
    let out = wait(
        &mut tr,
        &[add(41, K2, level(R))],
        &[exit_entry(PID, 2 << 8)],
    );
    assert_eq!(out.events, vec![input(K2)]);
    assert_eq!(
        tr.read_source(id).unwrap(),
        SourceReport::Exit(ExitStatus::Code(2))
    );
    assert_eq!(tr.read_source(id).unwrap(), SourceReport::Nothing);
    // The driver forgets the token; EV_ONESHOT already deleted the knote.
    let (_, out) = begin_with(&mut tr, &[remove(41, K2, level(R))], no_classify);
    assert!(out.events.is_empty());
    assert!(tr.changelist().is_empty());
    let closed = tr.close_source(id).unwrap();
    assert_eq!(closed.delete, None);
}

#[test]
fn a_macos_exit_without_the_status_flag_is_unknown() {
    let mut tr = Translator::new();
    let id = open(&mut tr, Os::MacOs, SourceSpec::Process(PID), 41);
    wait(&mut tr, &[add(41, K2, level(R))], &[exit_entry(PID, 0)]);
    assert_eq!(
        tr.read_source(id).unwrap(),
        SourceReport::Exit(ExitStatus::Unknown)
    );
    let id = open(&mut tr, Os::MacOs, SourceSpec::Process(PID + 1), 42);
    let mac = KEvent {
        fflags: NOTE_EXIT | NOTE_EXITSTATUS,
        ..exit_entry(PID + 1, 9)
    };
    wait(&mut tr, &[add(42, K1, level(R))], &[mac]);
    assert_eq!(
        tr.read_source(id).unwrap(),
        SourceReport::Exit(ExitStatus::Signaled(9))
    );
}

#[test]
fn two_sources_of_one_pid_share_the_knote() {
    let mut tr = Translator::new();
    let a = open(&mut tr, Os::FreeBsd, SourceSpec::Process(PID), 41);
    let plan = tr
        .plan_source(Os::FreeBsd, SourceSpec::Process(PID))
        .unwrap();
    assert_eq!(plan.add(), None, "the kernel watches it already");
    let b = tr.open_source(plan, 42);
    let out = wait(
        &mut tr,
        &[add(41, K1, level(R)), add(42, K2, level(R))],
        &[exit_entry(PID, 1 << 8)],
    );
    assert_eq!(out.events, vec![input(K1), input(K2)]);
    for id in [a, b] {
        assert_eq!(
            tr.read_source(id).unwrap(),
            SourceReport::Exit(ExitStatus::Code(1))
        );
    }
    // After the exit, a new source of that pid adds a new knote.
    let plan = tr
        .plan_source(Os::FreeBsd, SourceSpec::Process(PID))
        .unwrap();
    assert!(plan.add().is_some());
}

#[test]
fn a_shared_knote_is_deleted_by_the_last_close() {
    let mut tr = Translator::new();
    let a = open(&mut tr, Os::FreeBsd, SourceSpec::Signal(SIGINT), 40);
    let b = open(&mut tr, Os::FreeBsd, SourceSpec::Signal(SIGINT), 41);
    assert_eq!(tr.close_source(a).unwrap().delete, None);
    assert!(tr.close_source(b).unwrap().delete.is_some());
}

#[test]
fn entries_of_closed_sources_and_unknown_ids_are_nothing() {
    let mut tr = Translator::new();
    let id = open(&mut tr, Os::FreeBsd, SourceSpec::Signal(SIGINT), 40);
    wait(&mut tr, &[add(40, K1, level(R))], &[]);
    wait(&mut tr, &[remove(40, K1, level(R))], &[]);
    tr.close_source(id).unwrap();
    let out = wait(&mut tr, &[], &[signal_entry(SIGINT, 1), exit_entry(PID, 0)]);
    assert!(out.events.is_empty());
    assert_eq!(tr.read_source(id).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn a_removed_watch_is_not_reported_even_with_deliveries_unread() {
    let mut tr = Translator::new();
    let id = open(&mut tr, Os::FreeBsd, SourceSpec::Signal(SIGINT), 40);
    wait(
        &mut tr,
        &[add(40, K1, level(R))],
        &[signal_entry(SIGINT, 1)],
    );
    let (_, out) = begin_with(&mut tr, &[remove(40, K1, level(R))], no_classify);
    assert!(out.events.is_empty());
    // A removal of another key does not unbind it.
    let id2 = open(&mut tr, Os::FreeBsd, SourceSpec::Signal(SIGUSR1), 41);
    wait(&mut tr, &[add(41, K2, level(R))], &[]);
    let (_, out) = begin_with(&mut tr, &[remove(41, K1, level(R))], no_classify);
    assert!(out.events.is_empty());
    let out = wait(&mut tr, &[], &[signal_entry(SIGUSR1, 1)]);
    assert_eq!(out.events, vec![input(K2)]);
    let _ = (id, id2);
}

#[test]
fn error_entries_of_source_filters_are_not_rejections() {
    let mut tr = Translator::new();
    open(&mut tr, Os::FreeBsd, SourceSpec::Signal(SIGINT), 40);
    let (_, mut out) = begin_with(&mut tr, &[add(40, K1, level(R))], no_classify);
    let err = KEvent {
        flags: EV_ERROR,
        data: i64::from(ENOMEM),
        ..signal_entry(SIGINT, 0)
    };
    tr.take_results(&[err], &mut out);
    assert!(out.rejected.is_empty());
    assert!(out.events.is_empty());
}

#[test]
fn a_reused_number_still_removes_the_old_descriptor_registration() {
    // The program registered descriptor 40, closed it without forgetting,
    // and the number became a source's identity descriptor before the
    // removal reached the backend.
    let mut tr = Translator::new();
    let (_, _) = begin(&mut tr, &[add(40, K1, level(R))], 64);
    tr.take_results(&[], &mut Output::default());
    assert_eq!(tr.kernel_registrations(), 1);
    open(&mut tr, Os::FreeBsd, SourceSpec::Signal(SIGINT), 40);
    begin_with(
        &mut tr,
        &[remove(40, K1, level(R)), add(40, K2, level(R))],
        no_classify,
    );
    assert_eq!(tr.changelist().len(), 1, "{:?}", tr.changelist());
    assert_eq!(tr.changelist()[0].flags, EV_DELETE);
    assert_eq!(tr.changelist()[0].filter, Filter::Read);
    assert_eq!(tr.kernel_registrations(), 0);
    // K2 is the source's.
    let out = wait(&mut tr, &[], &[signal_entry(SIGINT, 1)]);
    assert_eq!(out.events, vec![input(K2)]);
}

#[test]
fn sources_respect_the_room_for_events() {
    let mut tr = Translator::new();
    let a = open(&mut tr, Os::FreeBsd, SourceSpec::Signal(SIGINT), 40);
    let b = open(&mut tr, Os::FreeBsd, SourceSpec::Signal(SIGUSR1), 41);
    let (_, mut out) = begin(&mut tr, &[add(40, K1, level(R)), add(41, K2, level(R))], 1);
    tr.take_results(
        &[signal_entry(SIGINT, 1), signal_entry(SIGUSR1, 1)],
        &mut out,
    );
    assert_eq!(out.events, vec![input(K1)]);
    tr.read_source(a).unwrap();
    // The other one is reported by the next wait, from user space.
    let (_, out) = begin(&mut tr, &[], 1);
    assert_eq!(out.events, vec![input(K2)]);
    assert_eq!(
        tr.read_source(b).unwrap(),
        SourceReport::Signal { count: 1 }
    );
}

#[test]
fn sources_and_descriptors_mix_in_one_wait() {
    let mut tr = Translator::new();
    let id = open(&mut tr, Os::NetBsd, SourceSpec::Process(PID), 41);
    let k3 = Key::new(3, 0);
    let (_, mut out) = begin(&mut tr, &[add(41, K2, level(R)), add(7, k3, level(R))], 64);
    // Only the socket's filter reaches the kernel.
    assert_eq!(tr.changelist().len(), 1);
    assert_eq!(tr.changelist()[0].ident, 7);
    tr.take_results(
        &[ready_entry(7, k3, Filter::Read, 0, 1), exit_entry(PID, 0)],
        &mut out,
    );
    assert_eq!(
        out.events,
        vec![
            RawEvent {
                key: k3,
                ready: Ready::IN
            },
            input(K2)
        ]
    );
    assert_eq!(
        tr.read_source(id).unwrap(),
        SourceReport::Exit(ExitStatus::Code(0))
    );
    assert_eq!(tr.source_ids(), vec![id]);
}
