//! The BSD → canonical mapping, as a table: for each pipe and socket state,
//! what kqueue returns, run through the translator and
//! `Event::from_ready`, against the event Linux's `poll(2)` mask for the same
//! state gives (`SEMANTICS.md`, "What an event says").
//!
//! The kqueue side of each row is what the kernels' filters return
//! (FreeBSD's `filt_soread`/`filt_sowrite`/`filt_piperead`/`filt_pipewrite`,
//! XNU's equivalents): a read or write entry, `EV_EOF` when that direction
//! is shut, `fflags` = the socket error with `EV_EOF`. The Linux side is
//! `unix_poll`/`tcp_poll`/`pipe_poll`.

mod common;

use common::*;
use evmux_interest::{Event, Interest, Key, Output, Ready, Token};
use evmux_kqueue::consts::EV_EOF;
use evmux_kqueue::translate::{FdKind, Filter, KEvent, Translator};

const KEY: Key = Key::new(4, 1);
const FD: i32 = 7;
const ECONNRESET: u32 = 54;
const ECONNREFUSED: u32 = 61;

/// A kqueue entry of a row: filter, `EV_EOF`, `data`, `fflags`.
#[derive(Clone, Copy, Debug)]
struct Entry {
    filter: Filter,
    eof: bool,
    data: i64,
    fflags: u32,
}

const fn read(data: i64) -> Entry {
    Entry {
        filter: Filter::Read,
        eof: false,
        data,
        fflags: 0,
    }
}
const fn read_eof(data: i64, fflags: u32) -> Entry {
    Entry {
        filter: Filter::Read,
        eof: true,
        data,
        fflags,
    }
}
const fn write(space: i64) -> Entry {
    Entry {
        filter: Filter::Write,
        eof: false,
        data: space,
        fflags: 0,
    }
}
const fn write_eof(fflags: u32) -> Entry {
    Entry {
        filter: Filter::Write,
        eof: true,
        data: 0,
        fflags,
    }
}

struct Row {
    what: &'static str,
    kind: FdKind,
    interest: Interest,
    bsd: Vec<Entry>,
    /// Linux's `poll(2)` mask for the same state.
    linux: Ready,
}

/// The mask the backend makes of `row`'s entries.
fn bsd_ready(row: &Row) -> Ready {
    let mut tr = Translator::new();
    let kind = row.kind;
    let (_, mut out) = begin_with(&mut tr, &[add(FD, KEY, level(row.interest))], |_| kind);
    tr.take_results(&[], &mut out);
    let entries: Vec<KEvent> = row
        .bsd
        .iter()
        .map(|e| KEvent {
            ident: FD as usize,
            filter: e.filter,
            flags: if e.eof { EV_EOF } else { 0 },
            fflags: e.fflags,
            data: e.data,
            udata: tr.udata(KEY),
        })
        .collect();
    let mut out = Output::default();
    let mut classify = |_| kind;
    tr.begin(&[], &mut classify, &mut out, 8, None);
    tr.take_results(&entries, &mut out);
    assert!(out.events.len() <= 1, "{}: one event per key", row.what);
    out.events.first().map_or(Ready::EMPTY, |e| {
        assert_eq!(e.key, KEY);
        e.ready
    })
}

fn event(interest: Interest, ready: Ready) -> Option<Event> {
    Event::from_ready(Token(1), interest, ready)
}

const IN: Ready = Ready::IN;
const OUT: Ready = Ready::OUT;
const ERR: Ready = Ready::ERR;
const HUP: Ready = Ready::HUP;
const RDHUP: Ready = Ready::RDHUP;

fn or(bits: &[Ready]) -> Ready {
    bits.iter().fold(Ready::EMPTY, |a, &b| a | b)
}

