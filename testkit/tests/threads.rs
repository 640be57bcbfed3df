//! User events and the cross-thread `Registry`, on every backend (or the one
//! `EVMUX_BACKEND` names). The interleavings themselves are checked by the
//! loom models in `interest/tests/loom.rs`; here the real wake mechanisms
//! (eventfd, io_uring) carry them.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use evmux_interest::{Backend, Event, Events, Interest, Mode, Poller, Token};
use evmux_sys::fd;
use evmux_testkit::conformance;

fn pollers() -> Vec<(&'static str, Poller<Box<dyn Backend>>)> {
    conformance::backends_from_env()
        .expect("EVMUX_BACKEND names a backend")
        .into_iter()
        .filter_map(|s| {
            s.make
                .ok()
                .map(|m| (s.name, Poller::new(m().expect("backend"))))
        })
        .collect()
}

fn wait<B: Backend>(p: &mut Poller<B>, timeout: Duration) -> Vec<Event> {
    let mut events = Events::with_capacity(64);
    p.get_next_event(&mut events, Some(timeout)).unwrap();
    events.iter().copied().collect()
}

#[test]
fn user_triggers_coalesce_and_wake_a_blocking_wait() {
    for (name, mut p) in pollers() {
        let u = p.add_user(Token(7)).unwrap();
        assert_eq!(u.token(), Token(7));
        for _ in 0..3 {
            u.trigger().unwrap();
        }
        let evs = wait(&mut p, Duration::ZERO);
        assert_eq!(evs, [Event::user_triggered(Token(7))], "{name}");
        assert!(wait(&mut p, Duration::ZERO).is_empty(), "{name}");
        // From another thread, into a wait that blocks (10 s would fail
        // the test by its length only if the wake were lost).
        let u2 = u.clone();
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            u2.trigger().unwrap();
        });
        let evs = wait(&mut p, Duration::from_secs(10));
        assert_eq!(evs, [Event::user_triggered(Token(7))], "{name}");
        t.join().unwrap();
    }
}

