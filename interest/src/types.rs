//! The vocabulary: tokens, interests, modes, readiness masks and events.

use std::fmt;

use crate::backend::ExitStatus;
use std::num::NonZeroU8;

/// The caller's name for a registration; it comes back in every [`Event`].
///
/// Tokens are chosen by the program, as in mio. A token is unique among the
/// live registrations (descriptors, the waker) of one [`Poller`](crate::Poller).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub usize);

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "token {}", self.0)
    }
}

const R: u8 = 0b01;
const W: u8 = 0b10;

/// What a program wants to hear about: readable, writable, or both.
///
/// Never empty by construction: the only values are [`Interest::READABLE`],
/// [`Interest::WRITABLE`] and their union [`Interest::BOTH`].
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
pub struct Interest(NonZeroU8);

static_assertions::assert_eq_size!(Interest, Option<Interest>, u8);

impl Interest {
    /// Readable: a read would not block (data, end of file or an error is there).
    pub const READABLE: Interest = Interest(NonZeroU8::new(R).unwrap());
    /// Writable: a write would not block (space, or an error is there).
    pub const WRITABLE: Interest = Interest(NonZeroU8::new(W).unwrap());
    /// Both directions.
    pub const BOTH: Interest = Interest(NonZeroU8::new(R | W).unwrap());

    /// The union of two interests.
    #[must_use]
    pub const fn add(self, other: Interest) -> Interest {
        Interest(NonZeroU8::new(self.0.get() | other.0.get()).unwrap())
    }

    /// `self` without `other`, or `None` when nothing is left.
    #[must_use]
    pub const fn remove(self, other: Interest) -> Option<Interest> {
        match NonZeroU8::new(self.0.get() & !other.0.get()) {
            Some(v) => Some(Interest(v)),
            None => None,
        }
    }

    /// The common part of two interests, or `None` when they share nothing.
    #[must_use]
    pub const fn intersect(self, other: Interest) -> Option<Interest> {
        match NonZeroU8::new(self.0.get() & other.0.get()) {
            Some(v) => Some(Interest(v)),
            None => None,
        }
    }

    /// Whether the readable direction is included.
    pub const fn is_readable(self) -> bool {
        self.0.get() & R != 0
    }

    /// Whether the writable direction is included.
    pub const fn is_writable(self) -> bool {
        self.0.get() & W != 0
    }

    /// Builds an interest from two flags; `None` when both are false.
    pub const fn from_flags(readable: bool, writable: bool) -> Option<Interest> {
        let bits = (if readable { R } else { 0 }) | (if writable { W } else { 0 });
        match NonZeroU8::new(bits) {
            Some(v) => Some(Interest(v)),
            None => None,
        }
    }
}

impl fmt::Debug for Interest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.is_readable(), self.is_writable()) {
            (true, true) => f.write_str("READABLE|WRITABLE"),
            (true, false) => f.write_str("READABLE"),
            _ => f.write_str("WRITABLE"),
        }
    }
}

impl std::ops::BitOr for Interest {
    type Output = Interest;
    fn bitor(self, rhs: Interest) -> Interest {
        self.add(rhs)
    }
}

/// How readiness is reported for a registration. The semantics are the
/// driver's, identical on every backend; see `SEMANTICS.md`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Reported on every wait while the descriptor is ready.
    Level,
    /// Reported once per direction, then disarmed until the program reports
    /// `WouldBlock` for that direction ([`Poller::would_block`](crate::Poller::would_block))
    /// or declares the registration again.
    Edge,
    /// Reported once, then the whole registration is disabled until it is
    /// declared again.
    Oneshot,
}

/// A readiness mask, in Linux `poll(2)` bit values on every OS (backends
/// translate): what the kernel says about a descriptor at the time of a wait.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Default)]
pub struct Ready(pub u32);

