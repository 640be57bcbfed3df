//! Behaviour tests for `TimerWheel`: timing (never early, zero lateness),
//! range, past deadlines, stale keys, reset, `next_deadline`, large jumps,
//! ordering and bookkeeping.

use evmux_timers::{TimerKey, TimerWheel, WHEEL_RANGE};

/// Deadline offsets that hit every level boundary, the edge of the wheel's
/// range and beyond it.
fn interesting_offsets() -> Vec<u64> {
    let mut v = vec![1, 2, 3];
    for level in 1..=7u32 {
        let b = 1u64 << (6 * level);
        v.extend([b - 1, b, b + 1, b + b / 2 + 7]);
    }
    v.extend([WHEEL_RANGE * 3 + 12_345, 1 << 50, 1 << 62]);
    v
}

/// Start times: zero, odd values in the middle of blocks, and just before
/// an epoch (`WHEEL_RANGE`) boundary.
fn interesting_starts() -> Vec<u64> {
    vec![
        0,
        1,
        63,
        4_097,
        123_456_789,
        WHEEL_RANGE - 1,
        WHEEL_RANGE - 70,
        5 * WHEEL_RANGE + 999_999,
    ]
}

fn drain(wheel: &mut TimerWheel<u32>, now: u64) -> Vec<u32> {
    wheel.advance(now).map(|(_, v)| v).collect()
}

#[test]
fn never_early_and_zero_lateness_at_every_level() {
    for start in interesting_starts() {
        for off in interesting_offsets() {
            let d = start + off;
            let mut wheel = TimerWheel::with_start(start);
            let key = wheel.insert(d, 7u32);
            assert_eq!(wheel.next_deadline(), Some(d), "start {start} off {off}");
            // One ms short: nothing, and the timer is still there.
            assert!(
                drain(&mut wheel, d - 1).is_empty(),
                "early: start {start} off {off}"
            );
            assert_eq!(wheel.now(), d - 1);
            assert_eq!(wheel.next_deadline(), Some(d));
            assert!(wheel.contains(key));
            // Exactly at the deadline: it fires (0 ms lateness).
            let fired: Vec<_> = wheel.advance(d).collect();
            assert_eq!(fired, vec![(key, 7)], "start {start} off {off}");
            assert!(wheel.is_empty());
            assert_eq!(wheel.next_deadline(), None);
        }
    }
}

#[test]
fn stepping_one_ms_at_a_time_fires_exactly_at_the_deadline() {
    // Deadlines that cross level-1 and level-2 boundaries; advance by 1 ms
    // and record the `now` at which each fires.
    let start = 4_000;
    let mut wheel = TimerWheel::with_start(start);
    let deadlines: Vec<u64> = vec![
        4_001, 4_063, 4_095, 4_096, 4_097, 4_160, 8_191, 8_192, 9_000,
    ];
    for (i, &d) in deadlines.iter().enumerate() {
        wheel.insert(d, i as u32);
    }
    let mut fired_at = vec![0u64; deadlines.len()];
    for now in start..=9_000 {
        for (_, i) in wheel.advance(now) {
            fired_at[i as usize] = now;
        }
    }
    assert_eq!(fired_at, deadlines);
}

#[test]
fn worst_case_lateness_is_zero_for_random_deadlines_and_random_advances() {
    // Advance in irregular steps; every timer must fire in the first advance
    // whose `now` reaches its deadline, never before.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut wheel = TimerWheel::new();
    let mut deadlines = Vec::new();
    for i in 0..5_000u32 {
        let d = rnd() % (1 << (rnd() % 40));
        deadlines.push(d);
        wheel.insert(d, i);
    }
    let mut prev: Option<u64> = None;
    let mut fired = 0;
    while !wheel.is_empty() {
        let now = prev.unwrap_or(0) + rnd() % (1 << (rnd() % 34));
        for (_, i) in wheel.advance(now) {
            let d = deadlines[i as usize];
            assert!(d <= now, "early: deadline {d} fired at {now}");
            assert!(
                prev.is_none_or(|p| d > p),
                "late: deadline {d} was due at {prev:?}"
            );
            fired += 1;
        }
        prev = Some(now);
    }
    assert_eq!(fired, 5_000);
}

