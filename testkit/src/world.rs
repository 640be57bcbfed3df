//! The descriptor world: pipes, Unix stream socket pairs, TCP loopback
//! connections and regular files, simulated ([`SimWorld`]) and real
//! ([`RealWorld`]), behind one interface ([`World`]).
//!
//! A scenario names descriptors by [`Handle`]: the index of the descriptor in
//! the world's list, in creation order. Both worlds perform the same
//! operations with the same results; the simulation additionally knows, for
//! every state it allows, the exact readiness mask Linux reports for each
//! descriptor. `tests/world_diff.rs` checks this claim against the kernel
//! with a differential property test.
//!
//! # The rules the simulation follows (Linux 6.x)
//!
//! **Pipe** (64 KiB, 16 page slots). Read end: `IN` while data is buffered,
//! `HUP` once the write end is closed. Write end: `OUT` while not full, `ERR`
//! once the read end is closed (the buffer stays, so a full pipe whose reader
//! closed reports `ERR` alone). Writing with the read end closed is `EPIPE`
//! (checked before fullness); reading an empty pipe is end-of-file once the
//! write end is closed. Reading the write end or writing the read end is
//! `EBADF`; `shutdown` is `ENOTSOCK`.
//!
//! **Unix stream socket pair**, end `A` with peer `B`: `ERR` while an error
//! is pending on `A`; `HUP` when `A` is shut down both ways; `IN|RDHUP` when
//! `A` is shut down for reading; `IN` while `A` has data; `OUT` while the
//! `A → B` direction is not full (the kernel looks only at `A`'s send-buffer
//! usage, so `OUT` stays after `A`'s own `shutdown(SHUT_WR)` and after `B`
//! closed). `shutdown_write(A)` shuts `A` for sending and `B` for receiving.
//! Closing `A` shuts `B` down both ways, sets `ECONNRESET` pending on `B` if
//! `A` had unread data, keeps the `A → B` data readable by `B`, and discards
//! the `B → A` data. A read returns data first; on an empty buffer a pending
//! error (returned once), then end-of-file after a receive shutdown, else
//! `WouldBlock`. A write after a send shutdown is `EPIPE`.
//!
//! **TCP connection over loopback** (`tcp_poll`, `tcp_recvmsg`,
//! `tcp_sendmsg`, `tcp_close`; segments arrive within the syscall that
//! sends them). Each end follows the TCP states (`ESTABLISHED`,
//! `FIN_WAIT1/2`, `CLOSE_WAIT`, `LAST_ACK`, `CLOSING`, `CLOSE`; `TIME_WAIT`
//! ends in `CLOSE` at once for the socket the descriptor names). Mask of end
//! `A`: `HUP` when shut down both ways or in `CLOSE`; `IN|RDHUP` after a
//! receive shutdown; `IN` while data is buffered; `OUT` after `A`'s own
//! send shutdown, else while `A → B` is not full; `ERR` while an error is
//! pending.
//! - `shutdown_write(A)` (and closing `A` without unread data) sends a FIN:
//!   `B` gets a receive shutdown (`IN|RDHUP`, *no* `HUP`, unlike a Unix
//!   pair); if `B` had sent its own FIN, both ends end in `CLOSE` (`HUP`).
//!   While `A → B` is full the FIN waits behind the data and arrives when
//!   `B` drains. `shutdown` in `CLOSE` is `ENOTCONN`.
//! - Closing `A` with data in its receive queue sends a reset instead; so
//!   does a closed `A` that data reaches (its peer wrote after the FIN).
//!   Nothing is sent from `CLOSE`. A reset moves `B` to `CLOSE`, shut down
//!   both ways, with `ECONNRESET` pending (`EPIPE` if `B` was in
//!   `CLOSE_WAIT`), discards `B`'s unsent data and keeps its received data.
//! - A read returns data first; on an empty queue end-of-file if the FIN
//!   came (even with an error pending), else the pending error (taken),
//!   else end-of-file after a receive shutdown, else `WouldBlock`.
//! - A write in `ESTABLISHED` or `CLOSE_WAIT` queues data (`EPIPE` after a
//!   send shutdown); in any other state it fails with the pending error
//!   (taken) or `EPIPE`.
//!
//! The real pair uses Reno (no pacing), `TCP_NODELAY` and fixed buffer
//! sizes, and its drain flushes a delayed ACK (`TCP_QUICKACK`) before it
//! trusts a `WouldBlock`: see [`RealWorld`].
//!
//! **Regular file**: always `IN|OUT`; reads and writes share one offset.
//!
//! **Fill and drain**: [`World::fill`] writes until `WouldBlock`, after which
//! the direction is *full* until a [`World::drain`] of the receiving end.
//! Partial reads of a full direction are not modelled (they free page slots
//! and socket memory in ways that depend on sizes the simulation does not
//! track), nor (TCP) writes into a full direction (a late ACK may free room
//! for one); [`SimWorld::allowed`] lists what stays exact.
//!
//! # Closed handles
//!
//! Every operation on a closed handle fails with `EBADF` without touching
//! anything; the real world checks its own record and makes no syscall, as
//! the number may already belong to a new descriptor.

