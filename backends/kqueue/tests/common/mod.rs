//! Helpers shared by the translation tests.
#![allow(dead_code)]

use std::os::fd::RawFd;
use std::time::Duration;

use evmux_interest::{Change, Interest, Key, Output, Trigger, Watch};
use evmux_kqueue::translate::{Call, FdKind, Filter, KEvent, Translator};

pub const R: Interest = Interest::READABLE;
pub const W: Interest = Interest::WRITABLE;
pub const RW: Interest = Interest::BOTH;

pub fn watch(interest: Interest, trigger: Trigger) -> Watch {
    Watch { interest, trigger }
}

pub fn level(interest: Interest) -> Watch {
    watch(interest, Trigger::Level)
}

pub fn edge(interest: Interest) -> Watch {
    watch(interest, Trigger::Edge)
}

pub fn oneshot(interest: Interest) -> Watch {
    watch(interest, Trigger::Oneshot)
}

pub fn add(fd: RawFd, key: Key, w: Watch) -> Change {
    Change {
        fd,
        key,
        old: None,
        new: Some(w),
        rearm: false,
    }
}

pub fn modify(fd: RawFd, key: Key, old: Watch, new: Watch) -> Change {
    Change {
        fd,
        key,
        old: Some(old),
        new: Some(new),
        rearm: false,
    }
}

pub fn rearm(fd: RawFd, key: Key, w: Watch) -> Change {
    Change {
        fd,
        key,
        old: Some(w),
        new: Some(w),
        rearm: true,
    }
}

pub fn remove(fd: RawFd, key: Key, old: Watch) -> Change {
    Change {
        fd,
        key,
        old: Some(old),
        new: None,
        rearm: false,
    }
}

/// Every descriptor is a socket.
pub fn sockets(_: RawFd) -> FdKind {
    FdKind::Socket
}

/// One wait's first step with `max_events` room; returns the call and the
/// output (regular files already reported).
pub fn begin(tr: &mut Translator, changes: &[Change], max_events: usize) -> (Option<Call>, Output) {
    let mut out = Output::default();
    let mut classify = sockets;
    let call = tr.begin(
        changes,
        &mut classify,
        &mut out,
        max_events,
        Some(Duration::from_millis(10)),
    );
    (call, out)
}

/// Like [`begin`], with a classifier.
pub fn begin_with(
    tr: &mut Translator,
    changes: &[Change],
    classify: impl FnMut(RawFd) -> FdKind,
) -> (Option<Call>, Output) {
    let mut out = Output::default();
    let mut classify = classify;
    let call = tr.begin(changes, &mut classify, &mut out, 64, None);
    (call, out)
}

/// The changelist of `changes` given to a fresh translator after `setup`.
pub fn changelist_after(setup: &[Change], changes: &[Change]) -> Vec<KEvent> {
    let mut tr = Translator::new();
    begin(&mut tr, setup, 64);
    begin(&mut tr, changes, 64);
    tr.changelist().to_vec()
}

/// A returned entry of a descriptor filter (64-bit `udata`: the key).
pub fn ready_entry(fd: RawFd, key: Key, filter: Filter, flags: u16, data: i64) -> KEvent {
    KEvent {
        ident: fd as usize,
        filter,
        flags,
        fflags: 0,
        data,
        udata: key.0,
    }
}

/// An `EV_ERROR` entry as FreeBSD returns it (flags overwritten).
pub fn error_entry(fd: RawFd, filter: Filter, udata: u64, errno: i64) -> KEvent {
    KEvent {
        ident: fd as usize,
        filter,
        flags: evmux_kqueue::consts::EV_ERROR,
        fflags: 0,
        data: errno,
        udata,
    }
}