impl Ready {
    /// No readiness.
    pub const EMPTY: Ready = Ready(0);
    /// Data (or end of file, for sockets) can be read: `POLLIN`.
    pub const IN: Ready = Ready(0x1);
    /// Priority data: `POLLPRI`. Ignored by the canonical mapping.
    pub const PRI: Ready = Ready(0x2);
    /// Space to write: `POLLOUT`.
    pub const OUT: Ready = Ready(0x4);
    /// An error is pending: `POLLERR`.
    pub const ERR: Ready = Ready(0x8);
    /// Hang-up: both directions are shut: `POLLHUP`.
    pub const HUP: Ready = Ready(0x10);
    /// The peer shut down its writing side: `POLLRDHUP`.
    pub const RDHUP: Ready = Ready(0x2000);
    /// Every bit above: `IN|PRI|OUT|ERR|HUP|RDHUP`.
    pub const KNOWN: Ready = Ready(
        Ready::IN.0 | Ready::PRI.0 | Ready::OUT.0 | Ready::ERR.0 | Ready::HUP.0 | Ready::RDHUP.0,
    );

    /// A Linux `poll(2)` `revents` or `epoll(7)` event mask (the two share
    /// their values, which are [`Ready`]'s) as a mask: the [`KNOWN`](Self::KNOWN)
    /// bits, others (`POLLNVAL`, `EPOLLET`, …) dropped. One `and`, where a
    /// bit-by-bit translation costs a test and a branch per bit on every
    /// event.
    pub const fn from_linux(bits: u32) -> Ready {
        Ready(bits & Ready::KNOWN.0)
    }

    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: Ready) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether all bits of `other` are set.
    pub const fn contains(self, other: Ready) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The bits a kernel reports for a watched interest: the interest's own
    /// bits (`IN|RDHUP` for readable, `OUT` for writable) plus `ERR|HUP`,
    /// which `poll(2)` and `epoll(7)` always report.
    pub const fn reportable(interest: Interest) -> Ready {
        let mut bits = Ready::ERR.0 | Ready::HUP.0;
        if interest.is_readable() {
            bits |= Ready::IN.0 | Ready::RDHUP.0;
        }
        if interest.is_writable() {
            bits |= Ready::OUT.0;
        }
        Ready(bits)
    }
}

impl std::ops::BitOr for Ready {
    type Output = Ready;
    fn bitor(self, rhs: Ready) -> Ready {
        Ready(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Ready {
    fn bitor_assign(&mut self, rhs: Ready) {
        self.0 |= rhs.0;
    }
}

impl std::ops::BitAnd for Ready {
    type Output = Ready;
    fn bitand(self, rhs: Ready) -> Ready {
        Ready(self.0 & rhs.0)
    }
}

impl fmt::Debug for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(Ready, &str); 6] = [
            (Ready::IN, "IN"),
            (Ready::PRI, "PRI"),
            (Ready::OUT, "OUT"),
            (Ready::ERR, "ERR"),
            (Ready::HUP, "HUP"),
            (Ready::RDHUP, "RDHUP"),
        ];
        let mut first = true;
        for (bit, name) in NAMES {
            if self.contains(bit) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        let rest = self.0 & !NAMES.iter().fold(0, |a, (b, _)| a | b.0);
        if rest != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{rest:#x}")?;
            first = false;
        }
        if first {
            f.write_str("EMPTY")?;
        }
        Ok(())
    }
}

/// One entry of the event stream.
///
/// The flags follow the canonical mapping of `SEMANTICS.md`:
/// `readable` and `writable` are only ever set for directions the
/// registration asked for, the `*_closed` flags qualify a reported direction,
/// and `error` is set when the kernel reports a pending error or a change
/// was rejected (then `errno` says why).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct Event {
    /// The registration's token.
    pub token: Token,
    /// A read would not block: data, end of file, or an error.
    pub readable: bool,
    /// A write would not block: space, a broken pipe, or an error.
    pub writable: bool,
    /// Readable, and the peer will send no more (`RDHUP` or `HUP`).
    pub read_closed: bool,
    /// Writable, and writes can no longer succeed (`HUP` or `ERR`).
    pub write_closed: bool,
    /// The descriptor has a pending error, or a change was rejected.
    pub error: bool,
    /// For a rejected change: the errno the kernel gave (e.g. `EBADF`).
    pub errno: Option<i32>,
    /// A timer set with [`Poller::add_timer`](crate::Poller::add_timer)
    /// expired. A timer event has no other flag set.
    pub timer: bool,
    /// A user event made with [`Poller::add_user`](crate::Poller::add_user)
    /// was triggered. A user event has no other flag set.
    pub user: bool,
    /// A signal watched with [`Poller::add_signal`](crate::Poller::add_signal)
    /// arrived: its number; `count` says how many times.
    pub signal: Option<i32>,
    /// For a signal event: the deliveries since the last report (at least
    /// 1). 0 otherwise.
    pub count: u32,
    /// A process watched with
    /// [`Poller::add_process`](crate::Poller::add_process) exited, and how.
    pub exit: Option<ExitStatus>,
}

