//! Migration between the halves never changes the stream: after every wait
//! the events equal those of the poll backend watching the same descriptors
//! with the same declarations.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};

use common::{Rng, Twin, churn, cold_eager, drain, tokens};
use evmux_interest::{Interest, Mode, Token};
use evmux_superpoll::SuperpollConfig;
use evmux_sys::fd;

/// Moves at every wait, with a little hysteresis (half-life 2 waits).
fn quick() -> SuperpollConfig {
    SuperpollConfig {
        promote_above: 0.6,
        demote_below: 0.3,
        break_even: 0.45,
        interval: 1,
        max_moves: 64,
        half_life: 2,
        min_stay: 0,
        epoll_wait_cost: 0.0,
    }
}

#[test]
fn a_descriptor_goes_idle_busy_idle_and_nothing_is_lost() {
    let mut t = Twin::new("quick", quick());
    let (a, b) = fd::socketpair_stream().unwrap();
    let (c, _d) = fd::socketpair_stream().unwrap();
    t.declare(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level);
    // A neighbour that is always ready keeps the array busy.
    t.declare(c.as_raw_fd(), Token(2), Interest::WRITABLE, Mode::Level);
    for cycle in 0..3 {
        // Idle: demoted.
        let before = t.sp.backend().stats();
        for _ in 0..20 {
            assert_eq!(tokens(&t.wait()), [Token(2)]);
        }
        let s = t.sp.backend().stats();
        assert!(s.demotions > before.demotions, "cycle {cycle}: {s:?}");
        assert_eq!(t.sp.backend().is_hot(a.as_raw_fd()), Some(false));
        assert_eq!(t.sp.backend().is_hot(c.as_raw_fd()), Some(true));
        // Busy: data stays pending, reported at every wait, promoted while
        // it is ready (the promotion happens with readiness present).
        fd::write(&b, b"data").unwrap();
        for _ in 0..10 {
            let evs = t.wait();
            assert_eq!(tokens(&evs), [Token(1), Token(2)], "cycle {cycle}");
            assert!(evs[0].readable && !evs[0].writable);
        }
        let s2 = t.sp.backend().stats();
        assert!(s2.promotions > s.promotions, "cycle {cycle}: {s2:?}");
        assert_eq!(t.sp.backend().is_hot(a.as_raw_fd()), Some(true));
        drain(&a);
    }
}

#[test]
fn readiness_present_at_the_moment_of_migration_is_reported_once() {
    // Find the wait at which an idle descriptor is demoted, then make it
    // ready just before that wait: the demotion and the readiness meet in
    // one call. Likewise for a busy descriptor whose data is drained just
    // before the wait that promotes it.
    let mut demoted_while_ready = 0;
    let mut promoted_while_idle = 0;
    for idle in 0..12 {
        let mut t = Twin::new("quick", quick());
        let (a, b) = fd::socketpair_stream().unwrap();
        t.declare(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level);
        for _ in 0..idle {
            assert!(t.wait().is_empty());
        }
        fd::write(&b, b"x").unwrap();
        let before = t.sp.backend().stats();
        let evs = t.wait();
        let after = t.sp.backend().stats();
        assert_eq!(tokens(&evs), [Token(1)], "idle {idle}");
        if after.demotions > before.demotions {
            demoted_while_ready += 1;
            assert_eq!(t.sp.backend().is_hot(a.as_raw_fd()), Some(false));
            // Still reported, exactly once per wait, from the epoll set.
            for _ in 0..3 {
                assert_eq!(tokens(&t.wait()), [Token(1)]);
            }
        }
        // Now busy until promoted; drain just before each wait from some
        // point on, so that a promotion meets a descriptor with nothing to
        // report.
        for busy in 0..12 {
            let drain_now = busy >= idle % 4;
            if drain_now {
                drain(&a);
            }
            let before = t.sp.backend().stats();
            let evs = t.wait();
            let after = t.sp.backend().stats();
            if after.promotions > before.promotions && drain_now {
                promoted_while_idle += 1;
                assert!(evs.is_empty(), "{evs:?}");
            }
            fd::write(&b, b"x").unwrap();
        }
    }
    assert!(demoted_while_ready > 0);
    assert!(promoted_while_idle > 0);
}