#[test]
fn deadlines_beyond_the_wheel_range() {
    let mut wheel = TimerWheel::with_start(1_000);
    let far = [
        1_000 + WHEEL_RANGE,
        1_000 + WHEEL_RANGE + 1,
        1_000 + 3 * WHEEL_RANGE,
        u64::MAX - 1,
        u64::MAX,
    ];
    let keys: Vec<TimerKey> = far.iter().map(|&d| wheel.insert(d, d)).collect();
    let near = wheel.insert(2_000, 0);
    assert_eq!(wheel.len(), 6);
    assert_eq!(wheel.next_deadline(), Some(2_000));
    assert_eq!(wheel.advance(2_000).collect::<Vec<_>>(), vec![(near, 0)]);
    assert_eq!(wheel.next_deadline(), Some(far[0]));

    for (i, &d) in far.iter().enumerate() {
        assert_eq!(wheel.deadline(keys[i]), Some(d));
        assert_eq!(wheel.advance(d - 1).count(), 0, "early at {d}");
        assert_eq!(wheel.next_deadline(), Some(d));
        assert_eq!(wheel.advance(d).collect::<Vec<_>>(), vec![(keys[i], d)]);
    }
    assert!(wheel.is_empty());

    // A beyond-range timer can be cancelled and reset like any other.
    let k = wheel.insert(u64::MAX, 1);
    assert!(wheel.reset(k, u64::MAX - 2));
    assert_eq!(wheel.cancel(k), Some(1));
    assert_eq!(wheel.next_deadline(), None);
}

#[test]
fn beyond_range_timers_keep_order_with_wheel_timers() {
    // Timers beyond the range at insert time must interleave correctly with
    // timers inserted later, when the same deadlines are in range.
    let mut wheel = TimerWheel::new();
    let d = 2 * WHEEL_RANGE + 500;
    let a = wheel.insert(d, 1u32); // overflow
    let b = wheel.insert(d + 1, 2); // overflow
    assert_eq!(wheel.advance(2 * WHEEL_RANGE + 10).count(), 0);
    let c = wheel.insert(d, 3); // now in range, same deadline as `a`
    let e = wheel.insert(d - 1, 4);
    let fired: Vec<_> = wheel.advance(u64::MAX).collect();
    assert_eq!(fired, vec![(e, 4), (a, 1), (c, 3), (b, 2)]);
}

#[test]
fn past_deadlines_fire_on_the_next_advance_in_deadline_order() {
    let mut wheel = TimerWheel::new();
    assert_eq!(wheel.advance(10_000).count(), 0);
    assert_eq!(wheel.now(), 10_000);
    let k_now = wheel.insert(10_000, 1u32);
    let k_old = wheel.insert(5, 2);
    let k_mid = wheel.insert(9_000, 3);
    let k_old2 = wheel.insert(5, 4);
    let k_future = wheel.insert(10_001, 5);
    // Due timers are reported as due.
    assert_eq!(wheel.next_deadline(), Some(5));
    // Advancing "to the past" is advancing to the wheel's clock: the due
    // timers fire, the future one does not.
    let fired: Vec<_> = wheel.advance(3).collect();
    assert_eq!(fired, vec![(k_old, 2), (k_old2, 4), (k_mid, 3), (k_now, 1)],);
    assert_eq!(wheel.now(), 10_000);
    assert_eq!(wheel.next_deadline(), Some(10_001));
    assert_eq!(
        wheel.advance(10_001).collect::<Vec<_>>(),
        vec![(k_future, 5)]
    );
}

#[test]
fn past_deadlines_fire_before_due_wheel_timers() {
    let mut wheel = TimerWheel::with_start(100);
    let w = wheel.insert(150, 1u32);
    let p = wheel.insert(90, 2);
    let fired: Vec<_> = wheel.advance(200).collect();
    assert_eq!(fired, vec![(p, 2), (w, 1)]);
}

