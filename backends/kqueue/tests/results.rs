//! Returned `kevent` entries → `RawEvent`s and `Rejection`s; the internal
//! entries a wait queues for the next; regular files; the waker.

mod common;

use common::*;
use evmux_interest::{Key, Output, RawEvent, Ready, Rejection};
use evmux_kqueue::consts::*;
use evmux_kqueue::translate::{FdKind, Filter, KEvent, Translator};

const K1: Key = Key::new(1, 0);
const K2: Key = Key::new(2, 3);
const MARK: u64 = u64::MAX;
const EBADF: i64 = 9;
const ENOENT: i64 = 2;
const EINVAL: i64 = 22;
const ECONNRESET: u32 = 54; // BSD value; only "non-zero" matters

/// A translator that watches `fd` under `key` with `w` (the setup wait is
/// finished: no error, no event).
fn watching(fd: i32, key: Key, w: evmux_interest::Watch) -> Translator {
    let mut tr = Translator::new();
    let (_, mut out) = begin(&mut tr, &[add(fd, key, w)], 64);
    tr.take_results(&[], &mut out);
    tr
}

fn results(tr: &mut Translator, entries: &[KEvent]) -> Output {
    let (_, mut out) = begin(tr, &[], 64);
    tr.take_results(entries, &mut out);
    out
}

fn one(out: &Output) -> RawEvent {
    assert_eq!(out.events.len(), 1, "{:?}", out.events);
    out.events[0]
}

#[test]
fn read_with_data_is_in() {
    let mut tr = watching(5, K1, level(R));
    let e = ready_entry(5, K1, Filter::Read, 0, 17);
    assert_eq!(
        one(&results(&mut tr, &[e])),
        RawEvent {
            key: K1,
            ready: Ready::IN
        }
    );
}

#[test]
fn read_eof_is_in_rdhup() {
    let mut tr = watching(5, K1, level(R));
    let e = ready_entry(5, K1, Filter::Read, EV_EOF, 0);
    assert_eq!(one(&results(&mut tr, &[e])).ready, Ready::IN | Ready::RDHUP);
}

#[test]
fn read_eof_with_socket_error_adds_err() {
    let mut tr = watching(5, K1, level(R));
    let mut e = ready_entry(5, K1, Filter::Read, EV_EOF, 0);
    e.fflags = ECONNRESET;
    assert_eq!(
        one(&results(&mut tr, &[e])).ready,
        Ready::IN | Ready::RDHUP | Ready::ERR
    );
}

#[test]
fn write_ready_is_out() {
    let mut tr = watching(5, K1, level(W));
    let e = ready_entry(5, K1, Filter::Write, 0, 4096);
    assert_eq!(one(&results(&mut tr, &[e])).ready, Ready::OUT);
}

#[test]
fn write_eof_is_out_hup() {
    let mut tr = watching(5, K1, level(W));
    let e = ready_entry(5, K1, Filter::Write, EV_EOF, 0);
    assert_eq!(one(&results(&mut tr, &[e])).ready, Ready::OUT | Ready::HUP);
}

#[test]
fn read_and_write_of_one_key_merge_into_one_event() {
    let mut tr = Translator::new();
    let (_, mut out) = begin(&mut tr, &[add(5, K1, level(RW)), add(6, K2, level(R))], 64);
    tr.take_results(&[], &mut out);
    let entries = [
        ready_entry(5, K1, Filter::Read, 0, 1),
        ready_entry(6, K2, Filter::Read, 0, 1),
        ready_entry(5, K1, Filter::Write, EV_EOF, 0),
    ];
    let out = results(&mut tr, &entries);
    assert_eq!(
        out.events,
        [
            RawEvent {
                key: K1,
                ready: Ready::IN | Ready::OUT | Ready::HUP
            },
            RawEvent {
                key: K2,
                ready: Ready::IN
            },
        ]
    );
}

#[test]
fn error_entries_of_changes_become_rejections_with_their_errno() {
    let mut tr = Translator::new();
    let (call, mut out) = begin(&mut tr, &[add(5, K1, level(R)), add(6, K2, level(W))], 64);
    assert!(call.unwrap().submit_changes);
    // FreeBSD/OpenBSD overwrite the flags with EV_ERROR; XNU ORs it in.
    let mut xnu = error_entry(6, Filter::Write, K2.0, EINVAL);
    xnu.flags |= EV_ADD;
    tr.take_results(&[error_entry(5, Filter::Read, K1.0, EBADF), xnu], &mut out);
    assert_eq!(
        out.rejected,
        [
            Rejection { key: K1, errno: 9 },
            Rejection { key: K2, errno: 22 },
        ]
    );
    assert!(out.events.is_empty());
    assert_eq!(
        tr.kernel_registrations(),
        0,
        "refused changes are not in effect"
    );
    // Rejected: the wait does not block, and no second call is made.
    assert_eq!(tr.next_call(&out), None);
}

