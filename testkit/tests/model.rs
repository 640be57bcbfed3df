//! The model on its own: expectations derived by hand from SEMANTICS.md,
//! not copied from output. If the model and every backend agreed on a wrong
//! stream, these would catch it.

use evmux_interest::Mode::{Edge, Level, Oneshot};
use evmux_interest::{Event, Token};
use evmux_testkit::conformance::run_model;
use evmux_testkit::scenario::Step::*;
use evmux_testkit::scenario::{BOTH, Outcome, R, Step, W, decl};
use evmux_testkit::world::NewKind::{File, Pair, Pipe};

fn ev(token: usize) -> Event {
    Event::new(Token(token))
}

fn readable(token: usize) -> Event {
    let mut e = ev(token);
    e.readable = true;
    e
}

fn writable(token: usize) -> Event {
    let mut e = ev(token);
    e.writable = true;
    e
}

/// The events of each `Wait`, in order.
fn waits(steps: &[Step]) -> Vec<Vec<Event>> {
    run_model(steps)
        .into_iter()
        .filter_map(|o| match o {
            Outcome::Events(v) => Some(v),
            _ => None,
        })
        .collect()
}

#[test]
fn level_reports_while_ready() {
    let w = waits(&[
        Open(Pipe),
        decl(0, 1, R, Level),
        Wait,
        Write(1, 3),
        Wait,
        Wait,
        Drain(0),
        Wait,
    ]);
    assert_eq!(
        w,
        vec![vec![], vec![readable(1)], vec![readable(1)], vec![]]
    );
}

#[test]
fn edge_reports_once_then_after_would_block() {
    let w = waits(&[
        Open(Pipe),
        decl(0, 1, R, Edge),
        Write(1, 3),
        Wait,
        Write(1, 3),
        Wait,
        Drain(0),
        Wait,
        Write(1, 1),
        Wait,
    ]);
    assert_eq!(
        w,
        vec![vec![readable(1)], vec![], vec![], vec![readable(1)]]
    );
}

#[test]
fn oneshot_reports_once_until_declared() {
    let w = waits(&[
        Open(Pair),
        decl(0, 1, BOTH, Oneshot),
        Wait,
        Wait,
        decl(0, 1, W, Oneshot),
        Wait,
    ]);
    assert_eq!(w, vec![vec![writable(1)], vec![], vec![writable(1)]]);
}

#[test]
fn peer_close_with_unread_data_is_reset() {
    let w = waits(&[
        Open(Pair),
        decl(0, 1, R, Level),
        Write(0, 5),
        Close(1),
        Wait,
    ]);
    let mut e = readable(1);
    e.read_closed = true;
    e.error = true;
    assert_eq!(w, vec![vec![e]]);
}

#[test]
fn hangup_reaches_a_write_only_interest() {
    let w = waits(&[Open(Pair), decl(0, 1, W, Level), Close(1), Wait]);
    let mut e = writable(1);
    e.write_closed = true;
    assert_eq!(w, vec![vec![e]]);
}

#[test]
fn closed_descriptor_gives_one_ebadf_event() {
    let w = waits(&[Open(Pipe), Close(0), decl(0, 1, R, Level), Wait, Wait]);
    assert_eq!(w, vec![vec![Event::rejected(Token(1), 9)], vec![]]);
}

#[test]
fn regular_file_is_always_ready() {
    let w = waits(&[Open(File), decl(0, 1, BOTH, Level), Wait, Wait]);
    let mut e = readable(1);
    e.writable = true;
    assert_eq!(w, vec![vec![e], vec![e]]);
}

#[test]
fn duplicate_fd_is_refused_naming_the_variant() {
    let out = run_model(&[Open(Pipe), decl(0, 1, R, Level), decl(0, 2, R, Level)]);
    assert_eq!(out[2], Outcome::Call(Err("FdInUse".to_string())));
}