#[test]
fn stale_keys_after_expiry_cancel_and_slot_reuse() {
    let mut wheel = TimerWheel::new();
    let a = wheel.insert(10, 1u32);
    let b = wheel.insert(20, 2);

    // After expiry.
    assert_eq!(wheel.advance(10).collect::<Vec<_>>(), vec![(a, 1)]);
    assert_eq!(wheel.cancel(a), None);
    assert!(!wheel.reset(a, 50));
    assert!(!wheel.contains(a));
    assert_eq!(wheel.get(a), None);
    assert_eq!(wheel.deadline(a), None);

    // After cancel.
    assert_eq!(wheel.cancel(b), Some(2));
    assert_eq!(wheel.cancel(b), None);
    assert!(!wheel.reset(b, 50));
    assert_eq!(wheel.len(), 0);

    // After slot reuse: the new timers take the freed slots, the old keys
    // must not touch them.
    let c = wheel.insert(30, 3);
    let d = wheel.insert(40, 4);
    assert!(c != a && c != b && d != a && d != b);
    assert_eq!(wheel.cancel(a), None);
    assert_eq!(wheel.cancel(b), None);
    assert!(!wheel.reset(a, 11));
    assert!(!wheel.reset(b, 11));
    assert_eq!(wheel.get_mut(a), None);
    assert_eq!(wheel.len(), 2);
    assert_eq!(wheel.deadline(c), Some(30));
    assert_eq!(wheel.deadline(d), Some(40));
    let fired: Vec<_> = wheel.advance(100).collect();
    assert_eq!(fired, vec![(c, 3), (d, 4)]);
}

#[test]
fn many_generations_of_one_slot_never_alias() {
    let mut wheel = TimerWheel::new();
    let mut old = Vec::new();
    for i in 0..1_000u32 {
        let k = wheel.insert(u64::from(i) + 5, i);
        for &o in &old {
            assert_ne!(o, k);
            assert_eq!(wheel.cancel(o), None);
        }
        assert_eq!(wheel.get(k), Some(&i));
        if i % 2 == 0 {
            assert_eq!(wheel.cancel(k), Some(i));
        } else {
            assert_eq!(
                wheel.advance(u64::from(i) + 5).collect::<Vec<_>>(),
                vec![(k, i)]
            );
        }
        old.push(k);
    }
}

#[test]
fn reset_earlier_and_later() {
    let mut wheel = TimerWheel::new();
    let a = wheel.insert(5_000, 1u32);
    let b = wheel.insert(6_000, 2);
    // Later, across levels and beyond the range.
    assert!(wheel.reset(a, 7_000));
    assert_eq!(wheel.deadline(a), Some(7_000));
    // 5000, 6000 and 7000 share a level-2 slot, whose remembered minimum
    // may still be 5000 (see the crate docs): a bound, never late.
    assert!(wheel.next_deadline().is_some_and(|d| d <= 6_000));
    assert_eq!(wheel.advance(6_999).collect::<Vec<_>>(), vec![(b, 2)]);
    assert!(wheel.reset(a, WHEEL_RANGE * 2));
    assert_eq!(wheel.advance(WHEEL_RANGE).count(), 0);
    // Earlier, from the overflow list into level 0.
    let now = wheel.now();
    assert!(wheel.reset(a, now + 3));
    assert_eq!(wheel.next_deadline(), Some(now + 3));
    assert_eq!(wheel.advance(now + 2).count(), 0);
    assert_eq!(wheel.advance(now + 3).collect::<Vec<_>>(), vec![(a, 1)]);

    // Reset into the past: due on the next advance.
    let c = wheel.insert(now + 1_000_000, 3);
    assert!(wheel.reset(c, 0));
    assert_eq!(wheel.next_deadline(), Some(0));
    assert_eq!(wheel.advance(0).collect::<Vec<_>>(), vec![(c, 3)]);
    assert_eq!(wheel.len(), 0);
}

