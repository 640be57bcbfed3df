//! The driver: `declare_interest` / `get_next_event` over any [`Backend`].

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use crate::backend::{
    Backend, Capabilities, Change, Key, Output, SourceReport, SourceSpec, Trigger, Watch,
};
use evmux_timers::{TimerKey, TimerWheel};

use crate::error::{Error, TokenUse};
use crate::mailbox::{Collected, Mailbox, Op, Registry, UserShared, UserTrigger, Waker};
use crate::sync;
use crate::types::{Event, Events, Interest, Mode, Ready, Token};

use crate::intmap::{DenseMap, IntMap};

const R: u8 = 0b01;
const W: u8 = 0b10;

fn bits(i: Interest) -> u8 {
    (if i.is_readable() { R } else { 0 }) | (if i.is_writable() { W } else { 0 })
}

fn from_bits(b: u8) -> Option<Interest> {
    Interest::from_flags(b & R != 0, b & W != 0)
}

/// One registration in the table.
#[derive(Clone, Debug)]
struct Slot {
    generation: u32,
    live: bool,
    fd: RawFd,
    token: Token,
    interest: Interest,
    mode: Mode,
    /// Edge mode: the directions that may still report (bits R|W).
    armed: u8,
    /// Oneshot mode: false once an event was reported.
    enabled: bool,
    /// The kernel refused the last change: silent until declared again.
    failed: bool,
    /// What the backend was last told.
    kernel: Option<Watch>,
    /// Ask the backend to re-check readiness at the next sync.
    rearm: bool,
    /// Already queued in the dirty list.
    dirty: bool,
    /// A signal or process source the backend opened; what it is lives in
    /// [`Poller::sources`] (rare, so not in every slot: a slot is 40 bytes,
    /// see the size assertion below). False for the program's own
    /// descriptors.
    source: bool,
    /// Readiness kept in user space ([`Poller::track_readiness`]); only
    /// acted on when the backend keeps edges natively.
    tracked: bool,
    /// Tracked: directions the kernel reported ready and no `WouldBlock`
    /// has cleared since (bits R|W).
    known: u8,
    /// Tracked: the readiness bits behind `known`.
    known_mask: Ready,
    /// Tracked: queued in `tracked_ready`.
    queued: bool,
}

// Slots are read once per reported event: at 9,000 registrations the
// table is 360 KB at this size (504 KB when every slot carried its
// source's id and spec).
static_assertions::assert_eq_size!(Slot, [u8; 40]);

/// A registration as the table holds it; see [`Poller::registrations`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Registration {
    /// The token.
    pub token: Token,
    /// The descriptor number.
    pub fd: RawFd,
    /// Whether readable interest is declared.
    pub readable: bool,
    /// Whether writable interest is declared.
    pub writable: bool,
    /// The mode (as `Level`, `Edge`, `Oneshot`).
    pub mode: ModeName,
}

/// A `Mode` that orders, for comparing tables.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModeName {
    /// [`Mode::Level`].
    Level,
    /// [`Mode::Edge`].
    Edge,
    /// [`Mode::Oneshot`].
    Oneshot,
}

impl From<Mode> for ModeName {
    fn from(m: Mode) -> ModeName {
        match m {
            Mode::Level => ModeName::Level,
            Mode::Edge => ModeName::Edge,
            Mode::Oneshot => ModeName::Oneshot,
        }
    }
}

/// The driver: Banga's `declare_interest` / `get_next_event` over a backend.
///
/// The interest set lives here, in user space. Declarations and `forget`s
/// only record the wish; the next [`get_next_event`](Poller::get_next_event)
/// computes the net change per descriptor against what the kernel was last
/// told and hands the backend one batch, removals first. Changes that cancel
/// out (read → write → read) cost nothing.
///
/// The poller does not own the descriptors it watches. Forget a descriptor
/// before closing it; see `SEMANTICS.md` for what happens otherwise.
pub struct Poller<B: Backend> {
    backend: B,
    caps: Capabilities,
    slots: Vec<Slot>,
    free: Vec<u32>,
    by_token: DenseMap<Token, u32>,
    by_fd: DenseMap<RawFd, u32>,
    dirty: Vec<Key>,
    removals: Vec<Change>,
    changes: Vec<Change>,
    out: Output,
    overflow: VecDeque<Event>,
    /// The waker's token, once `waker` was called.
    waker: Option<Token>,
    /// Made at the first `waker`, `add_user` or `registry`.
    mailbox: Option<sync::Arc<Mailbox>>,
    users: IntMap<Token, sync::Arc<UserShared>>,
    /// Signal number → the token watching it.
    signals: IntMap<i32, Token>,
    /// Sources forgotten but not yet closed: closed after the batch that
    /// removes their watch reached the backend.
    closing: Vec<u64>,
    closing_now: Vec<u64>,
    /// Source readiness of the current wait, read after the others.
    source_hits: Vec<u32>,
    /// The signal and process sources, by slot: the backend's id for the
    /// watch, and what it watches.
    sources: IntMap<u32, (u64, SourceSpec)>,
    /// Tracked registrations with known readiness.
    tracked_ready: Vec<u32>,
    collected: Collected,
    timers: TimerWheel<Token>,
    timer_keys: DenseMap<Token, TimerKey>,
    expired: Vec<(TimerKey, Token)>,
}

