//! `Change`s → kqueue changelist, and which `kevent` calls a wait makes.

mod common;

use common::*;
use evmux_interest::{Key, Output};
use evmux_kqueue::consts::*;
use evmux_kqueue::translate::{
    Call, Filter, KEvent, KTimespec, MAX_TIMEOUT_SECS, Translator, change_entries, submitted_flags,
    timespec,
};
use std::time::Duration;

const K1: Key = Key::new(1, 0);
const K2: Key = Key::new(2, 7);
const K3: Key = Key::new(3, 1);
const MARK: u64 = u64::MAX; // udata of EV_DELETE entries on a 64-bit target

fn ev(fd: i32, filter: Filter, flags: u16, udata: u64) -> KEvent {
    KEvent::change(fd, filter, flags, udata)
}

#[test]
fn add_readable_level_is_one_plain_add() {
    let list = changelist_after(&[], &[add(5, K1, level(R))]);
    assert_eq!(list, [ev(5, Filter::Read, EV_ADD, K1.0)]);
}

#[test]
fn add_both_edge_is_two_clear_adds_in_one_changelist() {
    let list = changelist_after(&[], &[add(5, K2, edge(RW))]);
    assert_eq!(
        list,
        [
            ev(5, Filter::Read, EV_ADD | EV_CLEAR, K2.0),
            ev(5, Filter::Write, EV_ADD | EV_CLEAR, K2.0),
        ]
    );
}

#[test]
fn oneshot_add_uses_dispatch() {
    let list = changelist_after(&[], &[add(5, K1, oneshot(W))]);
    assert_eq!(list, [ev(5, Filter::Write, EV_ADD | EV_DISPATCH, K1.0)]);
    assert!(list.iter().all(|e| !e.has(EV_ONESHOT)));
}

#[test]
fn modify_read_to_write_deletes_read_and_adds_write() {
    let list = changelist_after(
        &[add(5, K1, level(R))],
        &[modify(5, K1, level(R), level(W))],
    );
    assert_eq!(
        list,
        [
            ev(5, Filter::Read, EV_DELETE, MARK),
            ev(5, Filter::Write, EV_ADD, K1.0),
        ]
    );
}

#[test]
fn modify_read_to_both_only_adds_write() {
    let list = changelist_after(
        &[add(5, K1, level(R))],
        &[modify(5, K1, level(R), level(RW))],
    );
    assert_eq!(list, [ev(5, Filter::Write, EV_ADD, K1.0)]);
}

#[test]
fn modify_both_to_read_deletes_write() {
    let list = changelist_after(&[add(5, K1, edge(RW))], &[modify(5, K1, edge(RW), edge(R))]);
    assert_eq!(list, [ev(5, Filter::Write, EV_DELETE, MARK)]);
}

#[test]
fn trigger_change_deletes_and_re_adds() {
    // Kernels keep an existing knote's EV_CLEAR/EV_DISPATCH on a re-add.
    let list = changelist_after(&[add(5, K1, level(R))], &[modify(5, K1, level(R), edge(R))]);
    assert_eq!(
        list,
        [
            ev(5, Filter::Read, EV_DELETE, MARK),
            ev(5, Filter::Read, EV_ADD | EV_CLEAR, K1.0),
        ]
    );
}

#[test]
fn rearm_edge_deletes_and_re_adds_so_the_kernel_rechecks() {
    let list = changelist_after(&[add(5, K1, edge(R))], &[rearm(5, K1, edge(R))]);
    assert_eq!(
        list,
        [
            ev(5, Filter::Read, EV_DELETE, MARK),
            ev(5, Filter::Read, EV_ADD | EV_CLEAR, K1.0),
        ]
    );
}

#[test]
fn rearm_fired_oneshot_both_re_adds_both_with_dispatch() {
    let list = changelist_after(&[add(5, K1, oneshot(RW))], &[rearm(5, K1, oneshot(RW))]);
    assert_eq!(
        list,
        [
            ev(5, Filter::Read, EV_DELETE, MARK),
            ev(5, Filter::Read, EV_ADD | EV_DISPATCH, K1.0),
            ev(5, Filter::Write, EV_DELETE, MARK),
            ev(5, Filter::Write, EV_ADD | EV_DISPATCH, K1.0),
        ]
    );
}

#[test]
fn removal_of_both_deletes_both_filters() {
    let mut tr = Translator::new();
    begin(&mut tr, &[add(5, K1, level(RW))], 64);
    assert_eq!(tr.kernel_registrations(), 1);
    begin(&mut tr, &[remove(5, K1, level(RW))], 64);
    assert_eq!(
        tr.changelist(),
        [
            ev(5, Filter::Read, EV_DELETE, MARK),
            ev(5, Filter::Write, EV_DELETE, MARK),
        ]
    );
    assert_eq!(tr.kernel_registrations(), 0);
}

#[test]
fn a_batch_keeps_its_order_removals_first() {
    let setup = [add(5, K1, level(R)), add(6, K3, level(R))];
    // Removals first (the driver's order), then a new registration of the
    // same descriptor number, then a modification.
    let batch = [
        remove(5, K1, level(R)),
        add(5, K2, level(W)),
        modify(6, K3, level(R), level(RW)),
    ];
    let list = changelist_after(&setup, &batch);
    assert_eq!(
        list,
        [
            ev(5, Filter::Read, EV_DELETE, MARK),
            ev(5, Filter::Write, EV_ADD, K2.0),
            ev(6, Filter::Write, EV_ADD, K3.0),
        ]
    );
}