#[test]
fn reset_counts_as_a_fresh_insertion_for_ties() {
    let mut wheel = TimerWheel::new();
    let a = wheel.insert(100, 1u32);
    let b = wheel.insert(100, 2);
    let c = wheel.insert(100, 3);
    assert!(wheel.reset(a, 100)); // same deadline: moves behind b and c
    let fired: Vec<_> = wheel.advance(100).collect();
    assert_eq!(fired, vec![(b, 2), (c, 3), (a, 1)]);
}

#[test]
fn equal_deadlines_fire_in_insertion_order_across_levels() {
    // The same deadline inserted at different times lands on different
    // levels first (and the first one in the overflow list); FIFO must hold.
    let d = WHEEL_RANGE + 100_000;
    let mut wheel = TimerWheel::new();
    let mut expect = Vec::new();
    let mut value = 0u32;
    for now in [0, WHEEL_RANGE + 10, d - 50_000, d - 3_000, d - 60, d - 1] {
        assert_eq!(wheel.advance(now).count(), 0);
        for _ in 0..3 {
            value += 1;
            expect.push((wheel.insert(d, value), value));
        }
    }
    // A past deadline inserted last still fires first (deadline order).
    let early = wheel.insert(d - 10, 100);
    expect.insert(0, (early, 100));
    let fired: Vec<_> = wheel.advance(d).collect();
    assert_eq!(fired, expect);
}

#[test]
fn one_advance_yields_in_deadline_order() {
    let mut wheel = TimerWheel::with_start(77);
    let deadlines = [
        WHEEL_RANGE * 5,
        90,
        1 << 30,
        200_000,
        90,
        4_096,
        78,
        1 << 20,
        WHEEL_RANGE - 1,
        3_000_000_000,
    ];
    for (i, &d) in deadlines.iter().enumerate() {
        wheel.insert(d, i as u32);
    }
    let fired: Vec<u32> = drain(&mut wheel, u64::MAX);
    let got: Vec<u64> = fired.iter().map(|&i| deadlines[i as usize]).collect();
    let mut sorted = deadlines.to_vec();
    sorted.sort();
    assert_eq!(got, sorted);
    // The two deadline-90 timers in insertion order.
    let nineties: Vec<u32> = fired
        .iter()
        .copied()
        .filter(|&i| deadlines[i as usize] == 90)
        .collect();
    assert_eq!(nineties, vec![1, 4]);
}

#[test]
fn next_deadline_is_exact_without_cancellation() {
    let mut wheel = TimerWheel::with_start(1_000);
    assert_eq!(wheel.next_deadline(), None);
    let mut min = u64::MAX;
    for off in interesting_offsets().into_iter().rev() {
        min = min.min(1_000 + off);
        wheel.insert(1_000 + off, 0u32);
        assert_eq!(wheel.next_deadline(), Some(min));
    }
    // Drain by jumping straight to each reported deadline: every jump
    // yields at least one timer (no spurious wake-up).
    let mut jumps = 0;
    while let Some(d) = wheel.next_deadline() {
        assert!(d > wheel.now());
        assert!(wheel.advance(d).count() >= 1, "spurious wake-up at {d}");
        jumps += 1;
    }
    assert_eq!(jumps, interesting_offsets().len());
}

