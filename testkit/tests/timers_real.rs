//! Timers on real backends, in real time: never early, and late by at most
//! the stated bound. The bound is 1 ms of deadline rounding plus the
//! wait's own wake-up latency, which on a shared machine is not ours to
//! bound; the test allows `SCHEDULING` for it. That still catches a timer
//! that waits for the caller's timeout (5 s here) instead of its deadline.

use std::time::{Duration, Instant};

use evmux_interest::{Events, Poller, Token};
use evmux_testkit::conformance;

const SCHEDULING: Duration = Duration::from_millis(250);
const BOUND: Duration = Duration::from_millis(1);

#[test]
fn timers_are_never_early_and_late_by_at_most_the_bound() {
    let specs = conformance::backends_from_env().expect("EVMUX_BACKEND names a backend");
    for spec in specs {
        let Ok(make) = spec.make else { continue };
        let mut p = Poller::new(make().expect("backend"));
        let delays = [45u64, 5, 20, 20, 0, 33];
        let wall_start = Instant::now();
        let start = p.now();
        for (i, d) in delays.iter().enumerate() {
            p.add_timer_after(Token(i), Duration::from_millis(*d))
                .unwrap();
        }
        let mut fired = vec![None; delays.len()];
        let mut order = Vec::new();
        let mut events = Events::with_capacity(8);
        while order.len() < delays.len() {
            p.get_next_event(&mut events, Some(Duration::from_secs(5)))
                .unwrap();
            assert!(!events.is_empty(), "{}: a 5 s wait ended empty", spec.name);
            let now = p.now();
            let wall = wall_start.elapsed();
            for ev in events.iter() {
                assert!(ev.timer, "{}: {ev:?}", spec.name);
                assert!(fired[ev.token.0].is_none(), "{}: fired twice", spec.name);
                fired[ev.token.0] = Some((now, wall));
                order.push(ev.token.0);
            }
        }
        for (i, d) in delays.iter().enumerate() {
            let (now, wall) = fired[i].unwrap();
            let deadline = start + Duration::from_millis(*d);
            assert!(
                now >= deadline,
                "{}: timer {i} early on the poller clock: {now:?} < {deadline:?}",
                spec.name
            );
            assert!(
                wall >= Duration::from_millis(*d),
                "{}: timer {i} early on the wall clock: {wall:?}",
                spec.name
            );
            assert!(
                now - deadline <= BOUND + SCHEDULING,
                "{}: timer {i} late by {:?}",
                spec.name,
                now - deadline
            );
        }
        // Deadline order; ties (the two 20 ms timers) in the order set.
        assert_eq!(order.len(), delays.len());
        assert!(
            order.iter().position(|&t| t == 2) < order.iter().position(|&t| t == 3),
            "{}: ties fire in the order set: {order:?}",
            spec.name
        );
        assert_eq!(order[0], 4, "{}: the 0 ms timer fires first", spec.name);
        assert_eq!(
            *order.last().unwrap(),
            0,
            "{}: the 45 ms timer last",
            spec.name
        );
    }
}