use std::fmt;
use std::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign, Sub, SubAssign};

mod real;
mod sim;

pub use real::RealWorld;
pub use sim::SimWorld;

/// Linux `errno` values (x86_64 and the generic table) that the worlds
/// report.
pub mod errno {
    /// `EIO`: I/O error (also the fallback for errors without an errno).
    pub const EIO: i32 = 5;
    /// `EBADF`: bad descriptor (closed, or not open for this direction).
    pub const EBADF: i32 = 9;
    /// `EINVAL`: invalid argument (also: `fill` of a regular file, which
    /// neither world performs).
    pub const EINVAL: i32 = 22;
    /// `EPIPE`: nobody will ever read what is written.
    pub const EPIPE: i32 = 32;
    /// `ENOTCONN`: (TCP) `shutdown` of a connection that is already over.
    pub const ENOTCONN: i32 = 107;
    /// `ENOTSOCK`: a socket operation on a non-socket.
    pub const ENOTSOCK: i32 = 88;
    /// `ECONNRESET`: the peer closed with data unread.
    pub const ECONNRESET: i32 = 104;
}

/// A readiness mask with Linux `poll(2)` bit values.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mask(pub u32);

impl Mask {
    /// No bit set.
    pub const EMPTY: Mask = Mask(0);
    /// `POLLIN`: readable (data, end-of-file or a read shutdown).
    pub const IN: Mask = Mask(0x1);
    /// `POLLOUT`: writable.
    pub const OUT: Mask = Mask(0x4);
    /// `POLLERR`: error condition.
    pub const ERR: Mask = Mask(0x8);
    /// `POLLHUP`: hang-up.
    pub const HUP: Mask = Mask(0x10);
    /// `POLLRDHUP`: the stream peer shut down its writing half (Linux).
    pub const RDHUP: Mask = Mask(0x2000);

    const NAMES: [(Mask, &'static str); 5] = [
        (Mask::IN, "IN"),
        (Mask::OUT, "OUT"),
        (Mask::ERR, "ERR"),
        (Mask::HUP, "HUP"),
        (Mask::RDHUP, "RDHUP"),
    ];

    /// The mask of a `poll(2)` `revents` value.
    pub const fn from_revents(revents: i16) -> Mask {
        Mask(revents as u16 as u32)
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Mask) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether `self` and `other` share a bit.
    pub const fn intersects(self, other: Mask) -> bool {
        self.0 & other.0 != 0
    }

    /// The bits of either.
    pub const fn union(self, other: Mask) -> Mask {
        Mask(self.0 | other.0)
    }

    /// The bits of both.
    pub const fn intersection(self, other: Mask) -> Mask {
        Mask(self.0 & other.0)
    }

    /// The bits of `self` that are not in `other`.
    pub const fn difference(self, other: Mask) -> Mask {
        Mask(self.0 & !other.0)
    }

    /// Sets the bits of `other`.
    pub fn insert(&mut self, other: Mask) {
        self.0 |= other.0;
    }

    /// Clears the bits of `other`.
    pub fn remove(&mut self, other: Mask) {
        self.0 &= !other.0;
    }

    /// Sets (`on`) or clears the bits of `other`.
    pub fn set(&mut self, other: Mask, on: bool) {
        if on {
            self.insert(other);
        } else {
            self.remove(other);
        }
    }
}

impl fmt::Debug for Mask {
    /// Prints the bit names joined by `|` (`IN|RDHUP`), unknown bits in hex,
    /// and `0` for the empty mask.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("0");
        }
        let mut rest = *self;
        let mut first = true;
        for (bit, name) in Mask::NAMES {
            if rest.contains(bit) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
                rest.remove(bit);
            }
        }
        if !rest.is_empty() {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{:#x}", rest.0)?;
        }
        Ok(())
    }
}

impl BitOr for Mask {
    type Output = Mask;
    fn bitor(self, rhs: Mask) -> Mask {
        self.union(rhs)
    }
}