#[test]
fn every_mode_migrates_without_loss() {
    // Level, edge and oneshot registrations on descriptors that go busy
    // and idle in turns, under a policy that moves them constantly.
    for (name, cfg) in [("quick", quick()), ("churn", churn())] {
        let mut t = Twin::new(name, cfg);
        let pairs: Vec<(OwnedFd, OwnedFd)> =
            (0..6).map(|_| fd::socketpair_stream().unwrap()).collect();
        let modes = [Mode::Level, Mode::Edge, Mode::Oneshot];
        for (i, (a, _)) in pairs.iter().enumerate() {
            t.declare(a.as_raw_fd(), Token(i), Interest::READABLE, modes[i % 3]);
        }
        for step in 0..300usize {
            for (i, (a, b)) in pairs.iter().enumerate() {
                // Descriptor i is busy in phases of i+2 waits.
                let busy = (step / (i + 2)) % 2 == 0;
                if busy {
                    fd::write(b, b"x").unwrap();
                } else if step % 3 == 0 {
                    drain(a);
                    if modes[i % 3] == Mode::Edge {
                        t.would_block(Token(i), Interest::READABLE);
                    }
                }
                if modes[i % 3] == Mode::Oneshot && step % 4 == i % 4 {
                    t.declare(a.as_raw_fd(), Token(i), Interest::READABLE, Mode::Oneshot);
                }
            }
            t.wait();
        }
        let s = t.sp.backend().stats();
        assert!(s.promotions > 5 && s.demotions > 5, "{name}: {s:?}");
    }
}

/// Reads until anything but data (`WouldBlock`, end of file, an error such
/// as `ECONNRESET` after the peer closed with data unread).
fn drain_any(fd: &OwnedFd) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = fd::read(fd, &mut buf) {
        if n == 0 {
            break;
        }
    }
}

/// Sends until anything but success (`WouldBlock`, `EPIPE`, `ECONNRESET`).
fn fill_any(fd: &OwnedFd) {
    let buf = [0u8; 4096];
    while fd::send(fd, &buf).is_ok() {}
}

/// One descriptor of the random script: a socketpair whose `a` end is
/// registered (maybe) under token `i`, and whose `b` end the script uses to
/// make `a` readable, writable or hung up.
struct Slot {
    a: OwnedFd,
    b: Option<OwnedFd>,
    registered: bool,
}

fn new_slot() -> Slot {
    let (a, b) = fd::socketpair_stream().unwrap();
    Slot {
        a,
        b: Some(b),
        registered: false,
    }
}

fn random_script(name: &'static str, cfg: SuperpollConfig, seed: u64, waits: usize) -> Twin {
    const N: usize = 16;
    let mut rng = Rng(seed);
    let mut t = Twin::new(name, cfg);
    let mut slots: Vec<Slot> = (0..N).map(|_| new_slot()).collect();
    let interests = [Interest::READABLE, Interest::WRITABLE, Interest::BOTH];
    let modes = [Mode::Level, Mode::Level, Mode::Edge, Mode::Oneshot];
    // Each descriptor has a "temperature": how likely it is to be touched
    // at a step. Temperatures drift, so descriptors go busy and idle.
    let mut heat: Vec<u64> = (0..N).map(|_| rng.next() % 1000).collect();
    for _ in 0..waits {
        for i in 0..N {
            if rng.chance(20) {
                heat[i] = rng.next() % 1000;
            }
            if !rng.chance(heat[i]) {
                continue;
            }
            let token = Token(i);
            let s = &mut slots[i];
            match rng.below(12) {
                0..=2 => {
                    if let Some(b) = &s.b {
                        let _ = fd::send(b, b"abc");
                    }
                }
                3 | 4 => {
                    drain_any(&s.a);
                    if s.registered && rng.chance(700) {
                        t.would_block(token, Interest::READABLE);
                    }
                }
                5 => {
                    fill_any(&s.a);
                    if s.registered && rng.chance(700) {
                        t.would_block(token, Interest::WRITABLE);
                    }
                }
                6 => {
                    if let Some(b) = &s.b {
                        drain_any(b);
                    }
                }
                7 | 8 => {
                    let interest = interests[rng.below(3)];
                    let mode = modes[rng.below(4)];
                    t.declare(s.a.as_raw_fd(), token, interest, mode);
                    s.registered = true;
                }
                9 => {
                    if s.registered {
                        t.forget(token);
                        s.registered = false;
                    }
                }
                10 => {
                    if rng.chance(100)
                        && let Some(b) = s.b.take()
                    {
                        // The peer goes away: a lasting hang-up.
                        drop(b);
                    }
                }
                _ => {
                    if rng.chance(100) {
                        // A new descriptor for the slot; forget first.
                        if s.registered {
                            t.forget(token);
                        }
                        *s = new_slot();
                    }
                }
            }
        }
        t.wait();
    }
    t
}