impl<B: Backend> fmt::Debug for Poller<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Poller")
            .field("backend", &self.backend)
            .field("registrations", &self.by_token.len())
            .field("pending_changes", &(self.dirty.len() + self.removals.len()))
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Poller<B> {
    /// A poller over `backend`, with an empty interest set.
    pub fn new(backend: B) -> Poller<B> {
        let caps = backend.capabilities();
        Poller {
            backend,
            caps,
            slots: Vec::new(),
            free: Vec::new(),
            by_token: DenseMap::default(),
            by_fd: DenseMap::default(),
            dirty: Vec::new(),
            removals: Vec::new(),
            changes: Vec::new(),
            out: Output::default(),
            overflow: VecDeque::new(),
            waker: None,
            mailbox: None,
            users: IntMap::default(),
            signals: IntMap::default(),
            closing: Vec::new(),
            closing_now: Vec::new(),
            source_hits: Vec::new(),
            sources: IntMap::default(),
            tracked_ready: Vec::new(),
            collected: Collected::default(),
            timers: TimerWheel::new(),
            timer_keys: DenseMap::default(),
            expired: Vec::new(),
        }
    }

    /// The backend's name.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably (for backend-specific settings).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// How many descriptors are registered.
    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    /// Whether no descriptor is registered.
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }

    /// Records that the program wants to hear about `interest` on `fd`, under
    /// `token`, in `mode`. No syscall is made: the kernel learns at the next
    /// [`get_next_event`](Poller::get_next_event).
    ///
    /// Declaring a token again (same `fd`) replaces its interest and mode and
    /// re-arms it: an edge registration may report again, a oneshot one is
    /// enabled again.
    ///
    /// # Errors
    /// Nothing is changed when:
    /// - `fd` is negative ([`Error::NegativeFd`]) or too large for the
    ///   backend ([`Error::FdTooLarge`]);
    /// - `token` names another descriptor or the waker ([`Error::TokenInUse`]);
    /// - `fd` is registered under another token ([`Error::FdInUse`]).
    ///
    /// A descriptor the kernel refuses (closed, say) is not an error here:
    /// the refusal comes back as an error event for `token`.
    pub fn declare_interest(
        &mut self,
        fd: RawFd,
        token: Token,
        interest: Interest,
        mode: Mode,
    ) -> Result<(), Error> {
        if fd < 0 {
            return Err(Error::NegativeFd { token, fd });
        }
        if let Some(max) = self.caps.max_fd
            && fd > max
        {
            return Err(Error::FdTooLarge {
                token,
                fd,
                limit: max.saturating_add(1),
                backend: self.backend.name(),
            });
        }
        if let Some(wt) = self.waker
            && wt == token
        {
            return Err(Error::TokenInUse {
                token,
                registered_fd: None,
                fd: Some(fd),
            });
        }
        // A token held by a descriptor is held by nothing else (`claim`),
        // so the common case, declaring a registration again, looks the
        // token up once.
        let existing = self.by_token.get(&token).copied();
        if existing.is_none()
            && let Some(holder) = self.token_use_other_than_descriptor(token)
        {
            return Err(Error::TokenTaken {
                token,
                holder,
                wanted: TokenUse::Descriptor(fd),
            });
        }
        if let Some(idx) = existing {
            if self.slots[idx as usize].source {
                return Err(Error::TokenTaken {
                    token,
                    holder: self.slot_use(idx),
                    wanted: TokenUse::Descriptor(fd),
                });
            }
            let caps = self.caps;
            let slot = &mut self.slots[idx as usize];
            if slot.fd != fd {
                return Err(Error::TokenInUse {
                    token,
                    registered_fd: Some(slot.fd),
                    fd: Some(fd),
                });
            }
            // Does the kernel hold back readiness that re-arming must
            // re-check? Only when the kernel keeps its own trigger state,
            // and whatever the new mode: after `Oneshot` fired, a declare
            // of `Level` and then `Oneshot` again before the next wait nets
            // out to the kernel's own watch, which is still disarmed.
            let rearm = match slot.mode {
                // Tracked: the kernel watches both directions edge-triggered
                // whatever the mode; user space knows what is ready.
                _ if slot.tracked && caps.native_edge => false,
                // A direction disarmed since the last (re)arm, whatever the
                // interest in between: the kernel consumed its edge.
                Mode::Edge if caps.native_edge => slot.armed != R | W,
                Mode::Oneshot if caps.native_oneshot => !slot.enabled,
                _ => false,
            };
            slot.interest = interest;
            slot.mode = mode;
            slot.armed = R | W;
            slot.enabled = true;
            slot.failed = false;
            slot.rearm |= rearm;
            let key = Key::new(idx, slot.generation);
            if slot.tracked && caps.native_edge {
                // The kernel's watch stays as it is: no change to compute.
                // Known readiness may now be reportable.
                self.queue_tracked(idx);
            } else {
                self.mark_dirty(idx, key);
            }
            return Ok(());
        }
        if let Some(&idx) = self.by_fd.get(&fd) {
            return Err(Error::FdInUse {
                fd,
                registered: self.slots[idx as usize].token,
                token,
            });
        }
        let slot = Slot {
            generation: 0,
            live: true,
            fd,
            token,
            interest,
            mode,
            armed: R | W,
            enabled: true,
            failed: false,
            kernel: None,
            rearm: false,
            dirty: false,
            source: false,
            tracked: false,
            known: 0,
            known_mask: Ready::EMPTY,
            queued: false,
        };
        let idx = match self.free.pop() {
            Some(idx) => {
                let old = &self.slots[idx as usize];
                // `queued` stays: the slot may still be in `tracked_ready`
                // (the list is pruned at the next wait), and a second entry
                // would report the new registration twice in one wait.
                let (generation, queued) = (old.generation, old.queued);
                self.slots[idx as usize] = Slot {
                    generation,
                    queued,
                    ..slot
                };
                idx
            }
            None => {
                let idx = u32::try_from(self.slots.len()).expect("more than 2^32 registrations");
                self.slots.push(slot);
                idx
            }
        };
        self.by_token.insert(token, idx);
        self.by_fd.insert(fd, idx);
        let key = Key::new(idx, self.slots[idx as usize].generation);
        self.mark_dirty(idx, key);
        Ok(())
    }

    /// Removes the registration named `token`. No syscall is made; the
    /// kernel learns at the next wait. No event for `token` is reported
    /// after `forget` returns, and the descriptor number is free to be
    /// declared again at once, even before that wait.
    ///
    /// # Errors
    /// [`Error::UnknownToken`] if no registration has this token.
    pub fn forget(&mut self, token: Token) -> Result<(), Error> {
        let Some(idx) = self.by_token.remove(&token) else {
            return Err(Error::UnknownToken { token });
        };
        let slot = &mut self.slots[idx as usize];
        self.by_fd.remove(&slot.fd);
        let key = Key::new(idx, slot.generation);
        if let Some(old) = slot.kernel
            && !self.backend.forget_now(slot.fd, key, old)
        {
            self.removals.push(Change {
                fd: slot.fd,
                key,
                old: Some(old),
                new: None,
                rearm: false,
            });
        }
        if std::mem::take(&mut slot.source)
            && let Some((id, spec)) = self.sources.remove(&idx)
        {
            self.closing.push(id);
            if let SourceSpec::Signal(sig) = spec {
                self.signals.remove(&sig);
            }
        }
        slot.live = false;
        slot.kernel = None;
        slot.dirty = false;
        slot.tracked = false;
        slot.known = 0;
        slot.known_mask = Ready::EMPTY;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(idx);
        // Events already collected but not yet returned must not outlive
        // the registration.
        self.overflow.retain(|ev| ev.token != token);
        Ok(())
    }

    /// Tells the poller that an operation on `token`'s descriptor in the
    /// `interest` direction(s) returned `WouldBlock`. For an edge
    /// registration this re-arms those directions; for other modes it does
    /// nothing. The `net` crate's sources call this for you.
    ///
    /// Call it only right after a real `WouldBlock`: re-arming a direction
    /// that is still ready is the one way to see an edge registration report
    /// a readiness it already reported.
    ///
    /// # Errors
    /// [`Error::UnknownToken`] if no registration has this token.
    #[inline]
    pub fn would_block(&mut self, token: Token, interest: Interest) -> Result<(), Error> {
        let Some(&idx) = self.by_token.get(&token) else {
            return Err(Error::UnknownToken { token });
        };
        let emulated = !self.caps.native_edge;
        let slot = &mut self.slots[idx as usize];
        if slot.tracked && !emulated {
            let b = bits(interest);
            slot.known &= !b;
            if b & R != 0 {
                slot.known_mask =
                    Ready(slot.known_mask.0 & !(Ready::IN | Ready::RDHUP | Ready::PRI).0);
            }
            if b & W != 0 {
                slot.known_mask = Ready(slot.known_mask.0 & !Ready::OUT.0);
            }
        }
        if slot.mode == Mode::Edge {
            let before = slot.armed;
            slot.armed |= bits(interest);
            if emulated && slot.armed != before {
                let key = Key::new(idx, slot.generation);
                self.mark_dirty(idx, key);
            }
        }
        Ok(())
    }

    /// Opts the registration of `token` into readiness kept in user space
    /// (`ARCHITECTURE.md`, "Beyond coalescing"): on a backend that keeps
    /// edges natively (epoll, kqueue) the kernel watches both directions,
    /// edge-triggered, once; the poller remembers what the kernel reported
    /// until [`would_block`](Poller::would_block) clears it, and interest
    /// changes never reach the kernel again: a read → write → read flip
    /// costs no syscall even across waits. Other backends ignore it (their
    /// changes are free already).
    ///
    /// The program's side: after an event, it reads (writes) until
    /// `WouldBlock` and then calls `would_block` — as `evmux-net`'s sources
    /// do. A level registration is then reported while that direction was
    /// not seen to block, which equals "while ready" for such a program.
    ///
    /// # Errors
    /// [`Error::UnknownToken`] if no descriptor is registered under `token`.
    pub fn track_readiness(&mut self, token: Token) -> Result<(), Error> {
        let Some(&idx) = self.by_token.get(&token) else {
            return Err(Error::UnknownToken { token });
        };
        let slot = &mut self.slots[idx as usize];
        if slot.source || slot.tracked {
            return Ok(());
        }
        slot.tracked = true;
        if self.caps.native_edge {
            let key = Key::new(idx, slot.generation);
            self.mark_dirty(idx, key);
        }
        Ok(())
    }

    /// A [`Waker`] whose wake-ups are reported under `token`. Calling it
    /// again returns a handle to the same mechanism; the token becomes the
    /// new one.
    ///
    /// # Errors
    /// `AlreadyExists` if `token` names a descriptor ([`Error::TokenInUse`]);
    /// otherwise what the backend reports when setting up its mechanism.
    pub fn waker(&mut self, token: Token) -> io::Result<Waker> {
        if let Some(&idx) = self.by_token.get(&token) {
            return Err(Error::TokenInUse {
                token,
                registered_fd: Some(self.slots[idx as usize].fd),
                fd: None,
            }
            .into());
        }
        if let Some(holder) = self.token_use_other_than_descriptor(token)
            && holder != TokenUse::Waker
        {
            return Err(Error::TokenTaken {
                token,
                holder,
                wanted: TokenUse::Waker,
            }
            .into());
        }
        let mailbox = self.mailbox()?;
        self.waker = Some(token);
        Ok(Waker { mailbox })
    }

    /// The mailbox other threads' handles write to, made on first use.
    fn mailbox(&mut self) -> io::Result<sync::Arc<Mailbox>> {
        if let Some(m) = &self.mailbox {
            return Ok(m.clone());
        }
        let m = sync::Arc::new(Mailbox::new(self.backend.waker()?));
        self.mailbox = Some(m.clone());
        Ok(m)
    }

    /// What `token` names besides a descriptor: the waker, a user event or
    /// a pending timer.
    fn token_use_other_than_descriptor(&self, token: Token) -> Option<TokenUse> {
        if self.waker == Some(token) {
            Some(TokenUse::Waker)
        } else if !self.users.is_empty() && self.users.contains_key(&token) {
            Some(TokenUse::User)
        } else if self.timer_keys.contains_key(&token) {
            Some(TokenUse::Timer)
        } else {
            None
        }
    }

    /// A user event, in the manner of kqueue's `EVFILT_USER`: the returned
    /// [`UserTrigger`] (`Send + Sync + Clone`) makes the poller report
    /// `Event { token, user: true }`. Triggers before a wait collects them
    /// coalesce into one event.
    ///
    /// # Errors
    /// [`Error::TokenTaken`] (as `AlreadyExists`) if `token` names a
    /// descriptor, the waker, a timer or another user event; otherwise what
    /// the backend reports when setting up its wake mechanism.
    pub fn add_user(&mut self, token: Token) -> io::Result<UserTrigger> {
        self.claim(token, TokenUse::User)?;
        let mailbox = self.mailbox()?;
        let user = sync::Arc::new(UserShared::new(token));
        self.users.insert(token, user.clone());
        Ok(UserTrigger { user, mailbox })
    }

    /// Removes a user event: its triggers fail with `NotFound` from now on,
    /// and a trigger not yet reported is dropped.
    ///
    /// # Errors
    /// [`Error::UnknownToken`] if no user event has this token.
    pub fn remove_user(&mut self, token: Token) -> Result<(), Error> {
        let Some(user) = self.users.remove(&token) else {
            return Err(Error::UnknownToken { token });
        };
        user.removed.store(true, sync::Ordering::Release);
        self.overflow.retain(|ev| !(ev.user && ev.token == token));
        Ok(())
    }

    /// A [`Registry`]: `declare_interest` and `forget` for other threads,
    /// applied by the waiting thread in issue order.
    ///
    /// # Errors
    /// What the backend reports when setting up its wake mechanism.
    pub fn registry(&mut self) -> io::Result<Registry> {
        Ok(Registry {
            mailbox: self.mailbox()?,
        })
    }

    /// The poller's monotonic clock: time since the backend was created.
    /// Timer deadlines are on this clock. The testkit's model backend keeps
    /// virtual time here, advanced only by its waits.
    pub fn now(&self) -> Duration {
        self.backend.now()
    }

    /// Sets a one-shot timer: the first [`get_next_event`] that runs at or
    /// after `deadline` (on [`now`](Poller::now)'s clock) reports
    /// [`Event::timer_expired`]`(token)`, after the descriptor events of the
    /// same call. A deadline in the past fires at the next call.
    ///
    /// Precision: never early; at most 1 ms late beyond the wait's own
    /// wake-up latency (deadlines are rounded up to whole milliseconds; see
    /// `SEMANTICS.md`, "Timers"). Waits are shortened to end at the next
    /// deadline. Insert and cancel are O(1) (a hierarchical timing wheel).
    ///
    /// [`get_next_event`]: Poller::get_next_event
    ///
    /// # Errors
    /// [`Error::TokenTaken`] if `token` names a descriptor, the waker or a
    /// pending timer (use [`reset_timer`](Poller::reset_timer) to move a
    /// pending one). Nothing changes then.
    pub fn add_timer(&mut self, token: Token, deadline: Duration) -> Result<(), Error> {
        self.claim(token, TokenUse::Timer)?;
        let key = self.timers.insert(deadline_ms(deadline), token);
        self.timer_keys.insert(token, key);
        Ok(())
    }

    /// [`add_timer`](Poller::add_timer) at `now() + delay`.
    ///
    /// # Errors
    /// As [`add_timer`](Poller::add_timer).
    pub fn add_timer_after(&mut self, token: Token, delay: Duration) -> Result<(), Error> {
        let deadline = self.now().saturating_add(delay);
        self.add_timer(token, deadline)
    }

    /// Moves a pending timer to a new deadline (O(1)).
    ///
    /// # Errors
    /// [`Error::UnknownToken`] if no timer with this token is pending.
    #[inline]
    pub fn reset_timer(&mut self, token: Token, deadline: Duration) -> Result<(), Error> {
        let Some(&key) = self.timer_keys.get(&token) else {
            return Err(Error::UnknownToken { token });
        };
        let moved = self.timers.reset(key, deadline_ms(deadline));
        debug_assert!(moved, "a key in timer_keys is pending in the wheel");
        Ok(())
    }

    /// Cancels a pending timer (O(1)). A timer that expired but whose event
    /// was not returned yet (the `Events` buffer was full) is cancelled too:
    /// its event is dropped.
    ///
    /// # Errors
    /// [`Error::UnknownToken`] if no timer with this token is pending.
    pub fn cancel_timer(&mut self, token: Token) -> Result<(), Error> {
        if let Some(key) = self.timer_keys.remove(&token) {
            let cancelled = self.timers.cancel(key);
            debug_assert!(cancelled.is_some(), "a key in timer_keys is pending");
            return Ok(());
        }
        let before = self.overflow.len();
        self.overflow.retain(|ev| !(ev.timer && ev.token == token));
        if self.overflow.len() == before {
            return Err(Error::UnknownToken { token });
        }
        Ok(())
    }

    /// The number of pending timers.
    pub fn pending_timers(&self) -> usize {
        self.timer_keys.len()
    }

    /// Every live registration, in no particular order.
    pub fn registrations(&self) -> impl Iterator<Item = Registration> + '_ {
        self.by_token.values().filter_map(|&idx| {
            let s = &self.slots[idx as usize];
            (!s.source).then_some(Registration {
                token: s.token,
                fd: s.fd,
                readable: s.interest.is_readable(),
                writable: s.interest.is_writable(),
                mode: s.mode.into(),
            })
        })
    }

    /// Checks that `token` is free for `wanted`.
    fn claim(&self, token: Token, wanted: TokenUse) -> Result<(), Error> {
        let holder = match self.by_token.get(&token) {
            Some(&idx) => Some(self.slot_use(idx)),
            None => self.token_use_other_than_descriptor(token),
        };
        match holder {
            Some(holder) => Err(Error::TokenTaken {
                token,
                holder,
                wanted,
            }),
            None => Ok(()),
        }
    }

    /// The source a live slot holds (its backend id and what it watches),
    /// if it is one.
    fn source_of(&self, idx: u32) -> Option<(u64, SourceSpec)> {
        if self.slots[idx as usize].source {
            self.sources.get(&idx).copied()
        } else {
            None
        }
    }

    /// What the registration in slot `idx` is, for error messages.
    fn slot_use(&self, idx: u32) -> TokenUse {
        match self.source_of(idx) {
            Some((_, SourceSpec::Signal(sig))) => TokenUse::Signal(sig),
            Some((_, SourceSpec::Process(pid))) => TokenUse::Process(pid),
            None => TokenUse::Descriptor(self.slots[idx as usize].fd),
        }
    }

    /// Watches deliveries of `signal`: each wait after one or more arrive
    /// reports `Event { token, signal: Some(signal), count, .. }`, `count`
    /// being the deliveries since the last report (standard signals merge
    /// while pending, real-time ones queue). Linux: a signalfd; the signal
    /// is **blocked in the calling thread** (threads it spawns later inherit
    /// that), and [`remove_signal`](Poller::remove_signal) restores the old
    /// mask. See `SEMANTICS.md`, "Signals", for threads that already exist.
    ///
    /// # Errors
    /// - `AlreadyExists`: `signal` is watched under another token
    ///   ([`Error::SignalInUse`]), or `token` is in use
    ///   ([`Error::TokenTaken`]);
    /// - `InvalidInput`: `SIGKILL`, `SIGSTOP`, or a number out of range;
    /// - `Unsupported`: a backend without sources;
    /// - what opening the source reports (`EMFILE`, …).
    ///
    /// Each message names the token and the signal. Nothing changes then.
    pub fn add_signal(&mut self, token: Token, signal: i32) -> io::Result<()> {
        if let Some(&holder) = self.signals.get(&signal) {
            return Err(Error::SignalInUse {
                token,
                signal,
                holder,
            }
            .into());
        }
        self.add_source(token, SourceSpec::Signal(signal), TokenUse::Signal(signal))?;
        self.signals.insert(signal, token);
        Ok(())
    }

    /// Stops watching the signal watched under `token`, and restores the
    /// calling thread's mask as it was before [`add_signal`](Poller::add_signal).
    /// Deliveries not yet reported are dropped.
    ///
    /// # Errors
    /// [`Error::UnknownToken`] if `token` watches no signal.
    pub fn remove_signal(&mut self, token: Token) -> Result<(), Error> {
        self.remove_source(token, |spec| matches!(spec, SourceSpec::Signal(_)))
    }

    /// Watches the exit of process `pid`: the first wait after it exits
    /// reports `Event { token, exit: Some(status), .. }` once, and the
    /// watch ends by itself (the token is free again). Linux: a pidfd
    /// (Linux 5.3+). **Nothing is reaped**: the status is read with
    /// `waitid(…, WNOWAIT)`, so the parent still reaps its child (for
    /// example with `std::process::Child::wait`); for a process that is not
    /// our child the status is [`ExitStatus::Unknown`](crate::ExitStatus).
    ///
    /// # Errors
    /// - `AlreadyExists`: `token` is in use ([`Error::TokenTaken`]);
    /// - `NotFound`: no process `pid`;
    /// - `Unsupported`: a kernel without pidfd (`ENOSYS`) or a backend
    ///   without sources;
    /// - what opening the source reports.
    pub fn add_process(&mut self, token: Token, pid: i32) -> io::Result<()> {
        self.add_source(token, SourceSpec::Process(pid), TokenUse::Process(pid))
    }

    /// Stops watching the process watched under `token` (before it exited).
    ///
    /// # Errors
    /// [`Error::UnknownToken`] if `token` watches no process.
    pub fn remove_process(&mut self, token: Token) -> Result<(), Error> {
        self.remove_source(token, |spec| matches!(spec, SourceSpec::Process(_)))
    }

    fn add_source(&mut self, token: Token, spec: SourceSpec, wanted: TokenUse) -> io::Result<()> {
        self.claim(token, wanted)?;
        let opened = self
            .backend
            .open_source(spec)
            .map_err(|e| io::Error::new(e.kind(), format!("{token}: {wanted}: {e}")))?;
        if let Err(e) = self.declare_interest(opened.fd, token, Interest::READABLE, Mode::Level) {
            self.backend.close_source(opened.id);
            return Err(e.into());
        }
        let idx = self.by_token[&token];
        self.slots[idx as usize].source = true;
        self.sources.insert(idx, (opened.id, spec));
        Ok(())
    }

    fn remove_source(
        &mut self,
        token: Token,
        is_kind: impl Fn(SourceSpec) -> bool,
    ) -> Result<(), Error> {
        let ok = self
            .by_token
            .get(&token)
            .and_then(|&idx| self.source_of(idx))
            .is_some_and(|(_, spec)| is_kind(spec));
        if !ok {
            return Err(Error::UnknownToken { token });
        }
        self.forget(token)
    }

    /// Syncs the interest set with the kernel in one batch, waits up to
    /// `timeout` (`None`: until something happens), and fills `events` with
    /// what happened. Returns the number of events.
    ///
    /// A wait interrupted by a signal (`EINTR`) is resumed with the time
    /// that remains. `Ok(0)` means the timeout passed.
    ///
    /// # Errors
    /// A failure of the wait itself, as the backend reports it. Changes of
    /// the batch are not lost then: refusals become error events, delivered
    /// by the next call.
    pub fn get_next_event(
        &mut self,
        events: &mut Events,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        events.list.clear();
        // Registry operations issued before this call apply before its
        // batch (the happens-before rule of `Registry::forget`).
        self.collect_mailbox(events);
        while events.list.len() < events.cap {
            match self.overflow.pop_front() {
                Some(ev) => events.list.push(ev),
                None => break,
            }
        }
        let room = events.cap - events.list.len();
        if room == 0 {
            return Ok(events.list.len());
        }
        let timeout = if events.list.is_empty() && !self.tracked_pending() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        self.build_batch();
        // The clock is read only when something depends on it: a pending
        // timer (the wheel holds exactly the timers of `timer_keys`), or a
        // timeout to wait out across wake-ups that report nothing. A poll
        // (zero timeout) or an infinite wait without timers reads it never
        // (two `clock_gettime` a wait, ~180 instructions).
        let clock = !self.timer_keys.is_empty() || timeout.is_some_and(|t| !t.is_zero());
        let read_clock = |b: &B| if clock { b.now() } else { Duration::ZERO };
        let start = read_clock(&self.backend);
        let deadline = timeout.map(|t| start.saturating_add(t));
        let mut timeout = self.until_next_timer(start, timeout);
        let mut first = true;
        let mut refills = 0;
        loop {
            self.out.clear();
            if !first && (!self.dirty.is_empty() || !self.removals.is_empty()) {
                // Registry operations applied during the wait.
                self.build_batch();
            } else if !first {
                self.changes.clear();
            }
            first = false;
            let batch: &[Change] = &self.changes;
            let result = self
                .backend
                .submit_and_wait(batch, &mut self.out, room, timeout);
            // Their watches are gone from the backend now.
            for id in self.closing_now.drain(..) {
                self.backend.close_source(id);
            }
            self.take_rejections(events);
            let interrupted = matches!(&result, Err(e) if e.kind() == io::ErrorKind::Interrupted);
            match result {
                Ok(()) => {}
                Err(_) if interrupted => {}
                Err(e) => {
                    // Keep what was collected (rejections) for the next call.
                    for ev in events.list.drain(..).rev() {
                        self.overflow.push_front(ev);
                    }
                    return Err(e);
                }
            }
            // Before readiness: a forget from another thread changes the
            // generation, so readiness for it is dropped below.
            self.collect_mailbox(events);
            self.take_readiness(events);
            let now = read_clock(&self.backend);
            self.expire_timers(now, events);
            if !events.list.is_empty() {
                break;
            }
            // Nothing to report: the wait was interrupted, returned early
            // (at a timer's coarse deadline), or what the kernel reported was
            // filtered out (an edge for a disarmed direction). Keep waiting
            // for the rest of the time.
            // A backend that filled its quota with reports the driver
            // dropped (the waker's own wake-up, a disarmed edge) may hold
            // more readiness: look again without blocking, a few times.
            // An interrupted wait has not looked yet: even when its time is
            // up it looks once more, without blocking.
            let full = self.out.events.len() >= room || interrupted;
            if full && refills < 4 {
                refills += 1;
                timeout = Some(Duration::ZERO);
                continue;
            }
            let rest = match deadline {
                Some(d) if now >= d => break,
                Some(d) => Some(d - now),
                None => None,
            };
            timeout = self.until_next_timer(now, rest);
        }
        Ok(events.list.len())
    }

    /// Reads the mailbox: the waker's event, user events, and registry
    /// operations (applied in issue order; a refusal becomes an error event
    /// for its token).
    fn collect_mailbox(&mut self, events: &mut Events) {
        let Some(mailbox) = &self.mailbox else {
            return;
        };
        let mut got = std::mem::take(&mut self.collected);
        mailbox.collect(&mut got);
        // One waker event, and one event per user, per call: a wake
        // collected at the start of the call and another after its wait
        // coalesce.
        if got.woken
            && let Some(token) = self.waker
            && !events.list.iter().any(|e| e.token == token && e.readable)
        {
            let mut ev = Event::new(token);
            ev.readable = true;
            self.push(events, ev);
        }
        for user in got.users.drain(..) {
            let current = self
                .users
                .get(&user.token)
                .is_some_and(|u| sync::Arc::ptr_eq(u, &user));
            if current && !events.list.iter().any(|e| e.token == user.token && e.user) {
                self.push(events, Event::user_triggered(user.token));
            }
        }
        for op in got.ops.drain(..) {
            let (token, result) = match op {
                Op::Declare {
                    fd,
                    token,
                    interest,
                    mode,
                } => (token, self.declare_interest(fd, token, interest, mode)),
                Op::Forget(token) => {
                    let r = self.forget(token);
                    // Events this call collected before the forget applied.
                    events
                        .list
                        .retain(|ev| ev.token != token || ev.timer || ev.user);
                    (token, r)
                }
            };
            if let Err(e) = result {
                let errno = match e.kind() {
                    io::ErrorKind::AlreadyExists => EEXIST,
                    io::ErrorKind::NotFound => ENOENT,
                    _ => EINVAL,
                };
                self.push(events, Event::rejected(token, errno));
            }
        }
        self.collected = got;
    }

    /// `timeout`, shortened to end at the next timer deadline.
    fn until_next_timer(&self, now: Duration, timeout: Option<Duration>) -> Option<Duration> {
        let Some(next) = self.timers.next_deadline() else {
            return timeout;
        };
        let until = Duration::from_millis(next).saturating_sub(now);
        Some(timeout.map_or(until, |t| t.min(until)))
    }

    /// Moves the wheel to `now` and reports every timer due by then, in
    /// deadline order (ties: the order they were set in).
    fn expire_timers(&mut self, now: Duration, events: &mut Events) {
        if self.timer_keys.is_empty() {
            return;
        }
        let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        if now_ms < self.timers.now() {
            return;
        }
        let mut expired = std::mem::take(&mut self.expired);
        self.timers.advance_into(now_ms, &mut expired);
        for (_, token) in expired.drain(..) {
            self.timer_keys.remove(&token);
            self.push(events, Event::timer_expired(token));
        }
        self.expired = expired;
    }

    fn mark_dirty(&mut self, idx: u32, key: Key) {
        let slot = &mut self.slots[idx as usize];
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(key);
        }
    }

    /// What the backend should watch for `slot`, given the capabilities.
    fn desired(caps: Capabilities, slot: &Slot) -> Option<Watch> {
        if slot.failed {
            return None;
        }
        if slot.tracked && caps.native_edge {
            return Some(Watch {
                interest: Interest::BOTH,
                trigger: Trigger::Edge,
            });
        }
        match slot.mode {
            Mode::Level => Some(Watch {
                interest: slot.interest,
                trigger: Trigger::Level,
            }),
            Mode::Edge if caps.native_edge => Some(Watch {
                interest: slot.interest,
                trigger: Trigger::Edge,
            }),
            Mode::Edge => from_bits(bits(slot.interest) & slot.armed).map(|interest| Watch {
                interest,
                trigger: Trigger::Level,
            }),
            // A native oneshot registration that fired is disabled in the
            // kernel already: leave it as the kernel has it.
            Mode::Oneshot if caps.native_oneshot => {
                if slot.enabled {
                    Some(Watch {
                        interest: slot.interest,
                        trigger: Trigger::Oneshot,
                    })
                } else {
                    slot.kernel
                }
            }
            Mode::Oneshot => slot.enabled.then_some(Watch {
                interest: slot.interest,
                trigger: Trigger::Level,
            }),
        }
    }

    /// Computes the net change of every dirty registration: removals first,
    /// then one change per key whose desired watch differs from the
    /// kernel's (or that must be re-armed).
    fn build_batch(&mut self) {
        self.changes.clear();
        self.closing_now.append(&mut self.closing);
        self.changes.append(&mut self.removals);
        for key in self.dirty.drain(..) {
            let slot = &mut self.slots[key.index() as usize];
            if !slot.live || slot.generation != key.generation() {
                continue;
            }
            slot.dirty = false;
            let want = Self::desired(self.caps, slot);
            let rearm = slot.rearm && want.is_some();
            slot.rearm = false;
            if want != slot.kernel || rearm {
                self.changes.push(Change {
                    fd: slot.fd,
                    key,
                    old: slot.kernel,
                    new: want,
                    rearm,
                });
                slot.kernel = want;
            }
        }
    }

    fn live_slot(&mut self, key: Key) -> Option<u32> {
        let idx = key.index();
        let slot = self.slots.get(idx as usize)?;
        (slot.live && slot.generation == key.generation()).then_some(idx)
    }

    fn push(&mut self, events: &mut Events, ev: Event) {
        if events.list.len() < events.cap {
            events.list.push(ev);
        } else {
            self.overflow.push_back(ev);
        }
    }

    fn take_rejections(&mut self, events: &mut Events) {
        for i in 0..self.out.rejected.len() {
            let rej = self.out.rejected[i];
            let Some(idx) = self.live_slot(rej.key) else {
                continue;
            };
            // A refused change is not in effect: the kernel still holds what
            // it held before (a refused MOD leaves the old watch), which the
            // next batch removes, as the registration is silent until
            // declared again.
            let old = self
                .changes
                .iter()
                .find(|c| c.key == rej.key)
                .and_then(|c| c.old);
            let slot = &mut self.slots[idx as usize];
            slot.failed = true;
            slot.kernel = old;
            // The old watch's trigger state is the kernel's and unknown (an
            // edge it reported is consumed there): declaring the same watch
            // again must re-arm it, as a declare does, rather than send
            // nothing.
            slot.rearm = old.is_some();
            let ev = Event::rejected(slot.token, rej.errno);
            self.push(events, ev);
            if old.is_some() {
                self.mark_dirty(idx, rej.key);
            }
        }
        self.out.rejected.clear();
    }

    fn take_readiness(&mut self, events: &mut Events) {
        let caps = self.caps;
        // Taken for the loop (and put back, keeping its capacity): the
        // entries are read in place, with no bounds check per entry.
        let raws = std::mem::take(&mut self.out.events);
        for &raw in &raws {
            if raw.key == Key::WAKER {
                // The mailbox was read right after the wait.
                continue;
            }
            let Some(idx) = self.live_slot(raw.key) else {
                continue;
            };
            let slot = &mut self.slots[idx as usize];
            if slot.failed {
                continue;
            }
            if slot.source {
                self.source_hits.push(idx);
                continue;
            }
            if slot.tracked && caps.native_edge {
                let ready = raw.ready;
                if ready.intersects(Ready::IN | Ready::RDHUP | Ready::HUP | Ready::ERR | Ready::PRI)
                {
                    slot.known |= R;
                }
                if ready.intersects(Ready::OUT | Ready::HUP | Ready::ERR) {
                    slot.known |= W;
                }
                slot.known_mask |= ready;
                self.queue_tracked(idx);
                continue;
            }
            let dirs = match slot.mode {
                Mode::Level => Some(slot.interest),
                Mode::Edge => from_bits(bits(slot.interest) & slot.armed),
                Mode::Oneshot => slot.enabled.then_some(slot.interest),
            };
            let Some(dirs) = dirs else { continue };
            let Some(ev) = Event::from_ready(slot.token, dirs, raw.ready) else {
                continue;
            };
            let emulated = match slot.mode {
                Mode::Level => false,
                Mode::Edge => {
                    slot.armed &= !bits(ev.interest().expect("an event reports a direction"));
                    !caps.native_edge
                }
                Mode::Oneshot => {
                    slot.enabled = false;
                    !caps.native_oneshot
                }
            };
            if emulated {
                self.mark_dirty(idx, raw.key);
            }
            self.push(events, ev);
        }
        self.out.events = raws;
        self.read_sources(events);
        self.report_tracked(events);
    }

    /// Queues a tracked registration for the next scan of known readiness.
    fn queue_tracked(&mut self, idx: u32) {
        let slot = &mut self.slots[idx as usize];
        if !slot.queued {
            slot.queued = true;
            self.tracked_ready.push(idx);
        }
    }

    /// The directions a tracked registration would report now.
    fn tracked_dirs(slot: &Slot) -> u8 {
        if !slot.live || slot.failed {
            return 0;
        }
        let want = bits(slot.interest) & slot.known;
        match slot.mode {
            Mode::Level => want,
            Mode::Edge => want & slot.armed,
            Mode::Oneshot if slot.enabled => want,
            Mode::Oneshot => 0,
        }
    }

    /// Whether some tracked registration has something to report.
    fn tracked_pending(&self) -> bool {
        self.tracked_ready
            .iter()
            .any(|&idx| Self::tracked_dirs(&self.slots[idx as usize]) != 0)
    }

    /// Reports tracked registrations from the readiness user space knows,
    /// by their modes' rules, without asking the kernel.
    fn report_tracked(&mut self, events: &mut Events) {
        // The list holds the registrations that may have something to
        // report; one with nothing (known readiness outside its interest, a
        // consumed edge, a fired oneshot) leaves it, so a wait costs the
        // number of reportable registrations, not of known-ready ones (a
        // socket is known writable for as long as it does not block).
        // Whatever makes it reportable again queues it again: a kernel
        // report (`take_readiness`) or a declare.
        let mut list = std::mem::take(&mut self.tracked_ready);
        list.retain(|&idx| {
            let slot = &mut self.slots[idx as usize];
            let dirs = if slot.tracked {
                Self::tracked_dirs(slot)
            } else {
                0
            };
            let Some(ev) =
                from_bits(dirs).and_then(|d| Event::from_ready(slot.token, d, slot.known_mask))
            else {
                slot.queued = false;
                return false;
            };
            let keep = match slot.mode {
                Mode::Level => true,
                Mode::Edge => {
                    slot.armed &= !bits(ev.interest().expect("a direction"));
                    Self::tracked_dirs(slot) != 0
                }
                Mode::Oneshot => {
                    slot.enabled = false;
                    false
                }
            };
            if !keep {
                slot.queued = false;
            }
            if events.list.len() < events.cap {
                events.list.push(ev);
            } else {
                self.overflow.push_back(ev);
            }
            keep
        });
        self.tracked_ready = list;
    }

    /// Reads the sources that polled readable: a signal's deliveries, a
    /// process's exit (after which its watch ends by itself).
    fn read_sources(&mut self, events: &mut Events) {
        let mut hits = std::mem::take(&mut self.source_hits);
        for idx in hits.drain(..) {
            let (Some((id, spec)), token) = (self.source_of(idx), self.slots[idx as usize].token)
            else {
                continue;
            };
            match self.backend.read_source(id) {
                Ok(SourceReport::Nothing) => {}
                Ok(SourceReport::Signal { count }) => {
                    let sig = match spec {
                        SourceSpec::Signal(sig) => sig,
                        SourceSpec::Process(_) => continue,
                    };
                    self.push(events, Event::signal_delivered(token, sig, count));
                }
                Ok(SourceReport::Exit(status)) => {
                    self.push(events, Event::process_exited(token, status));
                    let forgotten = self.forget(token);
                    debug_assert!(forgotten.is_ok(), "a live source has a live token");
                }
                Err(e) => {
                    let errno = e.raw_os_error().unwrap_or(EIO);
                    self.push(events, Event::rejected(token, errno));
                }
            }
        }
        self.source_hits = hits;
    }
}