impl BitOrAssign for Mask {
    fn bitor_assign(&mut self, rhs: Mask) {
        self.insert(rhs);
    }
}

impl BitAnd for Mask {
    type Output = Mask;
    fn bitand(self, rhs: Mask) -> Mask {
        self.intersection(rhs)
    }
}

impl BitAndAssign for Mask {
    fn bitand_assign(&mut self, rhs: Mask) {
        self.0 &= rhs.0;
    }
}

impl Sub for Mask {
    type Output = Mask;
    fn sub(self, rhs: Mask) -> Mask {
        self.difference(rhs)
    }
}

impl SubAssign for Mask {
    fn sub_assign(&mut self, rhs: Mask) {
        self.remove(rhs);
    }
}

/// The scenario-level name of a descriptor: its index in the world's list of
/// descriptors, in creation order. Handles are never reused; descriptor
/// numbers are.
pub type Handle = usize;

/// What a handle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The read end of a pipe.
    PipeRead,
    /// The write end of a pipe.
    PipeWrite,
    /// One end of a Unix stream socket pair.
    Socket,
    /// One end of a TCP connection over loopback.
    Tcp,
    /// A regular file (anonymous, opened read-write).
    File,
}

/// What [`World::open`] and [`World::reuse`] create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NewKind {
    /// A pipe: two handles, read end then write end.
    Pipe,
    /// A Unix stream socket pair: two handles.
    Pair,
    /// A connected TCP pair over loopback (`127.0.0.1`), both ends
    /// non-blocking with `TCP_NODELAY`: two handles, the connecting end
    /// then the accepted end.
    Tcp,
    /// A regular file: one handle.
    File,
}

/// The result of one read or write (or of a fill).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoOutcome {
    /// That many bytes were transferred. (A successful fill is `Done(0)`.)
    Done(usize),
    /// A read found end-of-file.
    Eof,
    /// The call would block (`EAGAIN`).
    WouldBlock,
    /// The call failed with this `errno`.
    Err(i32),
}

/// The result of a drain: reads until `WouldBlock`, end-of-file or an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DrainOutcome {
    /// Whether any read returned data.
    pub got_data: bool,
    /// How the last read ended: [`IoOutcome::WouldBlock`],
    /// [`IoOutcome::Eof`] or [`IoOutcome::Err`].
    pub end: IoOutcome,
}

/// A set of descriptors and the operations a scenario performs on them.
///
/// All methods taking a [`Handle`] panic if the handle was never created.
/// Operations on a closed handle fail with `EBADF` (see the module docs).
pub trait World {
    /// Creates descriptors: `Pipe` → `[read, write]`, `Pair` → `[a, b]`,
    /// `Tcp` → `[connecting, accepted]`, `File` → `[f]`. Returns their new
    /// handles.
    fn open(&mut self, kind: NewKind) -> Vec<Handle>;

    /// Closes `h`'s descriptor and creates new ones; the **first** new handle
    /// has `h`'s descriptor number (really: `dup3` over it). Closing has the
    /// same effects as [`World::close`].
    ///
    /// # Panics
    /// If `h` is not open (a precondition).
    fn reuse(&mut self, h: Handle, kind: NewKind) -> Vec<Handle>;

    /// One `write(2)` (sockets: `send(2)` with `MSG_NOSIGNAL`) of `n` bytes.
    fn write(&mut self, h: Handle, n: usize) -> IoOutcome;

    /// One `read(2)` of up to `n` bytes.
    fn read(&mut self, h: Handle, n: usize) -> IoOutcome;

    /// Writes big chunks until `WouldBlock`; returns `Done(0)` when the
    /// direction is full (byte counts differ between worlds), or the error of
    /// the write that failed. A regular file is never filled: `Err(EINVAL)`.
    fn fill(&mut self, h: Handle) -> IoOutcome;

    /// Reads until `WouldBlock`, end-of-file or an error.
    fn drain(&mut self, h: Handle) -> DrainOutcome;

    /// `shutdown(SHUT_WR)`.
    ///
    /// # Errors
    /// The `errno`: `EBADF` (closed), `ENOTSOCK` (pipe or file).
    fn shutdown_write(&mut self, h: Handle) -> Result<(), i32>;

    /// Closes the descriptor; the handle is closed afterwards and its number
    /// may be given to a new descriptor.
    ///
    /// # Errors
    /// The `errno`: `EBADF` if already closed.
    fn close(&mut self, h: Handle) -> Result<(), i32>;