#[test]
fn next_deadline_after_cancelling_the_earliest_is_a_bound_that_heals() {
    let mut wheel = TimerWheel::new();
    // Same level-2 slot (4096 ms wide): 5000 and 6000 and 7000.
    let a = wheel.insert(5_000, 1u32);
    let b = wheel.insert(6_000, 2);
    let _c = wheel.insert(7_000, 3);
    assert_eq!(wheel.next_deadline(), Some(5_000));
    wheel.cancel(a);
    let nd = wheel.next_deadline().unwrap();
    assert!(nd <= 6_000 && nd > wheel.now());
    // At most one spurious wake-up, after which it is exact.
    if wheel.advance(nd).count() == 0 {
        assert_eq!(wheel.next_deadline(), Some(6_000));
    }
    let fired: Vec<_> = wheel.advance(6_000).collect();
    assert_eq!(fired, vec![(b, 2)]);
    assert_eq!(wheel.next_deadline(), Some(7_000));

    // Cancelling a level-0 timer keeps it exact.
    let mut wheel = TimerWheel::new();
    let x = wheel.insert(10, 1u32);
    wheel.insert(20, 2);
    wheel.cancel(x);
    assert_eq!(wheel.next_deadline(), Some(20));

    // Cancelling the only timer of a slot keeps it exact.
    let mut wheel = TimerWheel::new();
    let x = wheel.insert(100_000, 1u32);
    wheel.insert(900_000, 2);
    wheel.cancel(x);
    assert_eq!(wheel.next_deadline(), Some(900_000));
}

#[test]
fn next_deadline_is_never_later_than_the_earliest_timer() {
    let mut wheel = TimerWheel::new();
    let mut live: Vec<(TimerKey, u64)> = Vec::new();
    let mut x = 88_172_645_463_325_252u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let now = wheel.now();
        match rnd() % 4 {
            0 | 1 => {
                let d = now + rnd() % (1 << (rnd() % 38));
                live.push((wheel.insert(d, 0u32), d));
            }
            2 if !live.is_empty() => {
                let (k, _) = live.swap_remove((rnd() % live.len() as u64) as usize);
                assert!(wheel.cancel(k).is_some());
            }
            _ => {
                let to = now + rnd() % (1 << (rnd() % 30));
                let fired: Vec<TimerKey> = wheel.advance(to).map(|(k, _)| k).collect();
                live.retain(|(k, _)| !fired.contains(k));
            }
        }
        let min = live.iter().map(|&(_, d)| d).min();
        let nd = wheel.next_deadline();
        assert_eq!(nd.is_some(), min.is_some());
        if let (Some(nd), Some(min)) = (nd, min) {
            assert!(nd <= min, "next_deadline {nd} later than earliest {min}");
            assert!(nd > wheel.now() || min <= wheel.now());
        }
    }
}

#[test]
fn large_time_jumps() {
    const YEAR: u64 = 365 * 24 * 3_600 * 1_000;
    let mut wheel = TimerWheel::new();
    let mut expect = Vec::new();
    for i in 0..200u64 {
        // Spread over ~20 years, every level and the overflow list.
        let d = (i * i * i * 7_919) % (20 * YEAR) + 1;
        expect.push((d, wheel.insert(d, i as u32)));
    }
    expect.sort_by_key(|&(d, _)| d);
    // Jump by three years at a time.
    let mut fired = Vec::new();
    let mut now = 0;
    while now < 25 * YEAR {
        now += 3 * YEAR + 17;
        for (k, _) in wheel.advance(now) {
            fired.push(k);
        }
        // Everything up to `now` fired, nothing after it.
        let due = expect.iter().filter(|&&(d, _)| d <= now).count();
        assert_eq!(fired.len(), due);
    }
    let order: Vec<TimerKey> = expect.iter().map(|&(_, k)| k).collect();
    assert_eq!(fired, order);

    // A single jump to the end of time.
    let a = wheel.insert(u64::MAX, 1);
    let b = wheel.insert(now + 1, 2);
    assert_eq!(wheel.advance(u64::MAX).count(), 2);
    assert!(!wheel.contains(a) && !wheel.contains(b));
    assert_eq!(wheel.now(), u64::MAX);
    // At the end of time everything is due.
    let c = wheel.insert(u64::MAX, 3);
    assert_eq!(wheel.next_deadline(), Some(u64::MAX));
    assert_eq!(wheel.advance(u64::MAX).collect::<Vec<_>>(), vec![(c, 3)]);
}