#[test]
fn random_scripts_match_the_poll_backend() {
    let configs = [
        ("churn", churn()),
        ("quick", quick()),
        ("cold_eager", cold_eager()),
        ("default", SuperpollConfig::default()),
        (
            "small_batches",
            SuperpollConfig {
                interval: 3,
                max_moves: 2,
                ..quick()
            },
        ),
    ];
    for (name, cfg) in configs {
        for seed in 1..=4u64 {
            let t = random_script(name, cfg, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), 600);
            let s = t.sp.backend().stats();
            if name != "default" {
                assert!(s.demotions > 0, "{name} seed {seed}: {s:?}");
            }
            if name == "churn" || name == "quick" || name == "small_batches" {
                assert!(s.promotions > 0, "{name} seed {seed}: {s:?}");
            }
        }
    }
}

/// The acceptance run: one descriptor goes idle → busy → idle across the
/// thresholds of the default-shaped policy (scaled down to react within a
/// few waits), on real descriptors, while the reference model runs the same
/// scenario. The traces must be equal step by step (nothing lost,
/// duplicated or altered), and the migration counters must show moves in
/// both directions, twice.
#[test]
fn idle_busy_idle_against_the_model_with_migrations_both_ways() {
    use evmux_interest::Poller;
    use evmux_superpoll::SuperpollBackend;
    use evmux_testkit::conformance::{run_model, serial};
    use evmux_testkit::scenario::Step::*;
    use evmux_testkit::scenario::{R, W, compare, decl, run};
    use evmux_testkit::world::NewKind::Pair;
    use evmux_testkit::world::RealWorld;

    let mut steps = vec![
        Open(Pair),
        Open(Pair),
        decl(0, 1, R, Mode::Level),
        decl(2, 2, W, Mode::Level),
    ];
    for _ in 0..2 {
        steps.extend(std::iter::repeat_n(Wait, 12)); // idle: demoted
        steps.push(Write(1, 7));
        steps.extend(std::iter::repeat_n(Wait, 12)); // busy: promoted
        steps.push(Read(0, 3));
        steps.extend(std::iter::repeat_n(Wait, 3)); // still busy
        steps.push(Drain(0));
    }
    steps.extend(std::iter::repeat_n(Wait, 12)); // idle again: demoted

    let _serial = serial();
    let model = run_model(&steps);
    let mut poller = Poller::new(SuperpollBackend::with_config(common::churn()).unwrap());
    let mut world = RealWorld::new();
    let real = run(&steps, &mut world, &mut poller);
    compare(&steps, &model, &real).unwrap();
    let stats = poller.backend().stats();
    assert!(stats.demotions >= 3, "{stats:?}");
    assert!(stats.promotions >= 2, "{stats:?}");
}