    /// The descriptor number (the simulation numbers its own, lowest free
    /// from 3). Still answers after close: the old number.
    fn raw_fd(&self, h: Handle) -> i32;

    /// Whether the handle is open.
    fn is_open(&self, h: Handle) -> bool;

    /// Sends `signal` to the calling thread only (real: `raise(3)`).
    /// Scenarios raise only signals a live source watches (blocked), or the
    /// signal's disposition would run.
    fn raise(&mut self, signal: i32);

    /// Starts a child process that exits at once with `code`; returns its
    /// index. (Real: `sh -c 'exit CODE'`, reaped when the world drops.)
    fn spawn(&mut self, code: i32) -> usize;

    /// The pid of child `child`.
    fn pid(&self, child: usize) -> i32;

    /// What the handle is.
    fn kind(&self, h: Handle) -> Kind;

    /// The current full readiness mask, `None` if closed. Real: `poll(2)`
    /// with events `IN|OUT|RDHUP` and a zero timeout.
    fn mask(&self, h: Handle) -> Option<Mask>;
}

/// One world operation, as data: for generators and differential tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// [`World::open`].
    Open(NewKind),
    /// [`World::reuse`].
    Reuse(Handle, NewKind),
    /// [`World::write`].
    Write(Handle, usize),
    /// [`World::read`].
    Read(Handle, usize),
    /// [`World::fill`].
    Fill(Handle),
    /// [`World::drain`].
    Drain(Handle),
    /// [`World::shutdown_write`].
    ShutdownWrite(Handle),
    /// [`World::close`].
    Close(Handle),
}

/// What [`apply`] returns: comparable between worlds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OpResult {
    /// Of `Open` and `Reuse`: the new handles.
    Handles(Vec<Handle>),
    /// Of `Write`, `Read` and `Fill`.
    Io(IoOutcome),
    /// Of `Drain`.
    Drain(DrainOutcome),
    /// Of `ShutdownWrite` and `Close`.
    Unit(Result<(), i32>),
}

impl OpResult {
    /// The new handles of an `Open` or `Reuse`; empty for other results.
    pub fn handles(&self) -> &[Handle] {
        match self {
            OpResult::Handles(h) => h,
            _ => &[],
        }
    }
}

/// Performs `op` on `world`.
pub fn apply(world: &mut dyn World, op: &Op) -> OpResult {
    match *op {
        Op::Open(k) => OpResult::Handles(world.open(k)),
        Op::Reuse(h, k) => OpResult::Handles(world.reuse(h, k)),
        Op::Write(h, n) => OpResult::Io(world.write(h, n)),
        Op::Read(h, n) => OpResult::Io(world.read(h, n)),
        Op::Fill(h) => OpResult::Io(world.fill(h)),
        Op::Drain(h) => OpResult::Drain(world.drain(h)),
        Op::ShutdownWrite(h) => OpResult::Unit(world.shutdown_write(h)),
        Op::Close(h) => OpResult::Unit(world.close(h)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_debug_and_ops() {
        assert_eq!(format!("{:?}", Mask::IN | Mask::RDHUP), "IN|RDHUP");
        assert_eq!(format!("{:?}", Mask::EMPTY), "0");
        assert_eq!(
            format!("{:?}", Mask::OUT | Mask::ERR | Mask::HUP | Mask(0x40)),
            "OUT|ERR|HUP|0x40"
        );
        let mut m = Mask::IN | Mask::OUT;
        assert!(m.contains(Mask::IN));
        assert!(!m.contains(Mask::IN | Mask::HUP));
        assert!(m.intersects(Mask::IN | Mask::HUP));
        m -= Mask::IN;
        assert_eq!(m, Mask::OUT);
        m &= Mask::IN;
        assert!(m.is_empty());
        m.set(Mask::HUP, true);
        assert_eq!(m - Mask::HUP, Mask::EMPTY);
        assert_eq!(
            Mask::from_revents(0x2011),
            Mask::IN | Mask::HUP | Mask::RDHUP
        );
        assert_eq!(Mask::from_revents(-1).0, 0xffff);
    }

    #[test]
    fn apply_and_handles() {
        let mut w = SimWorld::default();
        let r = apply(&mut w, &Op::Open(NewKind::Pipe));
        assert_eq!(r.handles(), &[0, 1]);
        let r = apply(&mut w, &Op::Write(1, 3));
        assert_eq!(r, OpResult::Io(IoOutcome::Done(3)));
        assert!(r.handles().is_empty());
    }
}