/// States where kqueue and Linux agree on the event.
fn same_event_rows() -> Vec<Row> {
    use FdKind::{Fifo, Socket};
    vec![
        Row {
            what: "pipe read end, data",
            kind: Fifo,
            interest: R,
            bsd: vec![read(5)],
            linux: IN,
        },
        Row {
            what: "pipe read end, empty, writer closed",
            kind: Fifo,
            interest: R,
            bsd: vec![read_eof(0, 0)],
            linux: HUP,
        },
        Row {
            what: "pipe read end, data left, writer closed",
            kind: Fifo,
            interest: R,
            bsd: vec![read_eof(3, 0)],
            linux: or(&[IN, HUP]),
        },
        Row {
            what: "pipe write end, space",
            kind: Fifo,
            interest: W,
            bsd: vec![write(512)],
            linux: OUT,
        },
        Row {
            what: "pipe write end, full",
            kind: Fifo,
            interest: W,
            bsd: vec![],
            linux: Ready::EMPTY,
        },
        Row {
            what: "pipe write end, reader closed",
            kind: Fifo,
            interest: W,
            bsd: vec![write_eof(0)],
            linux: or(&[OUT, ERR]),
        },
        Row {
            what: "socket, data and space",
            kind: Socket,
            interest: RW,
            bsd: vec![read(10), write(4096)],
            linux: or(&[IN, OUT]),
        },
        Row {
            what: "socket, nothing to read, space (read-only registration)",
            kind: Socket,
            interest: R,
            bsd: vec![],
            linux: OUT,
        },
        Row {
            what: "socket, peer shut its writing side",
            kind: Socket,
            interest: RW,
            bsd: vec![read_eof(0, 0), write(4096)],
            linux: or(&[IN, RDHUP, OUT]),
        },
        Row {
            what: "socket, peer shut writing, data left",
            kind: Socket,
            interest: R,
            bsd: vec![read_eof(8, 0)],
            linux: or(&[IN, RDHUP, OUT]),
        },
        Row {
            what: "socket, peer closed",
            kind: Socket,
            interest: RW,
            bsd: vec![read_eof(0, 0), write_eof(0)],
            linux: or(&[IN, RDHUP, OUT, HUP]),
        },
        Row {
            what: "socket, peer closed (read-only registration)",
            kind: Socket,
            interest: R,
            bsd: vec![read_eof(0, 0)],
            linux: or(&[IN, RDHUP, OUT, HUP]),
        },
        Row {
            what: "socket, peer closed (write-only registration)",
            kind: Socket,
            interest: W,
            bsd: vec![write_eof(0)],
            linux: or(&[IN, RDHUP, OUT, HUP]),
        },
        Row {
            what: "socket, connection reset",
            kind: Socket,
            interest: RW,
            bsd: vec![read_eof(0, ECONNRESET), write_eof(ECONNRESET)],
            linux: or(&[IN, RDHUP, OUT, HUP, ERR]),
        },
        Row {
            what: "socket, connect refused (write-only registration)",
            kind: Socket,
            interest: W,
            bsd: vec![write_eof(ECONNREFUSED)],
            linux: or(&[IN, RDHUP, OUT, HUP, ERR]),
        },
        Row {
            what: "socket, peer shut its reading side",
            kind: Socket,
            interest: W,
            bsd: vec![write(4096)],
            linux: OUT,
        },
        Row {
            what: "terminal or device with input",
            kind: FdKind::Other,
            interest: R,
            bsd: vec![read(1)],
            linux: IN,
        },
    ]
}

#[test]
fn kqueue_states_give_the_linux_event() {
    for row in same_event_rows() {
        let bsd = bsd_ready(&row);
        assert!(
            bsd.0 & !Ready::reportable(row.interest).0 == 0,
            "{}: {bsd:?} has bits outside the reportable ones",
            row.what
        );
        assert_eq!(
            event(row.interest, bsd),
            event(row.interest, row.linux),
            "{}: kqueue mask {bsd:?}, Linux mask {:?}",
            row.what,
            row.linux
        );
    }
}

#[test]
fn the_raw_masks_equal_linux_ones_where_kqueue_sees_both_directions() {
    // Not required (only the event must match), but true whenever both
    // directions are watched: the mask is Linux's, limited to what epoll
    // would report for that interest.
    for row in same_event_rows()
        .into_iter()
        .filter(|r| r.interest == RW || r.kind == FdKind::Fifo)
    {
        assert_eq!(
            bsd_ready(&row),
            row.linux & Ready::reportable(row.interest),
            "{}",
            row.what
        );
    }
}

/// States kqueue cannot express as Linux does; the test pins down what the
/// backend reports so that a change is noticed (crate docs, "What kqueue
/// cannot express").
#[test]
fn documented_differences_from_linux() {
    let own_shut_wr = Row {
        what: "socket, own shutdown(SHUT_WR)",
        kind: FdKind::Socket,
        interest: W,
        bsd: vec![write_eof(0)],
        linux: OUT,
    };
    let bsd = event(W, bsd_ready(&own_shut_wr)).unwrap();
    let linux = event(W, own_shut_wr.linux).unwrap();
    assert!(bsd.writable && linux.writable);
    assert!(bsd.write_closed && !linux.write_closed);

    let udp_error = Row {
        what: "UDP socket, ICMP error pending, no data",
        kind: FdKind::Socket,
        interest: R,
        bsd: vec![read(0)],
        linux: ERR,
    };
    let bsd = event(R, bsd_ready(&udp_error)).unwrap();
    let linux = event(R, udp_error.linux).unwrap();
    assert!(bsd.readable && linux.readable);
    assert!(!bsd.error && linux.error);

    let unread_close = Row {
        what: "Unix socket, peer closed with our data unread",
        kind: FdKind::Socket,
        interest: RW,
        bsd: vec![read_eof(0, 0), write_eof(0)],
        linux: or(&[IN, RDHUP, OUT, HUP, ERR]),
    };
    let bsd = event(RW, bsd_ready(&unread_close)).unwrap();
    let linux = event(RW, unread_close.linux).unwrap();
    assert_eq!(
        (
            bsd.readable,
            bsd.read_closed,
            bsd.writable,
            bsd.write_closed
        ),
        (
            linux.readable,
            linux.read_closed,
            linux.writable,
            linux.write_closed
        )
    );
    assert!(!bsd.error && linux.error);
}

#[test]
fn a_pipe_read_end_watched_for_writing_too_gets_the_hangup_either_way() {
    // HUP reaches both directions on Linux; here the read filter's HUP does.
    let row = Row {
        what: "pipe read end registered for both, writer closed",
        kind: FdKind::Fifo,
        interest: RW,
        bsd: vec![read_eof(0, 0)],
        linux: HUP,
    };
    assert_eq!(
        event(RW, bsd_ready(&row)),
        event(RW, row.linux),
        "{}",
        row.what
    );
}
