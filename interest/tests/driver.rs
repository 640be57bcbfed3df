//! Driver tests against a scripted backend: coalescing, batch order,
//! generations, rejections, bad input, edge/oneshot emulation, overflow and
//! EINTR. The testkit checks the same driver against real kernels.

use std::cell::Cell;
use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use evmux_interest::{
    Backend, Capabilities, Change, Error, Event, Events, Interest, Key, Mode, Output, Poller,
    RawEvent, Ready, Rejection, Token, Trigger, Wake, Watch,
};

#[derive(Debug, Default)]
struct Flag(AtomicBool);
impl Wake for Flag {
    fn wake(&self) -> io::Result<()> {
        self.0.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// Level readiness per fd, set by the test; watches per fd as told by the
/// driver; every batch recorded.
#[derive(Debug)]
struct Script {
    caps: Capabilities,
    ready: HashMap<RawFd, Ready>,
    watches: HashMap<RawFd, (Key, Watch)>,
    /// Native edge/oneshot: fds with a pending report.
    pending: HashMap<RawFd, bool>,
    batches: Vec<Vec<Change>>,
    reject_fds: HashMap<RawFd, i32>,
    interrupt_next: usize,
    stale: Vec<RawEvent>,
    waker: Arc<Flag>,
    clock: Duration,
    /// How many times the driver read the clock.
    clock_reads: Cell<usize>,
}

impl Script {
    fn new(caps: Capabilities) -> Script {
        Script {
            caps,
            ready: HashMap::new(),
            watches: HashMap::new(),
            pending: HashMap::new(),
            batches: Vec::new(),
            reject_fds: HashMap::new(),
            interrupt_next: 0,
            stale: Vec::new(),
            waker: Arc::default(),
            clock: Duration::ZERO,
            clock_reads: Cell::new(0),
        }
    }
    fn plain() -> Script {
        Script::new(Capabilities {
            native_edge: false,
            native_oneshot: false,
            cheap_changes: true,
            max_fd: None,
        })
    }
    fn native() -> Script {
        Script::new(Capabilities {
            native_edge: true,
            native_oneshot: true,
            cheap_changes: false,
            max_fd: Some(1023),
        })
    }
}

impl Backend for Script {
    fn name(&self) -> &'static str {
        "script"
    }
    fn capabilities(&self) -> Capabilities {
        self.caps
    }
    fn submit_and_wait(
        &mut self,
        changes: &[Change],
        out: &mut Output,
        max_events: usize,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        self.batches.push(changes.to_vec());
        for c in changes {
            if let Some(&errno) = self.reject_fds.get(&c.fd)
                && c.new.is_some()
            {
                out.rejected.push(Rejection { key: c.key, errno });
                continue;
            }
            match c.new {
                Some(w) => {
                    self.watches.insert(c.fd, (c.key, w));
                    self.pending.insert(c.fd, true);
                }
                None => {
                    self.watches.remove(&c.fd);
                }
            }
        }
        if self.interrupt_next > 0 {
            self.interrupt_next -= 1;
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        out.events.append(&mut self.stale);
        if self.waker.0.swap(false, Ordering::SeqCst) {
            out.events.push(RawEvent {
                key: Key::WAKER,
                ready: Ready::IN,
            });
        }
        let mut fds: Vec<_> = self.watches.keys().copied().collect();
        fds.sort();
        for fd in fds {
            if out.events.len() >= max_events {
                break;
            }
            let (key, w) = self.watches[&fd];
            let ready =
                self.ready.get(&fd).copied().unwrap_or_default() & Ready::reportable(w.interest);
            if ready.is_empty() {
                continue;
            }
            let report = match w.trigger {
                Trigger::Level => true,
                Trigger::Edge | Trigger::Oneshot => self.pending.insert(fd, false).unwrap_or(false),
            };
            if report {
                out.events.push(RawEvent { key, ready });
            }
        }
        if out.events.is_empty()
            && let Some(t) = timeout
        {
            self.clock += t;
        }
        Ok(())
    }
    fn waker(&mut self) -> io::Result<Arc<dyn Wake>> {
        Ok(self.waker.clone())
    }
    fn now(&self) -> Duration {
        self.clock_reads.set(self.clock_reads.get() + 1);
        self.clock
    }
}

fn wait(p: &mut Poller<Script>) -> Vec<Event> {
    let mut evs = Events::with_capacity(64);
    p.get_next_event(&mut evs, Some(Duration::ZERO)).unwrap();
    let mut v = evs.as_slice().to_vec();
    v.sort();
    v
}

fn last_batch(p: &Poller<Script>) -> &[Change] {
    p.backend().batches.last().unwrap()
}

#[test]
fn read_write_read_flip_between_waits_costs_no_change() {
    let mut p = Poller::new(Script::plain());
    p.declare_interest(5, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    wait(&mut p);
    assert_eq!(last_batch(&p).len(), 1);
    p.declare_interest(5, Token(1), Interest::WRITABLE, Mode::Level)
        .unwrap();
    p.declare_interest(5, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    wait(&mut p);
    assert!(last_batch(&p).is_empty(), "{:?}", last_batch(&p));
}

#[test]
fn n_changes_reach_the_backend_in_one_batch() {
    let mut p = Poller::new(Script::plain());
    for fd in 0..100 {
        p.declare_interest(fd, Token(fd as usize), Interest::BOTH, Mode::Level)
            .unwrap();
    }
    wait(&mut p);
    assert_eq!(p.backend().batches.len(), 1);
    let batch = last_batch(&p);
    assert_eq!(batch.len(), 100);
    assert!(batch.iter().all(|c| c.old.is_none() && c.new.is_some()));
}

#[test]
fn declare_then_forget_before_a_wait_costs_nothing() {
    let mut p = Poller::new(Script::plain());
    p.declare_interest(5, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.forget(Token(1)).unwrap();
    wait(&mut p);
    assert!(last_batch(&p).is_empty());
}

#[test]
fn forget_and_redeclare_same_number_orders_removal_first_with_new_generation() {
    let mut p = Poller::new(Script::plain());
    p.declare_interest(5, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    wait(&mut p);
    let old_key = last_batch(&p)[0].key;
    p.forget(Token(1)).unwrap();
    p.declare_interest(5, Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    wait(&mut p);
    let b = last_batch(&p).to_vec();
    assert_eq!(b.len(), 2);
    assert_eq!((b[0].key, b[0].new), (old_key, None));
    assert!(b[1].new.is_some() && b[1].old.is_none());
    assert_eq!(b[1].key.index(), old_key.index());
    assert_ne!(b[1].key.generation(), old_key.generation());
}

#[test]
fn readiness_for_a_stale_generation_is_dropped() {
    let mut p = Poller::new(Script::plain());
    p.declare_interest(5, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    wait(&mut p);
    let old_key = last_batch(&p)[0].key;
    p.forget(Token(1)).unwrap();
    p.declare_interest(5, Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    p.backend_mut().stale.push(RawEvent {
        key: old_key,
        ready: Ready::IN,
    });
    assert!(wait(&mut p).is_empty());
    p.backend_mut().ready.insert(5, Ready::IN);
    let evs = wait(&mut p);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].token, Token(2));
}

#[test]
fn rejected_change_becomes_an_error_event_then_silence_until_redeclared() {
    let mut p = Poller::new(Script::plain());
    p.backend_mut().reject_fds.insert(7, 9 /* EBADF */);
    p.backend_mut().ready.insert(7, Ready::IN);
    p.declare_interest(7, Token(3), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(8, Token(4), Interest::READABLE, Mode::Level)
        .unwrap();
    p.backend_mut().ready.insert(8, Ready::IN);
    let evs = wait(&mut p);
    assert_eq!(evs.len(), 2, "{evs:?}");
    let err = evs.iter().find(|e| e.token == Token(3)).unwrap();
    assert!(err.error && err.errno == Some(9) && !err.readable);
    assert_eq!(err.io_error().unwrap().raw_os_error(), Some(9));
    // The rest of the batch applied.
    assert!(evs.iter().any(|e| e.token == Token(4) && e.readable));
    // Silent afterwards, and still registered: forget works, redeclare retries.
    assert!(wait(&mut p).iter().all(|e| e.token != Token(3)));
    p.backend_mut().reject_fds.clear();
    p.declare_interest(7, Token(3), Interest::READABLE, Mode::Level)
        .unwrap();
    let evs = wait(&mut p);
    assert!(evs.iter().any(|e| e.token == Token(3) && e.readable));
}

#[test]
fn bad_input_errors_name_token_and_fd_and_change_nothing() {
    let mut p = Poller::new(Script::native());
    let e = p
        .declare_interest(-1, Token(1), Interest::READABLE, Mode::Level)
        .unwrap_err();
    assert!(matches!(e, Error::NegativeFd { fd: -1, .. }));
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("token 1") && e.to_string().contains("-1"));

    let e = p
        .declare_interest(1024, Token(1), Interest::READABLE, Mode::Level)
        .unwrap_err();
    assert!(matches!(
        e,
        Error::FdTooLarge {
            fd: 1024,
            limit: 1024,
            ..
        }
    ));
    assert!(e.to_string().contains("1024") && e.to_string().contains("token 1"));

    p.declare_interest(4, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    let e = p
        .declare_interest(5, Token(1), Interest::READABLE, Mode::Level)
        .unwrap_err();
    assert!(matches!(
        e,
        Error::TokenInUse {
            registered_fd: Some(4),
            fd: Some(5),
            ..
        }
    ));
    assert!(e.to_string().contains("descriptor 4") && e.to_string().contains("descriptor 5"));

    let e = p
        .declare_interest(4, Token(2), Interest::READABLE, Mode::Level)
        .unwrap_err();
    assert!(matches!(
        e,
        Error::FdInUse {
            fd: 4,
            registered: Token(1),
            token: Token(2)
        }
    ));
    assert!(e.to_string().contains("token 1") && e.to_string().contains("descriptor 4"));

    let e = p.forget(Token(9)).unwrap_err();
    assert_eq!(e, Error::UnknownToken { token: Token(9) });
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert!(e.to_string().contains("token 9"));
    let e = p.would_block(Token(9), Interest::READABLE).unwrap_err();
    assert_eq!(e, Error::UnknownToken { token: Token(9) });

    let e = p.waker(Token(1)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    assert!(e.to_string().contains("token 1"));
    p.waker(Token(50)).unwrap();
    let e = p
        .declare_interest(6, Token(50), Interest::READABLE, Mode::Level)
        .unwrap_err();
    assert!(matches!(
        e,
        Error::TokenInUse {
            registered_fd: None,
            ..
        }
    ));

    // Nothing changed: one registration, as declared.
    let regs: Vec<_> = p.registrations().collect();
    assert_eq!(regs.len(), 1);
    assert_eq!((regs[0].token, regs[0].fd), (Token(1), 4));
}

#[test]
fn emulated_edge_reports_once_until_would_block() {
    let mut p = Poller::new(Script::plain());
    p.backend_mut().ready.insert(5, Ready::IN | Ready::OUT);
    p.declare_interest(5, Token(1), Interest::BOTH, Mode::Edge)
        .unwrap();
    let evs = wait(&mut p);
    assert!(evs.len() == 1 && evs[0].readable && evs[0].writable);
    assert!(wait(&mut p).is_empty());
    // The disarmed directions are no longer watched by the kernel.
    assert!(last_batch(&p).iter().all(|c| c.new.is_none()));
    p.would_block(Token(1), Interest::READABLE).unwrap();
    let evs = wait(&mut p);
    assert!(evs.len() == 1 && evs[0].readable && !evs[0].writable);
    // Declaring again re-arms both.
    p.declare_interest(5, Token(1), Interest::BOTH, Mode::Edge)
        .unwrap();
    let evs = wait(&mut p);
    assert!(evs.len() == 1 && evs[0].readable && evs[0].writable);
}

#[test]
fn native_edge_redeclare_rearms_only_when_something_was_disarmed() {
    let mut p = Poller::new(Script::native());
    p.backend_mut().ready.insert(5, Ready::IN);
    p.declare_interest(5, Token(1), Interest::READABLE, Mode::Edge)
        .unwrap();
    assert_eq!(wait(&mut p).len(), 1);
    // Unchanged declaration while disarmed: one re-arm change.
    p.declare_interest(5, Token(1), Interest::READABLE, Mode::Edge)
        .unwrap();
    let evs = wait(&mut p);
    assert!(last_batch(&p).len() == 1 && last_batch(&p)[0].rearm);
    assert_eq!(evs.len(), 1);
    // would_block re-arms in user space: no change at all.
    p.would_block(Token(1), Interest::READABLE).unwrap();
    p.declare_interest(5, Token(1), Interest::READABLE, Mode::Edge)
        .unwrap();
    wait(&mut p);
    assert!(last_batch(&p).is_empty(), "{:?}", last_batch(&p));
}

#[test]
fn oneshot_reports_once_until_declared_again() {
    for mut p in [Poller::new(Script::plain()), Poller::new(Script::native())] {
        p.backend_mut().ready.insert(5, Ready::IN);
        p.declare_interest(5, Token(1), Interest::READABLE, Mode::Oneshot)
            .unwrap();
        assert_eq!(wait(&mut p).len(), 1);
        p.backend_mut().pending.insert(5, true);
        assert!(wait(&mut p).is_empty());
        p.declare_interest(5, Token(1), Interest::READABLE, Mode::Oneshot)
            .unwrap();
        assert_eq!(wait(&mut p).len(), 1);
    }
}

#[test]
fn events_beyond_capacity_are_kept_for_the_next_call() {
    let mut p = Poller::new(Script::plain());
    p.waker(Token(100)).unwrap().wake().unwrap();
    for fd in 0..3 {
        p.backend_mut().ready.insert(fd, Ready::IN);
        p.declare_interest(fd, Token(fd as usize), Interest::READABLE, Mode::Oneshot)
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut evs = Events::with_capacity(1);
    for _ in 0..6 {
        p.get_next_event(&mut evs, Some(Duration::ZERO)).unwrap();
        assert!(evs.len() <= 1);
        seen.extend(evs.iter().map(|e| e.token));
    }
    seen.sort();
    assert_eq!(seen, vec![Token(0), Token(1), Token(2), Token(100)]);
}

#[test]
fn interrupted_wait_is_resumed_without_resubmitting_changes() {
    let mut p = Poller::new(Script::plain());
    p.backend_mut().interrupt_next = 2;
    p.backend_mut().ready.insert(5, Ready::IN);
    p.declare_interest(5, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    let mut evs = Events::with_capacity(8);
    let n = p
        .get_next_event(&mut evs, Some(Duration::from_millis(10)))
        .unwrap();
    assert_eq!(n, 1);
    let batches = &p.backend().batches;
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[0].len(), 1);
    assert!(batches[1].is_empty() && batches[2].is_empty());
}

#[test]
fn waker_wakes_coalesce_into_one_event() {
    let mut p = Poller::new(Script::plain());
    let w = p.waker(Token(9)).unwrap();
    let w2 = w.clone();
    w.wake().unwrap();
    w2.wake().unwrap();
    let evs = wait(&mut p);
    assert_eq!(evs.len(), 1);
    assert!(evs[0].token == Token(9) && evs[0].readable);
    assert!(wait(&mut p).is_empty());
}

#[test]
fn forget_drops_events_already_collected() {
    let mut p = Poller::new(Script::plain());
    for fd in 0..2 {
        p.backend_mut().ready.insert(fd, Ready::IN);
        p.declare_interest(fd, Token(fd as usize), Interest::READABLE, Mode::Level)
            .unwrap();
    }
    let mut evs = Events::with_capacity(1);
    p.get_next_event(&mut evs, Some(Duration::ZERO)).unwrap();
    let first = evs.as_slice()[0].token;
    let other = if first == Token(0) {
        Token(1)
    } else {
        Token(0)
    };
    p.forget(other).unwrap();
    p.get_next_event(&mut evs, Some(Duration::ZERO)).unwrap();
    assert!(evs.iter().all(|e| e.token != other));
}

/// A poll (zero timeout) or a wait with no timer pending reads the clock
/// never; a pending timer or a timeout to wait out makes the wait read it,
/// and the timer still fires on time.
#[test]
fn the_clock_is_read_only_when_a_timer_or_a_timeout_needs_it() {
    let mut p = Poller::new(Script::plain());
    p.declare_interest(5, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    let reads = |p: &Poller<Script>| p.backend().clock_reads.get();

    // Zero timeout, nothing ready; then something ready.
    assert!(wait(&mut p).is_empty());
    p.backend_mut().ready.insert(5, Ready::IN);
    assert_eq!(wait(&mut p).len(), 1);
    // No timeout at all, something ready: returns at once.
    let mut evs = Events::with_capacity(8);
    assert_eq!(p.get_next_event(&mut evs, None).unwrap(), 1);
    assert_eq!(reads(&p), 0, "no timer, no timeout: no clock read");

    // A timeout to wait out: the clock is read.
    p.backend_mut().ready.clear();
    assert_eq!(
        p.get_next_event(&mut evs, Some(Duration::from_millis(5)))
            .unwrap(),
        0
    );
    let after_timeout = reads(&p);
    assert!(after_timeout > 0);

    // A pending timer: even a zero-timeout poll reads it, and the timer
    // fires once its deadline has passed.
    let deadline = p.now() + Duration::from_millis(10);
    p.add_timer(Token(9), deadline).unwrap();
    let before_poll = reads(&p);
    assert!(wait(&mut p).is_empty());
    assert!(reads(&p) > before_poll);
    p.backend_mut().clock = deadline;
    let fired = wait(&mut p);
    assert_eq!(fired.len(), 1);
    assert!(fired[0].timer && fired[0].token == Token(9));

    // Fired and gone: polls stop reading it again.
    let before = reads(&p);
    assert!(wait(&mut p).is_empty());
    assert_eq!(reads(&p), before);
}