#[test]
fn a_key_is_rejected_once_and_what_its_change_added_is_deleted() {
    let mut tr = Translator::new();
    let (_, mut out) = begin(&mut tr, &[add(5, K1, edge(RW))], 64);
    // The read filter was added, the write filter refused.
    tr.take_results(&[error_entry(5, Filter::Write, K1.0, EINVAL)], &mut out);
    assert_eq!(out.rejected, [Rejection { key: K1, errno: 22 }]);
    let queued: Vec<_> = tr.pending_internal().copied().collect();
    assert_eq!(queued, [KEvent::change(5, Filter::Read, EV_DELETE, MARK)]);
    // ... at the head of the next changelist, before the driver's retry.
    begin(&mut tr, &[add(5, K1, edge(RW))], 64);
    assert_eq!(
        tr.changelist(),
        [
            KEvent::change(5, Filter::Read, EV_DELETE, MARK),
            KEvent::change(5, Filter::Read, EV_ADD | EV_CLEAR, K1.0),
            KEvent::change(5, Filter::Write, EV_ADD | EV_CLEAR, K1.0),
        ]
    );

    // Both filters refused: one rejection, nothing to undo.
    let mut tr = Translator::new();
    let (_, mut out) = begin(&mut tr, &[add(5, K1, level(RW))], 64);
    tr.take_results(
        &[
            error_entry(5, Filter::Read, K1.0, EBADF),
            error_entry(5, Filter::Write, K1.0, EBADF),
        ],
        &mut out,
    );
    assert_eq!(out.rejected, [Rejection { key: K1, errno: 9 }]);
    assert_eq!(tr.pending_internal().count(), 0);
}

#[test]
fn success_receipts_are_ignored() {
    let mut tr = Translator::new();
    let (_, mut out) = begin(&mut tr, &[add(5, K1, level(R))], 64);
    tr.take_results(&[error_entry(5, Filter::Read, K1.0, 0)], &mut out);
    assert!(out.rejected.is_empty() && out.events.is_empty());
    assert_eq!(tr.kernel_registrations(), 1);
}

#[test]
fn delete_errors_are_not_rejections_and_the_wait_is_made_after() {
    for errno in [ENOENT, EBADF] {
        let mut tr = watching(5, K1, level(RW));
        // Forgotten, then closed before the wait: the deletes fail.
        let (call, mut out) = begin(&mut tr, &[remove(5, K1, level(RW))], 64);
        assert!(call.unwrap().submit_changes);
        tr.take_results(
            &[
                error_entry(5, Filter::Read, MARK, errno),
                error_entry(5, Filter::Write, MARK, errno),
            ],
            &mut out,
        );
        assert!(out.rejected.is_empty());
        // The kernel skipped collecting events: wait in a second call.
        let wait = tr.next_call(&out).unwrap();
        assert!(!wait.submit_changes && wait.nevents == 64);
    }
}

#[test]
fn a_failed_delete_before_a_re_add_does_not_hide_the_add_error() {
    // Rearm of a closed descriptor: DELETE and ADD of the same filter both
    // fail; only the ADD's error (its udata is the key) is a rejection.
    let mut tr = watching(5, K1, edge(R));
    let (_, mut out) = begin(&mut tr, &[rearm(5, K1, edge(R))], 64);
    tr.take_results(
        &[
            error_entry(5, Filter::Read, MARK, EBADF),
            error_entry(5, Filter::Read, K1.0, EBADF),
        ],
        &mut out,
    );
    assert_eq!(out.rejected, [Rejection { key: K1, errno: 9 }]);

    // Only the DELETE fails (the knote was gone): nothing is rejected.
    let mut tr = watching(5, K1, edge(R));
    let (_, mut out) = begin(&mut tr, &[rearm(5, K1, edge(R))], 64);
    tr.take_results(&[error_entry(5, Filter::Read, MARK, ENOENT)], &mut out);
    assert!(out.rejected.is_empty());
    assert_eq!(tr.kernel_registrations(), 1);
}