impl Event {
    /// An event for `token` with no flag set; used by backends of the model
    /// and by tests to build expectations.
    pub const fn new(token: Token) -> Event {
        Event {
            token,
            readable: false,
            writable: false,
            read_closed: false,
            write_closed: false,
            error: false,
            errno: None,
            timer: false,
            user: false,
            signal: None,
            count: 0,
            exit: None,
        }
    }

    /// The event of `count` deliveries of `signal`.
    pub const fn signal_delivered(token: Token, signal: i32, count: u32) -> Event {
        let mut ev = Event::new(token);
        ev.signal = Some(signal);
        ev.count = count;
        ev
    }

    /// The event of a watched process's exit.
    pub const fn process_exited(token: Token, status: ExitStatus) -> Event {
        let mut ev = Event::new(token);
        ev.exit = Some(status);
        ev
    }

    /// The event of a triggered user event.
    pub const fn user_triggered(token: Token) -> Event {
        let mut ev = Event::new(token);
        ev.user = true;
        ev
    }

    /// The event of an expired timer.
    pub const fn timer_expired(token: Token) -> Event {
        let mut ev = Event::new(token);
        ev.timer = true;
        ev
    }

    /// The canonical mapping from a kernel readiness mask to an event, given
    /// the directions that may be reported (`dirs`). `None` when nothing in
    /// `dirs` is ready.
    pub fn from_ready(token: Token, dirs: Interest, ready: Ready) -> Option<Event> {
        let readable = dirs.is_readable()
            && ready.intersects(Ready::IN | Ready::RDHUP | Ready::HUP | Ready::ERR);
        let writable = dirs.is_writable() && ready.intersects(Ready::OUT | Ready::HUP | Ready::ERR);
        if !readable && !writable {
            return None;
        }
        Some(Event {
            token,
            readable,
            writable,
            read_closed: readable && ready.intersects(Ready::RDHUP | Ready::HUP),
            write_closed: writable && ready.intersects(Ready::HUP | Ready::ERR),
            error: ready.intersects(Ready::ERR),
            errno: None,
            timer: false,
            user: false,
            signal: None,
            count: 0,
            exit: None,
        })
    }

    /// An error event for a change the kernel rejected with `errno`.
    pub const fn rejected(token: Token, errno: i32) -> Event {
        let mut ev = Event::new(token);
        ev.error = true;
        ev.errno = Some(errno);
        ev
    }

    /// The directions this event reports, if any.
    pub const fn interest(&self) -> Option<Interest> {
        Interest::from_flags(self.readable, self.writable)
    }

    /// The rejected change's error as an `io::Error`, if this is one.
    pub fn io_error(&self) -> Option<std::io::Error> {
        self.errno.map(std::io::Error::from_raw_os_error)
    }
}

/// A buffer of events filled by [`Poller::get_next_event`](crate::Poller::get_next_event).
///
/// Its capacity bounds how many events one call returns; readiness that does
/// not fit stays pending and is returned by the next call, whatever the mode.
#[derive(Clone, Debug)]
pub struct Events {
    pub(crate) list: Vec<Event>,
    pub(crate) cap: usize,
}

