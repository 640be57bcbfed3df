//! loom models of the cross-thread handles: the waker, user triggers and the
//! registry queue. Run with `cargo xtask loom` (which sets
//! `RUSTFLAGS="--cfg loom"` and builds in release).
//!
//! The backend here is a stand-in whose "kernel" is one flag: `wake` sets it,
//! a wait consumes it and reports `Key::WAKER`. A wait with no timeout
//! blocks on a condition variable until something is ready, so a lost
//! wake-up shows up as a deadlock, which loom reports.
#![cfg(loom)]

use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use evmux_interest::{
    Backend, Capabilities, Change, Events, Interest, Key, Mode, Output, Poller, RawEvent, Ready,
    Token, Wake,
};
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Condvar, Mutex};
use loom::thread;

#[derive(Debug, Default)]
struct Flag {
    set: Mutex<bool>,
    cv: Condvar,
    wakes: AtomicUsize,
}

impl Wake for Flag {
    fn wake(&self) -> io::Result<()> {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        *self.set.lock().unwrap() = true;
        self.cv.notify_all();
        Ok(())
    }
}

/// Every registered descriptor is always readable (a level source), so a
/// registration that exists at a wait is reported by it.
struct LoomBackend {
    flag: std::sync::Arc<Flag>,
    watched: Vec<(RawFd, Key)>,
}

impl fmt::Debug for LoomBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoomBackend").finish()
    }
}

impl LoomBackend {
    fn new() -> LoomBackend {
        LoomBackend {
            flag: std::sync::Arc::new(Flag::default()),
            watched: Vec::new(),
        }
    }
}

impl Backend for LoomBackend {
    fn name(&self) -> &'static str {
        "loom"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_edge: false,
            native_oneshot: false,
            cheap_changes: true,
            max_fd: None,
        }
    }
    fn submit_and_wait(
        &mut self,
        changes: &[Change],
        out: &mut Output,
        _max_events: usize,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        for c in changes {
            self.watched.retain(|(fd, _)| *fd != c.fd);
            if c.new.is_some() {
                self.watched.push((c.fd, c.key));
            }
        }
        let mut set = self.flag.set.lock().unwrap();
        if timeout.is_none() {
            while !*set && self.watched.is_empty() {
                set = self.flag.cv.wait(set).unwrap();
            }
        }
        if std::mem::take(&mut *set) {
            out.events.push(RawEvent {
                key: Key::WAKER,
                ready: Ready::IN,
            });
        }
        for &(_, key) in &self.watched {
            out.events.push(RawEvent {
                key,
                ready: Ready::IN,
            });
        }
        Ok(())
    }
    fn waker(&mut self) -> io::Result<std::sync::Arc<dyn Wake>> {
        Ok(self.flag.clone())
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

fn count(events: &Events, pred: impl Fn(&evmux_interest::Event) -> bool) -> usize {
    events.iter().filter(|e| pred(e)).count()
}

/// A wake from another thread ends a blocking wait (no lost wake-up), and
/// two wakes give one or two events, never zero or three.
#[test]
fn waker_never_loses_a_wake_and_coalesces() {
    loom::model(|| {
        let mut p = Poller::new(LoomBackend::new());
        let w = p.waker(Token(9)).unwrap();
        let t = thread::spawn(move || {
            w.wake().unwrap();
            w.wake().unwrap();
        });
        let mut events = Events::with_capacity(8);
        // Blocks until the wake arrives.
        p.get_next_event(&mut events, None).unwrap();
        let first = count(&events, |e| e.token == Token(9) && e.readable);
        assert_eq!(first, 1);
        t.join().unwrap();
        p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
        let second = count(&events, |e| e.token == Token(9));
        assert!(second <= 1);
        // A wake pending in the mailbox always has a syscall behind it.
        assert!(p.backend().flag.wakes.load(Ordering::SeqCst) >= 1);
    });
}

/// Triggers from two threads: a blocking wait ends with the user event;
/// all triggers are covered by one or two events; a trigger after the
/// poller is dropped fails harmlessly.
#[test]
fn user_trigger_coalesces_and_is_never_lost() {
    loom::model(|| {
        let mut p = Poller::new(LoomBackend::new());
        let u = p.add_user(Token(4)).unwrap();
        let u2 = u.clone();
        let t = thread::spawn(move || u2.trigger().unwrap());
        u.trigger().unwrap();
        let mut events = Events::with_capacity(8);
        p.get_next_event(&mut events, None).unwrap();
        let first = count(&events, |e| e.token == Token(4) && e.user);
        assert_eq!(first, 1);
        t.join().unwrap();
        p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
        let second = count(&events, |e| e.token == Token(4) && e.user);
        assert!(second <= 1);
        drop(p);
        assert_eq!(u.trigger().unwrap_err().kind(), io::ErrorKind::NotConnected);
    });
}

/// The registry applies operations in issue order, and a `forget` that
/// returned happens-before every wait that starts later: such a wait never
/// reports the token, although the descriptor is always ready.
#[test]
fn registry_forget_happens_before_later_waits() {
    loom::model(|| {
        let mut p = Poller::new(LoomBackend::new());
        let reg = p.registry().unwrap();
        let forgotten = std::sync::Arc::new(AtomicBool::new(false));
        let f2 = forgotten.clone();
        let t = thread::spawn(move || {
            reg.declare_interest(5, Token(1), Interest::READABLE, Mode::Level)
                .unwrap();
            reg.forget(Token(1)).unwrap();
            f2.store(true, Ordering::Release);
        });
        let mut events = Events::with_capacity(8);
        for _ in 0..2 {
            let after_forget = forgotten.load(Ordering::Acquire);
            p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
            if after_forget {
                assert_eq!(count(&events, |e| e.token == Token(1)), 0);
            }
            // Never an error event: the operations applied in order.
            assert_eq!(count(&events, |e| e.error), 0);
        }
        t.join().unwrap();
        p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
        assert_eq!(count(&events, |e| e.token == Token(1)), 0);
        assert_eq!(p.registrations().count(), 0);
    });
}