#[test]
fn user_event_bad_input_and_lifetime() {
    for (name, mut p) in pollers() {
        let (r, _w) = fd::pipe().unwrap();
        p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
            .unwrap();
        let e = p.add_user(Token(1)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{name}");
        let msg = e.to_string();
        assert!(
            msg.contains("token 1") && msg.contains("descriptor"),
            "{name}: {msg}"
        );
        let u = p.add_user(Token(2)).unwrap();
        let e = p.add_user(Token(2)).unwrap_err();
        assert!(e.to_string().contains("a user event"), "{name}: {e}");
        let e = p
            .add_timer_after(Token(2), Duration::from_secs(1))
            .unwrap_err();
        assert!(e.to_string().contains("token 2"), "{name}: {e}");
        // A trigger not yet reported is dropped with the user event.
        u.trigger().unwrap();
        p.remove_user(Token(2)).unwrap();
        assert_eq!(u.trigger().unwrap_err().kind(), io::ErrorKind::NotFound);
        assert!(wait(&mut p, Duration::ZERO).is_empty(), "{name}");
        assert!(p.remove_user(Token(2)).is_err(), "{name}");
        let u3 = p.add_user(Token(3)).unwrap();
        drop(p);
        let e = u3.trigger().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{name}");
        assert!(e.to_string().contains("token 3"), "{name}: {e}");
    }
}

#[test]
fn registry_applies_in_order_and_reports_conflicts_as_error_events() {
    for (name, mut p) in pollers() {
        let reg = p.registry().unwrap();
        let (r, w) = fd::pipe().unwrap();
        fd::write(&w, b"x").unwrap();
        let raw = r.as_raw_fd();
        let e = reg
            .declare_interest(-3, Token(9), Interest::READABLE, Mode::Level)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{name}");
        assert!(e.to_string().contains("token 9"), "{name}: {e}");
        let reg2 = reg.clone();
        thread::spawn(move || {
            reg2.declare_interest(raw, Token(1), Interest::READABLE, Mode::Level)
                .unwrap();
            // The same descriptor under another token: refused when applied.
            reg2.declare_interest(raw, Token(2), Interest::READABLE, Mode::Level)
                .unwrap();
            reg2.forget(Token(5)).unwrap();
        })
        .join()
        .unwrap();
        let mut evs = wait(&mut p, Duration::from_secs(5));
        evs.sort();
        let mut readable = Event::new(Token(1));
        readable.readable = true;
        assert_eq!(
            evs,
            [
                readable,
                Event::rejected(Token(2), 17),
                Event::rejected(Token(5), 2)
            ],
            "{name}"
        );
        reg.forget(Token(1)).unwrap();
        assert!(wait(&mut p, Duration::ZERO).is_empty(), "{name}");
        assert_eq!(p.registrations().count(), 0, "{name}");
    }
}

/// 4 threads declare and forget through the registry, 100,000 operations in
/// all, while one thread waits. Each descriptor is always readable, so any
/// registration that exists at a wait is reported by it. No wait that
/// starts after a `forget` returned may report that token (tokens are never
/// reused), no error event may appear, and at the end the table equals the
/// model: the set of tokens the threads declared and did not forget.
#[test]
fn four_threads_declare_and_forget_against_one_waiter() {
    const THREADS: u64 = 4;
    const OPS: u64 = 100_000 / THREADS;
    const PIPES: usize = 8;
    for (name, mut p) in pollers() {
        let reg = p.registry().unwrap();
        let seq = Arc::new(AtomicU64::new(0));
        let forgotten: Arc<Mutex<HashMap<Token, u64>>> = Arc::default();
        let mut keep: Vec<(OwnedFd, OwnedFd)> = Vec::new();
        let mut workers = Vec::new();
        for t in 0..THREADS {
            let pipes: Vec<(OwnedFd, OwnedFd)> = (0..PIPES)
                .map(|_| {
                    let (r, w) = fd::pipe().unwrap();
                    fd::write(&w, b"x").unwrap();
                    (r, w)
                })
                .collect();
            let raws: Vec<i32> = pipes.iter().map(|(r, _)| r.as_raw_fd()).collect();
            keep.extend(pipes);
            let (reg, seq, forgotten) = (reg.clone(), seq.clone(), forgotten.clone());
            workers.push(thread::spawn(move || {
                let mut live: Vec<Option<Token>> = vec![None; PIPES];
                let mut next = 0u64;
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ t;
                for _ in 0..OPS {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let i = (x % PIPES as u64) as usize;
                    match live[i] {
                        Some(tok) => {
                            reg.forget(tok).unwrap();
                            let mut f = forgotten.lock().unwrap();
                            let s = seq.fetch_add(1, Ordering::SeqCst) + 1;
                            f.insert(tok, s);
                            live[i] = None;
                        }
                        None => {
                            let tok = Token(((t as usize) << 32) | next as usize);
                            next += 1;
                            reg.declare_interest(raws[i], tok, Interest::READABLE, Mode::Level)
                                .unwrap();
                            live[i] = Some(tok);
                        }
                    }
                }
                live.into_iter().flatten().collect::<Vec<_>>()
            }));
        }
        let mut waits = 0u64;
        let mut reported = 0u64;
        let check = |p: &mut Poller<Box<dyn Backend>>, waits: &mut u64, reported: &mut u64| {
            let start = {
                let _f = forgotten.lock().unwrap();
                seq.load(Ordering::SeqCst)
            };
            let evs = wait(p, Duration::from_millis(50));
            *waits += 1;
            let f = forgotten.lock().unwrap();
            for ev in &evs {
                assert!(!ev.error, "{name}: {ev:?}");
                if let Some(&s) = f.get(&ev.token) {
                    assert!(
                        s > start,
                        "{name}: {:?} reported by a wait that started after its forget returned",
                        ev.token
                    );
                }
                *reported += 1;
            }
        };
        let mut finished = Vec::new();
        for w in workers {
            while !w.is_finished() {
                check(&mut p, &mut waits, &mut reported);
            }
            finished.extend(w.join().unwrap());
        }
        check(&mut p, &mut waits, &mut reported);
        let table: BTreeSet<Token> = p.registrations().map(|r| r.token).collect();
        let model: BTreeSet<Token> = finished.into_iter().collect();
        assert_eq!(table, model, "{name}");
        assert!(reported > 0 && waits > 0, "{name}");
        drop(keep);
    }
}