/// The extremes of the activity score of a descriptor reported once every
/// `period` waits, in the steady state: right after a report, and just
/// before the next one.
fn periodic_score(cfg: &SuperpollConfig, period: u32) -> (f64, f64) {
    let decay = 0.5f64.powf(1.0 / f64::from(cfg.half_life));
    let high = (1.0 - decay) / (1.0 - decay.powi(period as i32));
    (high * decay.powi(period as i32 - 1), high)
}

/// Under the default policy, steady-state placement follows the break-even:
/// a descriptor ready steadily less often than the break-even (once every
/// 10 waits) is demoted to the epoll set, one ready steadily more often
/// (every other wait) is promoted to the array, each within a bounded
/// number of waits, and one whose score stays inside the band (once every 6
/// waits) stays where it is. Once placed, nothing moves again (no thrashing). The
/// array holds busy descriptors throughout and the epoll set idle ones, so
/// neither half is under load pressure: the band alone decides. The stream
/// is compared with the poll backend at every wait.
#[test]
fn placement_follows_the_break_even_under_the_default_policy() {
    let cfg = SuperpollConfig::default();
    let (low_min, low_max) = periodic_score(&cfg, 10);
    let (high_min, high_max) = periodic_score(&cfg, 2);
    let (mid_min, mid_max) = periodic_score(&cfg, 6);
    // The premises: the low rate lies below the band, the high one above
    // it, the middle one inside it, whatever the phase of the score.
    assert!(
        low_max < cfg.demote_below && low_max < cfg.break_even,
        "{low_min}..{low_max}"
    );
    assert!(high_min > cfg.promote_above, "{high_min}..{high_max}");
    assert!(
        mid_min > cfg.demote_below && mid_max < cfg.promote_above,
        "{mid_min}..{mid_max}"
    );

    let mut t = Twin::new("default", cfg);
    let pair = || fd::socketpair_stream().unwrap();
    // Always writable: the array's load stays far above the break-even.
    let busy: Vec<(OwnedFd, OwnedFd)> = (0..8).map(|_| pair()).collect();
    // Never ready: the epoll set's load stays far below it.
    let idle: Vec<(OwnedFd, OwnedFd)> = (0..8).map(|_| pair()).collect();
    let (low, low_peer) = pair();
    let (high, high_peer) = pair();
    let (mid, mid_peer) = pair();
    for (i, (a, _)) in busy.iter().enumerate() {
        t.declare(
            a.as_raw_fd(),
            Token(100 + i),
            Interest::WRITABLE,
            Mode::Level,
        );
    }
    for (i, (a, _)) in idle.iter().enumerate() {
        t.declare(
            a.as_raw_fd(),
            Token(200 + i),
            Interest::READABLE,
            Mode::Level,
        );
    }
    t.declare(low.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level);
    t.declare(high.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level);
    t.declare(mid.as_raw_fd(), Token(3), Interest::READABLE, Mode::Level);
    let is_hot = |t: &Twin, fd: &OwnedFd| t.sp.backend().is_hot(fd.as_raw_fd()).unwrap();

    // One wait: `low` ready once every 10 waits, `mid` once every 6, `high`
    // every other wait once `high_busy`; each is read empty after the wait.
    let mut step = 0usize;
    let mut wait = |t: &mut Twin, high_busy: bool| {
        let ready = [
            (&low, &low_peer, step.is_multiple_of(10), Token(1)),
            (
                &high,
                &high_peer,
                high_busy && step.is_multiple_of(2),
                Token(2),
            ),
            (&mid, &mid_peer, step.is_multiple_of(6), Token(3)),
        ];
        for (_, peer, on, _) in &ready {
            if *on {
                fd::write(peer, b"x").unwrap();
            }
        }
        let evs = t.wait();
        for (fd, _, on, token) in &ready {
            assert_eq!(evs.iter().any(|e| e.token == *token), *on, "wait {step}");
            if *on {
                drain(fd);
            }
        }
        assert_eq!(evs.len(), busy.len() + ready.iter().filter(|r| r.2).count());
        step += 1;
    };

    // Everything starts hot. Idle, `high` (idle for now) and `low` go cold;
    // `mid`, inside the band, and the busy ones stay.
    const BOUND: usize = 64;
    let mut low_demoted_at = None;
    for w in 0..BOUND {
        wait(&mut t, false);
        if low_demoted_at.is_none() && !is_hot(&t, &low) {
            low_demoted_at = Some(w);
        }
    }
    assert!(
        low_demoted_at.is_some(),
        "low not demoted within {BOUND} waits"
    );
    assert!(!is_hot(&t, &low) && !is_hot(&t, &high));
    assert!(idle.iter().all(|(a, _)| !is_hot(&t, a)));
    assert!(is_hot(&t, &mid));
    assert!(busy.iter().all(|(a, _)| is_hot(&t, a)));

    // `high` goes busy: promoted within the bound.
    let mut high_promoted_at = None;
    for w in 0..BOUND {
        wait(&mut t, true);
        if high_promoted_at.is_none() && is_hot(&t, &high) {
            high_promoted_at = Some(w);
        }
    }
    assert!(
        high_promoted_at.is_some(),
        "high not promoted within {BOUND} waits"
    );

    // Settled: nothing moves any more.
    let settled = t.sp.backend().stats();
    for _ in 0..300 {
        wait(&mut t, true);
    }
    assert_eq!(t.sp.backend().stats(), settled);
    assert!(is_hot(&t, &high) && is_hot(&t, &mid) && !is_hot(&t, &low));
    assert_eq!((settled.hot, settled.cold), (10, 9), "{settled:?}");
    // `low` once, each idle one once, `high` down and up again.
    assert_eq!(
        (settled.demotions, settled.promotions),
        (10, 1),
        "{settled:?}"
    );
}