#[test]
fn len_bookkeeping() {
    let mut wheel = TimerWheel::new();
    assert!(wheel.is_empty());
    let keys: Vec<_> = (0..100u32)
        .map(|i| wheel.insert(u64::from(i) * 1_000, i))
        .collect();
    assert_eq!(wheel.len(), 100);
    assert!(!wheel.is_empty());
    for k in &keys[..10] {
        wheel.cancel(*k);
    }
    wheel.cancel(keys[0]); // stale: no change
    assert_eq!(wheel.len(), 90);
    assert!(wheel.reset(keys[50], 1));
    assert!(!wheel.reset(keys[0], 1));
    assert_eq!(wheel.len(), 90);
    // 10..=20 fire at 20_000, and keys[50] (reset to 1).
    assert_eq!(wheel.advance(20_000).count(), 12);
    assert_eq!(wheel.len(), 78);
    assert_eq!(wheel.advance(u64::MAX).count(), 78);
    assert_eq!(wheel.len(), 0);
    assert!(wheel.is_empty());
}

#[test]
fn dropping_the_iterator_early_keeps_the_rest() {
    let mut wheel = TimerWheel::new();
    let keys: Vec<_> = (0..6u32)
        .map(|i| wheel.insert(10 + u64::from(i / 2), i))
        .collect();
    {
        let mut it = wheel.advance(100);
        assert_eq!(it.next(), Some((keys[0], 0)));
        assert_eq!(it.next(), Some((keys[1], 1)));
        assert_eq!(it.next(), Some((keys[2], 2)));
    }
    assert_eq!(wheel.len(), 3);
    assert!(wheel.now() < 100);
    assert_eq!(wheel.next_deadline(), Some(11));
    // A new past timer sorts in before the leftover ones.
    let p = wheel.insert(1, 9);
    let fired: Vec<_> = wheel.advance(100).collect();
    assert_eq!(
        fired,
        vec![(p, 9), (keys[3], 3), (keys[4], 4), (keys[5], 5)]
    );
    assert_eq!(wheel.now(), 100);
}

#[test]
fn advance_into_appends() {
    let mut wheel = TimerWheel::new();
    let a = wheel.insert(5, 'a');
    let b = wheel.insert(3, 'b');
    let mut out = vec![];
    assert_eq!(wheel.advance_into(4, &mut out), 1);
    assert_eq!(wheel.advance_into(5, &mut out), 1);
    assert_eq!(wheel.advance_into(6, &mut out), 0);
    assert_eq!(out, vec![(b, 'b'), (a, 'a')]);
}

#[test]
fn payload_access_and_drop() {
    use std::rc::Rc;
    let token = Rc::new(());
    let mut wheel = TimerWheel::new();
    let k = wheel.insert(10, (Rc::clone(&token), 1u32));
    wheel.insert(20, (Rc::clone(&token), 2));
    wheel.get_mut(k).unwrap().1 = 5;
    assert_eq!(wheel.get(k).unwrap().1, 5);
    assert_eq!(Rc::strong_count(&token), 3);
    let (_, (_, v)) = wheel.advance(10).next().unwrap();
    assert_eq!(v, 5);
    assert_eq!(Rc::strong_count(&token), 2);
    drop(wheel);
    assert_eq!(Rc::strong_count(&token), 1);
}

#[test]
fn insert_cancel_cycles_return_the_right_payload() {
    let mut wheel = TimerWheel::new();
    wheel.reserve(8);
    let keep = wheel.insert(1 << 20, u32::MAX);
    let mut key = wheel.insert(1 << 20, 0u32);
    for i in 0..10_000u32 {
        assert_eq!(wheel.cancel(key), Some(i));
        key = wheel.insert(1 << 20, i + 1);
    }
    assert_eq!(wheel.len(), 2);
    assert_eq!(wheel.get(keep), Some(&u32::MAX));
}

#[test]
fn debug_output_does_not_need_t_debug() {
    struct NoDebug;
    let mut other = TimerWheel::new();
    other.insert(3, NoDebug);
    let s = format!("{other:?}");
    assert!(
        s.contains("len: 1") && s.contains("next_deadline: Some(3)"),
        "{s}"
    );
}