impl Events {
    /// A buffer for at most `capacity` events per call (at least 1).
    pub fn with_capacity(capacity: usize) -> Events {
        let cap = capacity.max(1);
        Events {
            list: Vec::with_capacity(cap),
            cap,
        }
    }

    /// The most events one call returns.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The events of the last call.
    pub fn iter(&self) -> std::slice::Iter<'_, Event> {
        self.list.iter()
    }

    /// How many events the last call returned.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the last call returned no event.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Forgets the events of the last call.
    pub fn clear(&mut self) {
        self.list.clear();
    }

    /// The events as a slice.
    pub fn as_slice(&self) -> &[Event] {
        &self.list
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = &'a Event;
    type IntoIter = std::slice::Iter<'a, Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_linux_keeps_the_known_bits() {
        // POLLIN|POLLPRI|POLLOUT|POLLERR|POLLHUP|POLLRDHUP, as Linux numbers
        // them, plus POLLNVAL (0x20), POLLRDNORM (0x40) and EPOLLET.
        let linux = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x2000;
        assert_eq!(Ready::from_linux(linux), Ready::KNOWN);
        assert_eq!(
            Ready::from_linux(linux | 0x20 | 0x40 | 1 << 31),
            Ready::KNOWN
        );
        assert_eq!(Ready::from_linux(0x20), Ready::EMPTY);
        assert_eq!(Ready::from_linux(0x4 | 0x20), Ready::OUT);
        assert_eq!(
            Ready::KNOWN,
            Ready::IN | Ready::PRI | Ready::OUT | Ready::ERR | Ready::HUP | Ready::RDHUP
        );
    }

    #[test]
    fn interest_algebra() {
        assert_eq!(Interest::READABLE | Interest::WRITABLE, Interest::BOTH);
        assert_eq!(
            Interest::BOTH.remove(Interest::READABLE),
            Some(Interest::WRITABLE)
        );
        assert_eq!(Interest::READABLE.remove(Interest::READABLE), None);
        assert_eq!(Interest::READABLE.intersect(Interest::WRITABLE), None);
        assert_eq!(Interest::from_flags(false, false), None);
        assert!(Interest::BOTH.is_readable() && Interest::BOTH.is_writable());
        assert_eq!(format!("{:?}", Interest::BOTH), "READABLE|WRITABLE");
    }

    #[test]
    fn mapping_reports_only_asked_directions() {
        let t = Token(7);
        let all = Ready::IN | Ready::OUT | Ready::RDHUP;
        let ev = Event::from_ready(t, Interest::WRITABLE, all).unwrap();
        assert!(ev.writable && !ev.readable && !ev.read_closed && !ev.write_closed);
        assert_eq!(Event::from_ready(t, Interest::READABLE, Ready::OUT), None);
    }

    #[test]
    fn mapping_hangup_and_error_reach_either_direction() {
        let t = Token(1);
        let ev = Event::from_ready(t, Interest::WRITABLE, Ready::HUP).unwrap();
        assert!(ev.writable && ev.write_closed && !ev.read_closed && !ev.error);
        let ev = Event::from_ready(t, Interest::READABLE, Ready::HUP).unwrap();
        assert!(ev.readable && ev.read_closed && !ev.write_closed);
        let ev = Event::from_ready(t, Interest::BOTH, Ready::ERR).unwrap();
        assert!(ev.readable && ev.writable && ev.error && ev.write_closed);
        let ev = Event::from_ready(t, Interest::READABLE, Ready::IN | Ready::RDHUP).unwrap();
        assert!(ev.read_closed && !ev.error);
    }

    #[test]
    fn ready_debug_names_bits() {
        assert_eq!(format!("{:?}", Ready::IN | Ready::RDHUP), "IN|RDHUP");
        assert_eq!(format!("{:?}", Ready::EMPTY), "EMPTY");
        assert_eq!(format!("{:?}", Ready(0x40_0000)), "0x400000");
    }

    #[test]
    fn events_capacity_is_at_least_one() {
        assert_eq!(Events::with_capacity(0).capacity(), 1);
    }
}
