//! Differential test: the simulated world against the kernel.
//!
//! Random op sequences (each op allowed by the simulation at the point it is
//! applied) run on a [`SimWorld`] and a [`RealWorld`]; every result and,
//! after every op, every handle's readiness mask must be equal. Plus
//! hand-written checks of the key rules, run on both worlds.
//!
//! `EVMUX_PROPTEST_CASES` overrides the number of random cases (default 256).

use evmux_testkit::world::errno::{EBADF, ECONNRESET, ENOTCONN, ENOTSOCK, EPIPE};
use evmux_testkit::world::{
    DrainOutcome, Handle, IoOutcome, Kind, Mask, NewKind, Op, OpResult, RealWorld, SimWorld, World,
    apply,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

fn ignore_sigpipe() {
    evmux_sys::signal::ignore_sigpipe().expect("ignore SIGPIPE");
}

// ---------------------------------------------------------------------------
// The property test
// ---------------------------------------------------------------------------

/// Operation selector and two parameters.
type Seed = (u8, u8, u16);

/// At most this many handles per case (bounds descriptors and memory).
const MAX_HANDLES: usize = 14;
const MAX_OPS: usize = 40;

fn new_kind(x: u16) -> NewKind {
    match x % 4 {
        0 => NewKind::Pipe,
        1 => NewKind::Pair,
        2 => NewKind::Tcp,
        _ => NewKind::File,
    }
}

/// Turns a seed into an op against the current simulated state, or `None`
/// if it maps to nothing the simulation allows.
fn pick(sim: &SimWorld, (sel, a, b): Seed) -> Option<Op> {
    let count = sim.handle_count();
    let open: Vec<Handle> = (0..count).filter(|&h| sim.is_open(h)).collect();
    // Mostly open handles; one time in eight any handle (closed → EBADF).
    let target = || -> Option<Handle> {
        if a % 8 == 7 && count > 0 {
            Some(usize::from(a / 8) % count)
        } else if open.is_empty() {
            None
        } else {
            Some(open[usize::from(a) % open.len()])
        }
    };
    let op = match sel % 20 {
        0..=2 => {
            if count + 2 > MAX_HANDLES {
                return None;
            }
            Op::Open(new_kind(b))
        }
        3 => {
            if count + 2 > MAX_HANDLES || open.is_empty() {
                return None;
            }
            Op::Reuse(open[usize::from(a) % open.len()], new_kind(b))
        }
        4..=7 => Op::Write(target()?, 1 + usize::from(b) % 512),
        8 => Op::Write(target()?, 1 + usize::from(b) % 8),
        9..=10 => Op::Read(target()?, 1 + usize::from(b) % 700),
        11 => Op::Read(target()?, 1 + usize::from(b) * 16),
        12..=13 => Op::Fill(target()?),
        14..=15 => Op::Drain(target()?),
        16..=17 => Op::ShutdownWrite(target()?),
        _ => Op::Close(target()?),
    };
    sim.allowed(&op).then_some(op)
}

fn masks(w: &dyn World, count: usize) -> Vec<Option<Mask>> {
    (0..count).map(|h| w.mask(h)).collect()
}

fn fail(log: &[Op], what: String) -> TestCaseError {
    let mut text = format!("{what}\nops (sim results):\n");
    let mut sim = SimWorld::default();
    for (i, op) in log.iter().enumerate() {
        let r = apply(&mut sim, op);
        let count = sim.handle_count();
        text += &format!(
            "  #{i:<2} {op:?} -> {r:?}   masks {:?}\n",
            masks(&sim, count)
        );
    }
    TestCaseError::fail(text)
}

fn run_case(seeds: &[Seed]) -> Result<(), TestCaseError> {
    let mut sim = SimWorld::default();
    let mut real = RealWorld::new();
    let mut log = Vec::new();
    for &seed in seeds {
        let Some(op) = pick(&sim, seed) else { continue };
        log.push(op);
        let s = apply(&mut sim, &op);
        let r = apply(&mut real, &op);
        if s != r {
            return Err(fail(
                &log,
                format!("op #{} {op:?}: sim {s:?}, real {r:?}", log.len() - 1),
            ));
        }
        let count = sim.handle_count();
        if real.handle_count() != count {
            return Err(fail(&log, "handle counts differ".into()));
        }
        for h in 0..count {
            let (ms, mr) = (sim.mask(h), real.mask(h));
            if ms != mr || sim.kind(h) != real.kind(h) || sim.is_open(h) != real.is_open(h) {
                return Err(fail(
                    &log,
                    format!(
                        "after op #{} {op:?}: handle {h} ({:?}): sim mask {ms:?}, real mask {mr:?}",
                        log.len() - 1,
                        sim.kind(h)
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("EVMUX_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(256)
}

#[test]
fn sim_matches_kernel() {
    ignore_sigpipe();
    let config = Config {
        cases: cases(),
        // Never write regression files into the source tree.
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let strategy = proptest::collection::vec(any::<Seed>(), 1..=MAX_OPS);
    if let Err(e) = runner.run(&strategy, |seeds| run_case(&seeds)) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------
// Hand-written rules, each run on both worlds
// ---------------------------------------------------------------------------

/// Runs `check` on a fresh simulated and a fresh real world.
fn on_both(check: fn(&mut dyn World)) {
    ignore_sigpipe();
    check(&mut SimWorld::default());
    check(&mut RealWorld::new());
}

/// Runs `ops` on both worlds; results and masks after each op must agree.
fn same_on_both(ops: &[Op]) -> Vec<OpResult> {
    ignore_sigpipe();
    let mut sim = SimWorld::default();
    let mut real = RealWorld::new();
    let mut out = Vec::new();
    for op in ops {
        let s = apply(&mut sim, op);
        let r = apply(&mut real, op);
        assert_eq!(s, r, "{op:?}");
        let n = sim.handle_count();
        assert_eq!(masks(&sim, n), masks(&real, n), "masks after {op:?}");
        out.push(s);
    }
    out
}

const fn m(bits: u32) -> Mask {
    Mask(bits)
}
const IN: u32 = Mask::IN.0;
const OUT: u32 = Mask::OUT.0;
const ERR: u32 = Mask::ERR.0;
const HUP: u32 = Mask::HUP.0;
const RDHUP: u32 = Mask::RDHUP.0;

#[test]
fn econnreset_on_close_with_unread_data() {
    on_both(|w| {
        assert_eq!(w.open(NewKind::Pair), vec![0, 1]);
        assert_eq!(w.write(1, 3), IoOutcome::Done(3)); // 1 → 0, read by 0
        assert_eq!(w.write(0, 5), IoOutcome::Done(5)); // 0 → 1, unread by 1
        assert_eq!(w.mask(0), Some(m(IN | OUT)));
        assert_eq!(w.close(1), Ok(()));
        // 0 keeps its data, gets the reset and a full shutdown; still OUT.
        assert_eq!(w.mask(0), Some(m(IN | OUT | ERR | HUP | RDHUP)));
        assert_eq!(w.read(0, 100), IoOutcome::Done(3));
        assert_eq!(w.mask(0), Some(m(IN | OUT | ERR | HUP | RDHUP)));
        assert_eq!(w.write(0, 1), IoOutcome::Err(EPIPE));
        assert_eq!(w.read(0, 100), IoOutcome::Err(ECONNRESET));
        assert_eq!(w.mask(0), Some(m(IN | OUT | HUP | RDHUP)));
        assert_eq!(w.read(0, 100), IoOutcome::Eof);
        assert_eq!(w.shutdown_write(0), Ok(()));
    });
}

#[test]
fn close_without_unread_data_is_no_reset() {
    on_both(|w| {
        w.open(NewKind::Pair);
        assert_eq!(w.write(1, 4), IoOutcome::Done(4)); // unread by 0
        assert_eq!(w.close(1), Ok(()));
        assert_eq!(w.mask(0), Some(m(IN | OUT | HUP | RDHUP)));
        assert_eq!(
            w.drain(0),
            DrainOutcome {
                got_data: true,
                end: IoOutcome::Eof
            }
        );
    });
}

#[test]
fn reset_after_draining_reports_error_at_the_end() {
    on_both(|w| {
        w.open(NewKind::Pair);
        w.write(0, 9);
        w.write(1, 2);
        w.close(1).unwrap();
        assert_eq!(
            w.drain(0),
            DrainOutcome {
                got_data: true,
                end: IoOutcome::Err(ECONNRESET)
            }
        );
        assert_eq!(
            w.drain(0),
            DrainOutcome {
                got_data: false,
                end: IoOutcome::Eof
            }
        );
    });
}

#[test]
fn hup_after_both_shutdowns() {
    on_both(|w| {
        w.open(NewKind::Pair);
        assert_eq!(w.mask(0), Some(m(OUT)));
        assert_eq!(w.shutdown_write(0), Ok(()));
        assert_eq!(w.mask(0), Some(m(OUT)));
        assert_eq!(w.mask(1), Some(m(IN | RDHUP | OUT)));
        assert_eq!(w.write(0, 1), IoOutcome::Err(EPIPE));
        assert_eq!(w.read(1, 1), IoOutcome::Eof);
        assert_eq!(w.shutdown_write(0), Ok(()));
        assert_eq!(w.shutdown_write(1), Ok(()));
        assert_eq!(w.mask(0), Some(m(IN | RDHUP | HUP | OUT)));
        assert_eq!(w.mask(1), Some(m(IN | RDHUP | HUP | OUT)));
        assert_eq!(w.read(0, 1), IoOutcome::Eof);
    });
}

#[test]
fn socket_fill_and_drain() {
    on_both(|w| {
        w.open(NewKind::Pair);
        assert_eq!(w.fill(0), IoOutcome::Done(0));
        assert_eq!(w.mask(0), Some(m(0)));
        assert_eq!(w.mask(1), Some(m(IN | OUT)));
        assert_eq!(w.write(0, 1), IoOutcome::WouldBlock);
        assert_eq!(w.fill(0), IoOutcome::Done(0));
        assert_eq!(
            w.drain(1),
            DrainOutcome {
                got_data: true,
                end: IoOutcome::WouldBlock
            }
        );
        assert_eq!(w.mask(0), Some(m(OUT)));
        assert_eq!(w.write(0, 1), IoOutcome::Done(1));
        // The reader closing frees the writer's memory: OUT again, plus the
        // reset for the unread data.
        w.fill(0);
        w.close(1).unwrap();
        assert_eq!(w.mask(0), Some(m(OUT | ERR | HUP | IN | RDHUP)));
        assert_eq!(w.fill(0), IoOutcome::Err(EPIPE));
    });
}

#[test]
fn writer_closing_a_full_socket_leaves_the_data() {
    on_both(|w| {
        w.open(NewKind::Pair);
        w.fill(0);
        w.close(0).unwrap();
        assert_eq!(w.mask(1), Some(m(IN | OUT | HUP | RDHUP)));
        assert_eq!(
            w.drain(1),
            DrainOutcome {
                got_data: true,
                end: IoOutcome::Eof
            }
        );
    });
}

#[test]
fn pipe_rules() {
    on_both(|w| {
        assert_eq!(w.open(NewKind::Pipe), vec![0, 1]);
        assert_eq!((w.kind(0), w.kind(1)), (Kind::PipeRead, Kind::PipeWrite));
        assert_eq!(w.mask(0), Some(m(0)));
        assert_eq!(w.mask(1), Some(m(OUT)));
        assert_eq!(w.read(0, 4), IoOutcome::WouldBlock);
        assert_eq!(w.read(1, 4), IoOutcome::Err(EBADF));
        assert_eq!(w.write(0, 4), IoOutcome::Err(EBADF));
        assert_eq!(w.shutdown_write(1), Err(ENOTSOCK));
        assert_eq!(w.write(1, 10), IoOutcome::Done(10));
        assert_eq!(w.mask(0), Some(m(IN)));
        assert_eq!(w.read(0, 4), IoOutcome::Done(4));
        assert_eq!(w.fill(1), IoOutcome::Done(0));
        assert_eq!(w.mask(1), Some(m(0)));
        assert_eq!(w.write(1, 1), IoOutcome::WouldBlock);
        assert_eq!(
            w.drain(0),
            DrainOutcome {
                got_data: true,
                end: IoOutcome::WouldBlock
            }
        );
        assert_eq!(w.mask(1), Some(m(OUT)));
        assert_eq!(w.write(1, 2), IoOutcome::Done(2));
        assert_eq!(w.close(1), Ok(()));
        assert_eq!(w.mask(0), Some(m(IN | HUP)));
        assert_eq!(w.read(0, 1), IoOutcome::Done(1));
        assert_eq!(w.read(0, 9), IoOutcome::Done(1));
        assert_eq!(w.read(0, 9), IoOutcome::Eof);
        assert_eq!(w.mask(0), Some(m(HUP)));
    });
}

#[test]
fn pipe_err_after_read_end_closed() {
    on_both(|w| {
        w.open(NewKind::Pipe);
        w.write(1, 10);
        assert_eq!(w.close(0), Ok(()));
        assert_eq!(w.mask(1), Some(m(OUT | ERR)));
        assert_eq!(w.write(1, 1), IoOutcome::Err(EPIPE));
        assert_eq!(w.fill(1), IoOutcome::Err(EPIPE));
        // A full pipe keeps its buffer when the reader goes: ERR alone.
        w.open(NewKind::Pipe);
        assert_eq!(w.fill(3), IoOutcome::Done(0));
        w.close(2).unwrap();
        assert_eq!(w.mask(3), Some(m(ERR)));
        assert_eq!(w.write(3, 1), IoOutcome::Err(EPIPE));
    });
}

#[test]
fn reuse_keeps_the_number() {
    on_both(|w| {
        assert_eq!(w.open(NewKind::Pipe), vec![0, 1]);
        let fd = w.raw_fd(1);
        assert_eq!(w.reuse(1, NewKind::Pair), vec![2, 3]);
        assert_eq!(w.raw_fd(2), fd);
        assert_eq!(w.raw_fd(1), fd);
        assert!(!w.is_open(1) && w.is_open(2) && w.is_open(3));
        assert_ne!(w.raw_fd(3), fd);
        assert_eq!(w.kind(2), Kind::Socket);
        // The old write end is gone: the reader sees HUP.
        assert_eq!(w.mask(0), Some(m(HUP)));
        assert_eq!(w.mask(2), Some(m(OUT)));
        assert_eq!(w.write(1, 1), IoOutcome::Err(EBADF));
        // Reuse of a socket end resets its peer like a close.
        assert_eq!(w.write(3, 2), IoOutcome::Done(2));
        let fd = w.raw_fd(2);
        assert_eq!(w.reuse(2, NewKind::File), vec![4]);
        assert_eq!(w.raw_fd(4), fd);
        assert_eq!(w.mask(3), Some(m(OUT | ERR | HUP | IN | RDHUP)));
        assert_eq!(w.mask(4), Some(m(IN | OUT)));
    });
}

#[test]
fn ebadf_on_closed_handles() {
    on_both(|w| {
        w.open(NewKind::Pipe);
        w.open(NewKind::Pair);
        w.open(NewKind::File);
        for h in 0..5 {
            let fd = w.raw_fd(h);
            assert_eq!(w.close(h), Ok(()));
            assert!(!w.is_open(h));
            assert_eq!(w.raw_fd(h), fd);
            assert_eq!(w.mask(h), None);
            assert_eq!(w.write(h, 1), IoOutcome::Err(EBADF));
            assert_eq!(w.read(h, 1), IoOutcome::Err(EBADF));
            assert_eq!(w.fill(h), IoOutcome::Err(EBADF));
            assert_eq!(
                w.drain(h),
                DrainOutcome {
                    got_data: false,
                    end: IoOutcome::Err(EBADF)
                }
            );
            assert_eq!(w.shutdown_write(h), Err(EBADF));
            assert_eq!(w.close(h), Err(EBADF));
        }
    });
}

#[test]
fn closed_handle_does_not_touch_a_reused_number() {
    on_both(|w| {
        w.open(NewKind::Pipe);
        let fd = w.raw_fd(1);
        w.close(1).unwrap();
        // The new file most likely gets the number just freed (always in
        // the simulation); the closed handle must not reach it either way.
        let new = w.open(NewKind::File)[0];
        assert_eq!(w.raw_fd(1), fd);
        assert_eq!(w.write(1, 3), IoOutcome::Err(EBADF));
        assert_eq!(w.read(new, 10), IoOutcome::Eof);
    });
}

#[test]
fn regular_file_rules() {
    on_both(|w| {
        assert_eq!(w.open(NewKind::File), vec![0]);
        assert_eq!(w.kind(0), Kind::File);
        assert_eq!(w.mask(0), Some(m(IN | OUT)));
        assert_eq!(w.read(0, 10), IoOutcome::Eof);
        assert_eq!(w.write(0, 10), IoOutcome::Done(10));
        // One shared offset: at the end now.
        assert_eq!(w.read(0, 10), IoOutcome::Eof);
        assert_eq!(w.shutdown_write(0), Err(ENOTSOCK));
        assert_eq!(w.mask(0), Some(m(IN | OUT)));
    });
}

#[test]
fn out_survives_own_shutdown_and_peer_close() {
    let r = same_on_both(&[
        Op::Open(NewKind::Pair),
        Op::ShutdownWrite(0),
        Op::Close(1),
        Op::Write(0, 1),
        Op::Read(0, 1),
    ]);
    assert_eq!(r[3], OpResult::Io(IoOutcome::Err(EPIPE)));
    assert_eq!(r[4], OpResult::Io(IoOutcome::Eof));
}

#[test]
fn many_small_writes_stay_exact() {
    let mut ops = vec![Op::Open(NewKind::Pair), Op::Open(NewKind::Pipe)];
    for _ in 0..17 {
        ops.push(Op::Write(0, 241));
        ops.push(Op::Write(3, 241));
    }
    ops.push(Op::Read(1, 1000));
    ops.push(Op::Read(2, 1000));
    ops.push(Op::Drain(1));
    ops.push(Op::Drain(2));
    let r = same_on_both(&ops);
    assert_eq!(r[r.len() - 4], OpResult::Io(IoOutcome::Done(1000)));
}

#[test]
fn writes_at_the_cap_keep_out() {
    // The largest amounts `allowed` permits: 16 writes filling 4096 bytes,
    // then one more of 512; and 17 one-byte writes.
    let mut ops = vec![Op::Open(NewKind::Pair), Op::Open(NewKind::Pipe)];
    for _ in 0..16 {
        ops.extend([Op::Write(0, 256), Op::Write(3, 256)]);
    }
    ops.extend([Op::Write(0, 512), Op::Write(3, 512)]);
    for _ in 0..17 {
        ops.push(Op::Write(1, 1));
    }
    let mut sim = SimWorld::default();
    for op in &ops {
        assert!(sim.allowed(op), "{op:?}");
        apply(&mut sim, op);
    }
    assert!(!sim.allowed(&Op::Write(0, 1)));
    assert!(!sim.allowed(&Op::Write(3, 1)));
    assert!(!sim.allowed(&Op::Write(1, 1)));
    same_on_both(&ops);
    assert_eq!(sim.mask(0), Some(m(IN | OUT)));
    assert_eq!(sim.mask(1), Some(m(IN | OUT)));
    assert_eq!(sim.mask(3), Some(m(OUT)));
}

// ---------------------------------------------------------------------------
// TCP over loopback (handles: connecting end, accepted end)
// ---------------------------------------------------------------------------

#[test]
fn tcp_peer_close_is_a_fin_then_a_write_draws_a_reset() {
    on_both(|w| {
        assert_eq!(w.open(NewKind::Tcp), vec![0, 1]);
        assert_eq!((w.kind(0), w.kind(1)), (Kind::Tcp, Kind::Tcp));
        assert_eq!(w.mask(0), Some(m(OUT)));
        assert_eq!(w.mask(1), Some(m(OUT)));
        assert_eq!(w.read(0, 10), IoOutcome::WouldBlock);
        assert_eq!(w.close(1), Ok(()));
        // A FIN: the read side ends, no HUP (unlike a Unix socket pair).
        assert_eq!(w.mask(0), Some(m(IN | OUT | RDHUP)));
        assert_eq!(w.read(0, 10), IoOutcome::Eof);
        // The closed end answers data with a reset: EPIPE pending, since
        // this end was in CLOSE_WAIT.
        assert_eq!(w.write(0, 3), IoOutcome::Done(3));
        assert_eq!(w.mask(0), Some(m(IN | OUT | ERR | HUP | RDHUP)));
        // The FIN came first: reads say end-of-file and leave the error.
        assert_eq!(w.read(0, 10), IoOutcome::Eof);
        assert_eq!(w.mask(0), Some(m(IN | OUT | ERR | HUP | RDHUP)));
        // A write takes it.
        assert_eq!(w.write(0, 1), IoOutcome::Err(EPIPE));
        assert_eq!(w.mask(0), Some(m(IN | OUT | HUP | RDHUP)));
        assert_eq!(w.write(0, 1), IoOutcome::Err(EPIPE));
        assert_eq!(w.shutdown_write(0), Err(ENOTCONN));
    });
}

#[test]
fn tcp_close_with_unread_data_resets_the_peer() {
    on_both(|w| {
        w.open(NewKind::Tcp);
        assert_eq!(w.write(0, 3), IoOutcome::Done(3)); // unread by 1
        assert_eq!(w.write(1, 7), IoOutcome::Done(7)); // read by 0 below
        assert_eq!(w.mask(0), Some(m(IN | OUT)));
        assert_eq!(w.close(1), Ok(()));
        assert_eq!(w.mask(0), Some(m(IN | OUT | ERR | HUP | RDHUP)));
        // The data stays readable; then the reset, once; then end-of-file.
        assert_eq!(w.read(0, 2), IoOutcome::Done(2));
        assert_eq!(w.read(0, 10), IoOutcome::Done(5));
        assert_eq!(w.mask(0), Some(m(IN | OUT | ERR | HUP | RDHUP)));
        assert_eq!(w.read(0, 10), IoOutcome::Err(ECONNRESET));
        assert_eq!(w.mask(0), Some(m(IN | OUT | HUP | RDHUP)));
        assert_eq!(w.read(0, 10), IoOutcome::Eof);
        assert_eq!(w.write(0, 1), IoOutcome::Err(EPIPE));
        assert_eq!(w.shutdown_write(0), Err(ENOTCONN));
    });
}

#[test]
fn tcp_a_write_can_take_the_reset_first() {
    on_both(|w| {
        w.open(NewKind::Tcp);
        w.write(0, 3);
        w.write(1, 7);
        w.close(1).unwrap();
        assert_eq!(w.write(0, 1), IoOutcome::Err(ECONNRESET));
        assert_eq!(w.mask(0), Some(m(IN | OUT | HUP | RDHUP)));
        assert_eq!(w.write(0, 1), IoOutcome::Err(EPIPE));
        assert_eq!(
            w.drain(0),
            DrainOutcome {
                got_data: true,
                end: IoOutcome::Eof
            }
        );
    });
}

#[test]
fn tcp_half_close_both_ways() {
    on_both(|w| {
        w.open(NewKind::Tcp);
        assert_eq!(w.shutdown_write(0), Ok(()));
        // tcp_poll: OUT stays after our own send shutdown.
        assert_eq!(w.mask(0), Some(m(OUT)));
        assert_eq!(w.mask(1), Some(m(IN | OUT | RDHUP)));
        assert_eq!(w.write(0, 1), IoOutcome::Err(EPIPE));
        assert_eq!(w.shutdown_write(0), Ok(()));
        assert_eq!(w.read(1, 1), IoOutcome::Eof);
        // The other direction still works.
        assert_eq!(w.write(1, 5), IoOutcome::Done(5));
        assert_eq!(w.mask(0), Some(m(IN | OUT)));
        assert_eq!(w.shutdown_write(1), Ok(()));
        // Both FINs crossed: both ends are closed (HUP), no error.
        assert_eq!(w.mask(0), Some(m(IN | OUT | HUP | RDHUP)));
        assert_eq!(w.mask(1), Some(m(IN | OUT | HUP | RDHUP)));
        assert_eq!(w.read(0, 3), IoOutcome::Done(3));
        assert_eq!(w.read(0, 100), IoOutcome::Done(2));
        assert_eq!(w.read(0, 100), IoOutcome::Eof);
        assert_eq!(w.shutdown_write(0), Err(ENOTCONN));
        assert_eq!(w.shutdown_write(1), Err(ENOTCONN));
        assert_eq!(w.write(1, 1), IoOutcome::Err(EPIPE));
        // Closing a finished connection sends nothing.
        assert_eq!(w.close(0), Ok(()));
        assert_eq!(w.mask(1), Some(m(IN | OUT | HUP | RDHUP)));
    });
}

#[test]
fn tcp_fill_and_drain() {
    on_both(|w| {
        w.open(NewKind::Tcp);
        assert_eq!(w.fill(0), IoOutcome::Done(0));
        assert_eq!(w.mask(0), Some(m(0)));
        assert_eq!(w.mask(1), Some(m(IN | OUT)));
        assert_eq!(w.fill(0), IoOutcome::Done(0));
        assert_eq!(
            w.drain(1),
            DrainOutcome {
                got_data: true,
                end: IoOutcome::WouldBlock
            }
        );
        assert_eq!(w.mask(0), Some(m(OUT)));
        assert_eq!(w.mask(1), Some(m(OUT)));
        assert_eq!(w.write(0, 1), IoOutcome::Done(1));
        assert_eq!(w.mask(1), Some(m(IN | OUT)));
        // Both directions full at once.
        assert_eq!(w.fill(0), IoOutcome::Done(0));
        assert_eq!(w.fill(1), IoOutcome::Done(0));
        assert_eq!(w.mask(0), Some(m(IN)));
        assert_eq!(w.mask(1), Some(m(IN)));
        w.drain(0);
        w.drain(1);
        assert_eq!(w.mask(0), Some(m(OUT)));
        assert_eq!(w.mask(1), Some(m(OUT)));
    });
}

#[test]
fn tcp_fin_waits_behind_a_full_window() {
    on_both(|w| {
        w.open(NewKind::Tcp);
        w.fill(0);
        assert_eq!(w.shutdown_write(0), Ok(()));
        assert_eq!(w.mask(0), Some(m(OUT)));
        // The FIN is queued behind the data: no RDHUP yet.
        assert_eq!(w.mask(1), Some(m(IN | OUT)));
        assert_eq!(
            w.drain(1),
            DrainOutcome {
                got_data: true,
                end: IoOutcome::Eof
            }
        );
        assert_eq!(w.mask(1), Some(m(IN | OUT | RDHUP)));
    });
}

#[test]
fn tcp_a_closed_writer_still_delivers_its_queued_data() {
    on_both(|w| {
        w.open(NewKind::Tcp);
        w.fill(0);
        assert_eq!(w.close(0), Ok(()));
        assert_eq!(w.mask(1), Some(m(IN | OUT)));
        assert_eq!(
            w.drain(1),
            DrainOutcome {
                got_data: true,
                end: IoOutcome::Eof
            }
        );
        assert_eq!(w.mask(1), Some(m(IN | OUT | RDHUP)));
        assert_eq!(w.write(1, 1), IoOutcome::Done(1));
        assert_eq!(w.mask(1), Some(m(IN | OUT | ERR | HUP | RDHUP)));
        assert_eq!(w.fill(1), IoOutcome::Err(EPIPE));
        assert_eq!(w.mask(1), Some(m(IN | OUT | HUP | RDHUP)));
    });
}

#[test]
fn tcp_fins_cross_while_one_direction_is_full() {
    on_both(|w| {
        w.open(NewKind::Tcp);
        w.fill(1);
        assert_eq!(w.shutdown_write(0), Ok(()));
        assert_eq!(w.mask(0), Some(m(IN | OUT)));
        assert_eq!(w.mask(1), Some(m(IN | RDHUP)));
        // 1's FIN waits behind its data; 1 is CLOSING, not closed.
        assert_eq!(w.shutdown_write(1), Ok(()));
        assert_eq!(w.mask(1), Some(m(IN | OUT | HUP | RDHUP)));
        assert_eq!(w.shutdown_write(1), Ok(()));
        assert_eq!(w.mask(0), Some(m(IN | OUT)));
        assert_eq!(
            w.drain(0),
            DrainOutcome {
                got_data: true,
                end: IoOutcome::Eof
            }
        );
        assert_eq!(w.mask(0), Some(m(IN | OUT | HUP | RDHUP)));
        assert_eq!(w.shutdown_write(0), Err(ENOTCONN));
        assert_eq!(w.shutdown_write(1), Err(ENOTCONN));
    });
}

#[test]
fn tcp_fill_toward_a_closed_peer() {
    on_both(|w| {
        w.open(NewKind::Tcp);
        w.close(1).unwrap();
        // The first chunk draws the reset; the next write takes its EPIPE.
        assert_eq!(w.fill(0), IoOutcome::Err(EPIPE));
        assert_eq!(w.mask(0), Some(m(IN | OUT | HUP | RDHUP)));
        assert_eq!(w.read(0, 1), IoOutcome::Eof);
        // Established when reset: ECONNRESET.
        w.open(NewKind::Tcp);
        w.fill(2);
        w.close(3).unwrap();
        assert_eq!(w.mask(2), Some(m(IN | OUT | ERR | HUP | RDHUP)));
        assert_eq!(w.fill(2), IoOutcome::Err(ECONNRESET));
        assert_eq!(w.mask(2), Some(m(IN | OUT | HUP | RDHUP)));
    });
}

#[test]
fn tcp_reuse_closes_like_close() {
    on_both(|w| {
        w.open(NewKind::Tcp);
        w.write(0, 4); // unread by 1
        let fd = w.raw_fd(1);
        assert_eq!(w.reuse(1, NewKind::Tcp), vec![2, 3]);
        assert_eq!(w.raw_fd(2), fd);
        assert_eq!(w.kind(2), Kind::Tcp);
        assert_eq!(w.mask(0), Some(m(IN | OUT | ERR | HUP | RDHUP)));
        assert_eq!(w.mask(2), Some(m(OUT)));
        assert_eq!(w.mask(3), Some(m(OUT)));
        assert_eq!(w.write(2, 9), IoOutcome::Done(9));
        assert_eq!(w.read(3, 100), IoOutcome::Done(9));
        assert_eq!(w.shutdown_write(3), Ok(()));
        assert_eq!(w.reuse(2, NewKind::File), vec![4]);
        assert_eq!(w.mask(3), Some(m(OUT | IN | RDHUP | HUP)));
    });
}

#[test]
fn tcp_write_on_a_full_direction_is_not_predicted() {
    // After a fill, a late ACK may free room for a small write (though not
    // enough for OUT): the simulation does not allow it.
    let mut sim = SimWorld::default();
    sim.open(NewKind::Tcp);
    sim.open(NewKind::Pair);
    sim.fill(0);
    sim.fill(2);
    assert!(!sim.allowed(&Op::Write(0, 1)));
    assert!(sim.allowed(&Op::Write(2, 1)));
    assert!(sim.allowed(&Op::Fill(0)));
    assert!(sim.allowed(&Op::Write(1, 1)));
    assert!(!sim.allowed(&Op::Read(1, 1)));
    sim.drain(1);
    assert!(sim.allowed(&Op::Write(0, 1)));
    // A send that fails is predicted whatever the buffers hold.
    sim.fill(0);
    sim.shutdown_write(0).unwrap();
    assert!(sim.allowed(&Op::Write(0, 1)));
}