impl<B: Backend> Drop for Poller<B> {
    fn drop(&mut self) {
        if let Some(m) = &self.mailbox {
            m.close();
        }
        // Close every source (restoring signal masks); the backend drops
        // its watches with itself.
        let live: Vec<u64> = self
            .by_token
            .values()
            .filter_map(|&idx| self.source_of(idx).map(|(id, _)| id))
            .collect();
        for id in live
            .into_iter()
            .chain(self.closing.drain(..))
            .chain(self.closing_now.drain(..))
        {
            self.backend.close_source(id);
        }
    }
}

/// A deadline in whole milliseconds on the wheel, rounded up so that a
/// timer never fires early.
const ENOENT: i32 = 2;
const EIO: i32 = 5;
const EEXIST: i32 = 17;
const EINVAL: i32 = 22;

#[inline]
fn deadline_ms(deadline: Duration) -> u64 {
    // ⌈ns / 10⁶⌉ without 128-bit division: whole seconds are whole
    // milliseconds, so only the sub-second part rounds.
    deadline
        .as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(deadline.subsec_nanos().div_ceil(1_000_000)))
}

#[cfg(test)]
mod tests {
    use super::deadline_ms;
    use proptest::prelude::*;
    use std::time::Duration;

    proptest! {
        /// Deadlines round up to whole milliseconds, exactly as
        /// `⌈nanoseconds / 10⁶⌉`, saturating at `u64::MAX`.
        #[test]
        fn deadline_rounds_up_to_the_millisecond(secs in prop_oneof![0u64..10_000, any::<u64>()],
                                                 nanos in prop_oneof![0u32..3, 999_999u32..1_000_002, 0u32..1_000_000_000]) {
            let d = Duration::new(secs, nanos);
            let want = u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
            prop_assert_eq!(deadline_ms(d), want);
        }
    }
}