#[test]
fn stale_entries_are_dropped() {
    let mut tr = watching(5, K2, level(R));
    // Same descriptor, another generation's udata: a previous registration.
    let old = ready_entry(5, Key::new(2, 2), Filter::Read, 0, 1);
    // A descriptor nobody watches.
    let other = ready_entry(7, K2, Filter::Read, 0, 1);
    assert!(results(&mut tr, &[old, other]).events.is_empty());
}

#[test]
fn oneshot_both_reported_by_one_filter_disables_the_other() {
    let mut tr = watching(5, K1, oneshot(RW));
    let out = results(&mut tr, &[ready_entry(5, K1, Filter::Read, 0, 3)]);
    assert_eq!(one(&out).ready, Ready::IN);
    // The next changelist starts by disabling the write filter, before the
    // next wait collects anything.
    begin(&mut tr, &[], 64);
    assert_eq!(
        tr.changelist(),
        [KEvent::change(5, Filter::Write, EV_DISABLE, K1.0)]
    );
    // An error of that disable (descriptor closed meanwhile) is nobody's.
    let mut out = Output::default();
    tr.take_results(&[error_entry(5, Filter::Write, K1.0, EBADF)], &mut out);
    assert!(out.rejected.is_empty());
}

#[test]
fn oneshot_both_reported_by_both_filters_needs_no_disable() {
    let mut tr = watching(5, K1, oneshot(RW));
    let out = results(
        &mut tr,
        &[
            ready_entry(5, K1, Filter::Write, 0, 3),
            ready_entry(5, K1, Filter::Read, 0, 3),
        ],
    );
    assert_eq!(one(&out).ready, Ready::IN | Ready::OUT);
    assert_eq!(tr.pending_internal().count(), 0);
}

#[test]
fn the_oneshot_disable_is_dropped_when_the_batch_changes_the_key() {
    let mut tr = watching(5, K1, oneshot(RW));
    results(&mut tr, &[ready_entry(5, K1, Filter::Write, 0, 3)]);
    assert_eq!(tr.pending_internal().count(), 1);
    begin(&mut tr, &[rearm(5, K1, oneshot(RW))], 64);
    assert!(tr.changelist().iter().all(|e| !e.has(EV_DISABLE)));
    assert_eq!(tr.changelist().len(), 4);
}

#[test]
fn oneshot_with_one_direction_relies_on_dispatch_alone() {
    let mut tr = watching(5, K1, oneshot(R));
    results(&mut tr, &[ready_entry(5, K1, Filter::Read, 0, 3)]);
    assert_eq!(tr.pending_internal().count(), 0);
}

#[test]
fn readiness_is_limited_to_what_the_registration_may_report() {
    // A write-only registration never gets IN/RDHUP, even from a read entry
    // of an old registration with the same key (not possible in practice).
    let mut tr = watching(5, K1, level(W));
    let out = results(&mut tr, &[ready_entry(5, K1, Filter::Read, EV_EOF, 0)]);
    assert!(out.events.is_empty());
}

#[test]
fn the_waker_reports_once_per_wait() {
    let mut tr = Translator::new();
    let wake = KEvent {
        ident: 0,
        filter: Filter::User,
        flags: EV_CLEAR,
        fflags: NOTE_TRIGGER,
        data: 0,
        udata: tr.udata(Key::WAKER),
    };
    let (_, mut out) = begin(&mut tr, &[], 8);
    assert!(tr.take_results(&[wake, wake], &mut out));
    assert_eq!(
        out.events,
        [RawEvent {
            key: Key::WAKER,
            ready: Ready::IN
        }]
    );
    // A self-pipe waker (NetBSD, OpenBSD) reports through EVFILT_READ.
    let pipe = KEvent {
        filter: Filter::Read,
        ident: 3,
        ..wake
    };
    let (_, mut out) = begin(&mut tr, &[], 8);
    assert!(tr.take_results(&[pipe], &mut out));
    assert_eq!(out.events.len(), 1);
}