/// The userver state machine of seed 001 at a low rate per connection:
/// each connection gets a request every 30 waits, is reported readable,
/// flips to writable, is reported writable and flips back. In the epoll
/// half each flip costs an `epoll_ctl`, in the array nothing, so the two
/// halves score the same connection differently. With a change counted as
/// a whole report, a cold connection scored above the promotion threshold
/// and the same connection hot below the demotion one: it went round for
/// good (the churn benchmark found half the connections in the array, at
/// 0.82× the epoll backend). Counted as half a report, the connections
/// settle in the epoll half and stay there.
#[test]
fn flipping_connections_below_the_break_even_settle_and_stay_cold() {
    const PERIOD: usize = 30;
    const CONNS: usize = 30;
    let mut t = Twin::new("default", SuperpollConfig::default());
    let conns: Vec<(OwnedFd, OwnedFd)> = (0..CONNS)
        .map(|_| fd::socketpair_stream().unwrap())
        .collect();
    for (i, (server, _)) in conns.iter().enumerate() {
        t.declare(
            server.as_raw_fd(),
            Token(i),
            Interest::READABLE,
            Mode::Level,
        );
    }
    let moves = |t: &Twin| {
        let s = t.sp.backend().stats();
        s.promotions + s.demotions
    };
    let mut settled_moves = 0;
    for step in 0..20 * PERIOD {
        if step == 10 * PERIOD {
            settled_moves = moves(&t);
        }
        // A request arrives on the connection whose turn it is.
        fd::write(&conns[step % CONNS].1, b"x").unwrap();
        let evs = t.wait();
        for ev in evs {
            let (server, _) = &conns[ev.token.0];
            if ev.readable {
                assert_eq!(drain(server), 1, "wait {step}");
                t.declare(
                    server.as_raw_fd(),
                    ev.token,
                    Interest::WRITABLE,
                    Mode::Level,
                );
            } else {
                assert!(ev.writable, "wait {step}: {ev:?}");
                t.declare(
                    server.as_raw_fd(),
                    ev.token,
                    Interest::READABLE,
                    Mode::Level,
                );
            }
        }
    }
    let stats = t.sp.backend().stats();
    assert_eq!(
        moves(&t),
        settled_moves,
        "connections still moving after {} waits: {stats:?}",
        10 * PERIOD
    );
    assert_eq!(stats.cold, CONNS, "{stats:?}");
}