#[test]
fn change_entries_is_usable_alone() {
    let mut out = Vec::new();
    change_entries(&modify(9, K1, level(RW), oneshot(W)), 42, 7, &mut out);
    assert_eq!(
        out,
        [
            ev(9, Filter::Read, EV_DELETE, 7),
            ev(9, Filter::Write, EV_DELETE, 7),
            ev(9, Filter::Write, EV_ADD | EV_DISPATCH, 42),
        ]
    );
}

#[test]
fn changes_and_wait_share_one_call_without_receipts() {
    let mut tr = Translator::new();
    let (call, _) = begin(&mut tr, &[add(5, K1, level(RW)), add(6, K2, edge(R))], 64);
    let call = call.unwrap();
    assert_eq!(
        call,
        Call {
            submit_changes: true,
            receipts: false,
            nevents: 64,
            timeout: Some(KTimespec {
                sec: 0,
                nsec: 10_000_000
            }),
        }
    );
    // EV_RECEIPT would make every kernel skip collecting events.
    assert!(
        tr.changelist()
            .iter()
            .all(|e| !e.has(EV_RECEIPT) && submitted_flags(e, &call) == e.flags)
    );
    // The kernel collected nothing (timeout): no second call.
    let mut out = Output::default();
    assert!(!tr.take_results(&[], &mut out));
    assert_eq!(tr.next_call(&out), None);
}

#[test]
fn a_changelist_longer_than_the_room_goes_with_receipts_then_a_wait() {
    let mut tr = Translator::new();
    let changes: Vec<_> = (0..5)
        .map(|i| add(10 + i, Key::new(i as u32, 0), level(RW)))
        .collect();
    let (call, mut out) = begin(&mut tr, &changes, 4);
    let call = call.unwrap();
    assert_eq!(tr.changelist().len(), 10);
    assert!(call.submit_changes && call.receipts);
    assert_eq!(call.nevents, 10, "one receipt per entry must fit");
    assert_eq!(call.timeout, Some(KTimespec::ZERO));
    // Every submitted entry carries EV_RECEIPT.
    assert!(
        tr.changelist()
            .iter()
            .all(|e| submitted_flags(e, &call) & EV_RECEIPT != 0)
    );
    // The kernel answers each with a success receipt (EV_ERROR, data 0).
    let receipts: Vec<_> = tr
        .changelist()
        .iter()
        .map(|e| KEvent {
            flags: EV_ERROR,
            data: 0,
            ..*e
        })
        .collect();
    tr.take_results(&receipts, &mut out);
    assert!(out.rejected.is_empty() && out.events.is_empty());
    let wait = tr.next_call(&out).unwrap();
    assert_eq!(
        wait,
        Call {
            submit_changes: false,
            receipts: false,
            nevents: 4,
            timeout: Some(KTimespec {
                sec: 0,
                nsec: 10_000_000
            }),
        }
    );
    tr.take_results(&[], &mut out);
    assert_eq!(tr.next_call(&out), None);
}

#[test]
fn an_empty_batch_is_a_plain_wait() {
    let mut tr = Translator::new();
    let (call, _) = begin(&mut tr, &[], 8);
    assert_eq!(
        call.unwrap(),
        Call {
            submit_changes: false,
            receipts: false,
            nevents: 8,
            timeout: Some(KTimespec {
                sec: 0,
                nsec: 10_000_000
            }),
        }
    );
    assert!(tr.changelist().is_empty());
}

#[test]
fn timeouts_are_exact_and_clamped() {
    assert_eq!(timespec(None), None);
    assert_eq!(timespec(Some(Duration::ZERO)), Some(KTimespec::ZERO));
    assert_eq!(
        timespec(Some(Duration::from_nanos(1))),
        Some(KTimespec { sec: 0, nsec: 1 })
    );
    assert_eq!(
        timespec(Some(Duration::new(1, 500_000_001))),
        Some(KTimespec {
            sec: 1,
            nsec: 500_000_001
        })
    );
    let year = Duration::from_secs(MAX_TIMEOUT_SECS as u64);
    assert_eq!(
        timespec(Some(year - Duration::from_nanos(1))),
        Some(KTimespec {
            sec: MAX_TIMEOUT_SECS - 1,
            nsec: 999_999_999
        })
    );
    for long in [year, Duration::MAX] {
        assert_eq!(
            timespec(Some(long)),
            Some(KTimespec {
                sec: MAX_TIMEOUT_SECS,
                nsec: 0
            })
        );
    }
    // Clamped seconds fit a 32-bit time_t, and OpenBSD's 10^8 s limit.
    const { assert!(MAX_TIMEOUT_SECS < i32::MAX as i64 && MAX_TIMEOUT_SECS <= 100_000_000) };
}

#[test]
fn udata_is_reduced_to_the_pointer_width() {
    let key = Key::new(3, 5);
    let mut tr = Translator::with_udata_bits(32);
    assert_eq!(tr.udata(key), 3);
    assert_eq!(tr.udata(Key::WAKER), u64::from(u32::MAX));
    begin(&mut tr, &[add(5, key, level(R))], 8);
    assert_eq!(tr.changelist(), [ev(5, Filter::Read, EV_ADD, 3)]);
    assert_eq!(Translator::new().udata(key), key.0);
}
