//! The model on its own: expectations derived by hand from SEMANTICS.md,
//! not copied from output. If the model and every backend agreed on a wrong
//! stream, these would catch it.

use evmux_interest::Mode::{Edge, Level, Oneshot};
use evmux_interest::{Event, Token};
use evmux_testkit::conformance::run_model;
use evmux_testkit::scenario::Step::*;
use evmux_testkit::scenario::{BOTH, Outcome, R, Step, W, decl};
use evmux_testkit::world::NewKind::{File, Pair, Pipe, Tcp};
use evmux_testkit::world::errno::ECONNRESET;
use evmux_testkit::world::{DrainOutcome, IoOutcome};

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

fn timer(token: usize) -> Event {
    Event::timer_expired(Token(token))
}

fn calls(steps: &[Step]) -> Vec<Result<(), String>> {
    run_model(steps)
        .into_iter()
        .filter_map(|o| match o {
            Outcome::Call(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[test]
fn a_timer_fires_once_at_its_deadline() {
    let steps = [AddTimer(1, 120), Wait, WaitFor(5000), Wait];
    assert_eq!(waits(&steps), vec![vec![], vec![timer(1)], vec![]]);
}

#[test]
fn a_cancelled_timer_never_fires_and_cancelling_twice_is_an_error() {
    let steps = [
        AddTimer(1, 40),
        AddTimer(2, 160),
        CancelTimer(1),
        CancelTimer(1),
        WaitFor(5000),
    ];
    assert_eq!(waits(&steps), vec![vec![timer(2)]]);
    assert_eq!(
        calls(&steps),
        vec![Ok(()), Ok(()), Ok(()), Err("UnknownToken".to_string())]
    );
}

#[test]
fn equal_deadlines_fire_in_one_wait() {
    let steps = [
        AddTimerAt(3, 300),
        AddTimerAt(1, 150),
        AddTimerAt(2, 150),
        WaitFor(5000),
        WaitFor(5000),
    ];
    assert_eq!(
        waits(&steps),
        vec![vec![timer(1), timer(2)], vec![timer(3)]]
    );
}

#[test]
fn a_wait_shorter_than_the_deadline_times_out_empty() {
    let steps = [AddTimer(1, 400), WaitFor(20), Wait, WaitFor(5000)];
    assert_eq!(waits(&steps), vec![vec![], vec![], vec![timer(1)]]);
}

#[test]
fn timer_tokens_share_the_namespace_with_descriptors() {
    let steps = [
        Open(Pipe),
        decl(0, 1, R, Level),
        AddTimer(1, 100),
        AddTimer(2, 100),
        decl(1, 2, W, Level),
        CancelTimer(2),
        decl(1, 2, W, Level),
        CancelTimer(5),
    ];
    assert_eq!(
        calls(&steps),
        vec![
            Ok(()),
            Err("TokenTaken".to_string()),
            Ok(()),
            Err("TokenTaken".to_string()),
            Ok(()),
            Ok(()),
            Err("UnknownToken".to_string()),
        ]
    );
}

/// On the model's virtual clock the precision is exact: a deadline is
/// rounded up to the next whole millisecond, never down.
#[test]
fn on_virtual_time_a_timer_is_never_early_and_under_1ms_late() {
    use std::time::Duration;

    use evmux_interest::{Events, Poller};
    use evmux_testkit::model::{ModelBackend, SharedSim};

    for deadline_us in [0u64, 1, 999, 1000, 1001, 10_300, 65_535_999, 3_600_000_001] {
        let mut p = Poller::new(ModelBackend::new(SharedSim::new()));
        let deadline = Duration::from_micros(deadline_us);
        p.add_timer(Token(7), deadline).unwrap();
        let mut events = Events::with_capacity(4);
        let n = p
            .get_next_event(&mut events, Some(Duration::from_secs(10_000_000)))
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(events.as_slice(), &[timer(7)]);
        let fired = p.now();
        assert!(fired >= deadline, "{deadline:?}: fired early at {fired:?}");
        assert!(
            fired - deadline < Duration::from_millis(1),
            "{deadline:?}: fired at {fired:?}"
        );
    }
}

#[test]
fn user_triggers_coalesce_per_wait() {
    let steps = [
        AddUser(1),
        Trigger(1),
        Trigger(1),
        Wait,
        Wait,
        Trigger(1),
        Wait,
    ];
    let user = Event::user_triggered(Token(1));
    assert_eq!(waits(&steps), vec![vec![user], vec![], vec![user]]);
}

#[test]
fn registry_operations_apply_in_issue_order() {
    let steps = [
        Open(Pair),
        ThreadDeclare {
            h: 0,
            token: 1,
            interest: R,
            mode: Level,
        },
        ThreadForget(1),
        ThreadDeclare {
            h: 0,
            token: 1,
            interest: W,
            mode: Level,
        },
        Wait,
        ThreadForget(1),
        ThreadDeclare {
            h: 1,
            token: 1,
            interest: W,
            mode: Oneshot,
        },
        Wait,
        Wait,
    ];
    assert_eq!(
        waits(&steps),
        vec![vec![writable(1)], vec![writable(1)], vec![]]
    );
}

#[test]
fn registry_conflicts_are_error_events() {
    let steps = [
        Open(Pipe),
        decl(0, 1, R, Level),
        ThreadDeclare {
            h: 0,
            token: 2,
            interest: R,
            mode: Level,
        },
        ThreadForget(7),
        Wait,
        Wait,
    ];
    assert_eq!(
        waits(&steps),
        vec![
            vec![Event::rejected(Token(2), 17), Event::rejected(Token(7), 2)],
            vec![]
        ]
    );
}

#[test]
fn standard_signals_merge_and_realtime_signals_queue() {
    let std_steps = [
        AddSignal(1, 10),
        Wait,
        Raise(10),
        Raise(10),
        Wait,
        Wait,
        Raise(10),
        Wait,
        RemoveSignal(1),
    ];
    let once = Event::signal_delivered(Token(1), 10, 1);
    assert_eq!(
        waits(&std_steps),
        vec![vec![], vec![once], vec![], vec![once]]
    );
    let rt_steps = [
        AddSignal(1, 40),
        Raise(40),
        Raise(40),
        Raise(40),
        Wait,
        Wait,
    ];
    assert_eq!(
        waits(&rt_steps),
        vec![vec![Event::signal_delivered(Token(1), 40, 3)], vec![]]
    );
}

#[test]
fn signal_bad_input_is_refused() {
    let steps = [
        AddSignal(1, 9),
        AddSignal(1, 19),
        AddSignal(1, 0),
        AddSignal(1, 65),
        AddSignal(1, 12),
        AddSignal(2, 12),
        RemoveSignal(2),
    ];
    let invalid = Err("InvalidInput".to_string());
    assert_eq!(
        calls(&steps),
        vec![
            invalid.clone(),
            invalid.clone(),
            invalid.clone(),
            invalid,
            Ok(()),
            Err("AlreadyExists".to_string()),
            Err("UnknownToken".to_string()),
        ]
    );
}

#[test]
fn a_process_exit_is_reported_once_and_ends_the_watch() {
    use evmux_interest::ExitStatus;
    let steps = [
        Spawn(3),
        AddProcess(1, 0),
        WaitFor(5000),
        Wait,
        RemoveProcess(1),
    ];
    assert_eq!(
        waits(&steps),
        vec![
            vec![Event::process_exited(Token(1), ExitStatus::Code(3))],
            vec![]
        ]
    );
    assert_eq!(calls(&steps), vec![Ok(()), Err("UnknownToken".to_string())]);
}

// ---- TCP over loopback (handle 0 connects, 1 is accepted) ----
// Expectations from Linux's tcp_poll: a FIN sets RCV_SHUTDOWN (IN|RDHUP),
// HUP needs both directions shut (or the CLOSE state), an RST leaves an
// error pending until a read or write takes it.

#[test]
fn tcp_half_close_is_read_closed_without_hangup() {
    let w = waits(&[
        Open(Tcp),
        decl(1, 1, R, Level),
        decl(0, 2, BOTH, Level),
        ShutdownWrite(0),
        Wait,
        ShutdownWrite(1),
        Wait,
    ]);
    let mut half = readable(1);
    half.read_closed = true;
    // Our own send shutdown leaves OUT set.
    let w0 = writable(2);
    // Both FINs crossed: HUP on both ends.
    let mut all = writable(2);
    all.readable = true;
    all.read_closed = true;
    all.write_closed = true;
    assert_eq!(w, vec![vec![half, w0], vec![half, all]]);
}

#[test]
fn tcp_reset_is_an_error_until_a_read_takes_it() {
    let steps = [
        Open(Tcp),
        decl(0, 1, R, Level),
        Write(0, 3),
        Close(1),
        Wait,
        Read(0, 10),
        Wait,
        Read(0, 10),
    ];
    let out = run_model(&steps);
    let mut reset = readable(1);
    reset.read_closed = true;
    reset.error = true;
    let mut after = readable(1);
    after.read_closed = true;
    assert_eq!(out[4], Outcome::Events(vec![reset]));
    assert_eq!(out[5], Outcome::Io(IoOutcome::Err(ECONNRESET)));
    assert_eq!(out[6], Outcome::Events(vec![after]));
    assert_eq!(out[7], Outcome::Io(IoOutcome::Eof));
}

#[test]
fn tcp_fin_behind_a_full_window_arrives_with_the_drain() {
    let steps = [
        Open(Tcp),
        decl(1, 1, R, Level),
        Fill(0),
        ShutdownWrite(0),
        Wait,
        Drain(1),
        Wait,
    ];
    let out = run_model(&steps);
    let mut closed = readable(1);
    closed.read_closed = true;
    assert_eq!(out[4], Outcome::Events(vec![readable(1)]));
    assert_eq!(
        out[5],
        Outcome::Drain(DrainOutcome {
            got_data: true,
            end: IoOutcome::Eof
        })
    );
    assert_eq!(out[6], Outcome::Events(vec![closed]));
}

/// A signal source's token belongs to the source until it is removed.
/// What a source is (its id and spec) is kept beside the slot table, not
/// in every slot; every path that asks must still find it: a descriptor
/// refused on the token (naming the signal), `registrations` leaving it
/// out, `track_readiness` ignoring it, `remove_process` refusing it, the
/// signal reported, and, once removed, the token free again.
#[test]
fn a_source_token_is_the_sources_until_removed() {
    use std::time::Duration;

    use evmux_interest::{Error, Events, Interest, Poller, TokenUse};
    use evmux_testkit::model::{ModelBackend, SharedSim};
    use evmux_testkit::world::World;

    let sim = SharedSim::new();
    let mut p = Poller::new(ModelBackend::new(sim.clone()));
    let fd = {
        let mut w = sim.lock();
        let h = w.open(Pipe)[0];
        w.raw_fd(h)
    };
    p.add_signal(Token(1), 10).unwrap();
    p.declare_interest(fd, Token(2), Interest::READABLE, Level)
        .unwrap();
    assert_eq!(
        p.declare_interest(fd, Token(1), Interest::READABLE, Level),
        Err(Error::TokenTaken {
            token: Token(1),
            holder: TokenUse::Signal(10),
            wanted: TokenUse::Descriptor(fd),
        })
    );
    let tokens: Vec<Token> = p.registrations().map(|r| r.token).collect();
    assert_eq!(tokens, vec![Token(2)]);
    assert_eq!(p.track_readiness(Token(1)), Ok(()));
    assert_eq!(
        p.remove_process(Token(1)),
        Err(Error::UnknownToken { token: Token(1) })
    );
    sim.lock().raise(10);
    let mut events = Events::with_capacity(4);
    p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
    assert_eq!(
        events.as_slice(),
        &[Event::signal_delivered(Token(1), 10, 1)]
    );
    assert_eq!(p.remove_signal(Token(1)), Ok(()));
    assert_eq!(
        p.remove_signal(Token(1)),
        Err(Error::UnknownToken { token: Token(1) })
    );
    // The token is free: a descriptor takes it as a plain registration,
    // and the next source gets a record of its own.
    p.forget(Token(2)).unwrap();
    p.declare_interest(fd, Token(1), Interest::READABLE, Level)
        .unwrap();
    p.add_signal(Token(3), 12).unwrap();
    assert_eq!(
        p.declare_interest(fd, Token(3), Interest::READABLE, Level),
        Err(Error::TokenTaken {
            token: Token(3),
            holder: TokenUse::Signal(12),
            wanted: TokenUse::Descriptor(fd),
        })
    );
    let mut tokens: Vec<Token> = p.registrations().map(|r| r.token).collect();
    tokens.sort();
    assert_eq!(tokens, vec![Token(1)]);
}