#[test]
fn regular_files_stay_in_user_space() {
    let classify = |fd| {
        if fd == 9 {
            FdKind::Regular
        } else {
            FdKind::Socket
        }
    };
    let k_level = Key::new(1, 0);
    let k_edge = Key::new(2, 0);
    let k_once = Key::new(3, 0);
    let mut tr = Translator::new();
    let (call, out) = begin_with(&mut tr, &[add(9, k_level, level(R))], classify);
    assert!(tr.changelist().is_empty(), "never given to the kernel");
    assert_eq!(tr.user_space_files(), 1);
    assert_eq!(
        out.events,
        [RawEvent {
            key: k_level,
            ready: Ready::IN
        }]
    );
    // Something is reported: the kernel is polled, not waited on.
    assert_eq!(
        call.unwrap().timeout,
        Some(evmux_kqueue::translate::KTimespec::ZERO)
    );

    // Level: every wait.
    for _ in 0..3 {
        let (_, out) = begin_with(&mut tr, &[], classify);
        assert_eq!(out.events.len(), 1);
    }
    begin_with(&mut tr, &[remove(9, k_level, level(R))], classify);
    assert_eq!(tr.user_space_files(), 0);

    // Edge and oneshot: once per (re)arm.
    for (key, w) in [(k_edge, edge(RW)), (k_once, oneshot(RW))] {
        let (_, out) = begin_with(&mut tr, &[add(9, key, w)], classify);
        assert_eq!(
            out.events,
            [RawEvent {
                key,
                ready: Ready::IN | Ready::OUT
            }]
        );
        let (call, out) = begin_with(&mut tr, &[], classify);
        assert!(out.events.is_empty());
        assert_eq!(call.unwrap().timeout, None, "nothing due: the wait blocks");
        let (_, out) = begin_with(&mut tr, &[rearm(9, key, w)], classify);
        assert_eq!(out.events.len(), 1);
        let (_, out) = begin_with(&mut tr, &[], classify);
        assert!(out.events.is_empty());
        begin_with(&mut tr, &[remove(9, key, w)], classify);
    }
    assert_eq!(tr.user_space_files(), 0);
}

#[test]
fn the_descriptor_is_classified_once_per_registration() {
    let mut asked = Vec::new();
    let mut tr = Translator::new();
    let mut out = Output::default();
    let mut classify = |fd| {
        asked.push(fd);
        FdKind::Fifo
    };
    for changes in [
        vec![add(5, K1, level(R))],
        vec![modify(5, K1, level(R), level(RW))],
        vec![rearm(5, K1, level(RW))],
        vec![remove(5, K1, level(RW))],
        vec![add(5, K2, level(R))],
    ] {
        out.clear();
        tr.begin(&changes, &mut classify, &mut out, 8, None);
    }
    assert_eq!(asked, [5, 5], "K1 once, K2 once; never for removals");
}

#[test]
fn files_fill_the_room_first_and_no_events_are_collected_then() {
    let mut tr = Translator::new();
    let mut out = Output::default();
    let mut classify = |_| FdKind::Regular;
    let changes: Vec<_> = (0..3)
        .map(|i| add(20 + i, Key::new(i as u32, 0), level(R)))
        .collect();
    let call = tr.begin(&changes, &mut classify, &mut out, 2, None);
    assert_eq!(out.events.len(), 2);
    assert_eq!(call, None, "no room, no change: no kevent call");
}

#[test]
fn on_a_32_bit_system_entries_resolve_by_descriptor_and_low_key_bits() {
    let key = Key::new(6, 9);
    let mut tr = Translator::with_udata_bits(32);
    let (_, mut out) = begin(&mut tr, &[add(5, key, level(R))], 64);
    tr.take_results(&[], &mut out);
    let mut e = ready_entry(5, key, Filter::Read, 0, 1);
    e.udata = 6; // what a 32-bit kernel hands back
    let out = results(&mut tr, &[e]);
    assert_eq!(one(&out).key, key, "the full key, generation included");
    // Another slot's low bits: stale.
    e.udata = 7;
    assert!(results(&mut tr, &[e]).events.is_empty());
    // The waker and the delete marker are all ones in 32 bits.
    let wake = KEvent {
        ident: 0,
        filter: Filter::User,
        flags: 0,
        fflags: 0,
        data: 0,
        udata: u64::from(u32::MAX),
    };
    let (_, mut out) = begin(&mut tr, &[], 8);
    assert!(tr.take_results(&[wake], &mut out));
    begin(&mut tr, &[remove(5, key, level(R))], 8);
    assert_eq!(
        tr.changelist(),
        [KEvent::change(
            5,
            Filter::Read,
            EV_DELETE,
            u64::from(u32::MAX)
        )]
    );
}
