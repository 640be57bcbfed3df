//! The simulated world: pure bookkeeping, no syscalls.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use evmux_interest::{ExitStatus, SourceReport, SourceSpec};

use super::errno::{EBADF, ECONNRESET, EINVAL, ENOTCONN, ENOTSOCK, EPIPE};
use super::{DrainOutcome, Handle, IoOutcome, Kind, Mask, NewKind, Op, World};

/// The largest write [`SimWorld::allowed`] permits.
pub(crate) const MAX_WRITE: usize = 512;
/// A write is allowed only while the receiving buffer holds at most this
/// many bytes...
pub(crate) const MAX_BUFFERED: usize = 4096;
/// ...and at most this many unread writes.
pub(crate) const MAX_UNREAD_WRITES: usize = 16;
/// The largest read [`SimWorld::allowed`] permits (only to bound buffers).
pub(crate) const MAX_READ: usize = 1 << 20;

/// The first descriptor number the simulation hands out.
const FIRST_FD: i32 = 3;

/// Data in one direction: the sizes of the unread writes (oldest first) and
/// whether a fill made the direction full.
#[derive(Clone, Debug, Default)]
struct Buf {
    /// Unread writes, oldest first; a partly read write keeps its remainder.
    segs: VecDeque<usize>,
    /// Filled: the writer gets `WouldBlock` until a drain. The byte count
    /// is unknown (and not tracked) while full.
    full: bool,
}

impl Buf {
    fn has_data(&self) -> bool {
        self.full || !self.segs.is_empty()
    }

    fn bytes(&self) -> usize {
        self.segs.iter().sum()
    }

    fn push(&mut self, n: usize) {
        if n > 0 {
            self.segs.push_back(n);
        }
    }

    /// Reads up to `n` bytes (not exact while full; `allowed` forbids it).
    fn take(&mut self, n: usize) -> usize {
        if self.full {
            return n;
        }
        let mut left = n;
        while left > 0 {
            let Some(front) = self.segs.front_mut() else {
                break;
            };
            let k = left.min(*front);
            *front -= k;
            left -= k;
            if *front == 0 {
                self.segs.pop_front();
            }
        }
        n - left
    }

    fn clear(&mut self) {
        self.segs.clear();
        self.full = false;
    }

    /// Whether one more small write keeps the kernel's accounting inside
    /// what the simulation predicts.
    fn room_for_small_write(&self) -> bool {
        self.full || (self.bytes() <= MAX_BUFFERED && self.segs.len() <= MAX_UNREAD_WRITES)
    }
}

#[derive(Clone, Debug, Default)]
struct Pipe {
    buf: Buf,
    reader_closed: bool,
    writer_closed: bool,
}

/// One end of a socket pair. `rx` holds the data sent to this end.
#[derive(Clone, Debug, Default)]
struct End {
    rx: Buf,
    shut_rd: bool,
    shut_wr: bool,
    err: Option<i32>,
    closed: bool,
}

/// The TCP states an end of a loopback connection goes through (the
/// subset of Linux's `sk_state` that a connected pair reaches; `TIME_WAIT`
/// ends in [`TcpState::Close`] at once for the socket the descriptor names,
/// as `tcp_time_wait` calls `tcp_done`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum TcpState {
    #[default]
    Established,
    /// Our FIN is sent (or queued behind data) and not yet acknowledged.
    FinWait1,
    /// Our FIN is acknowledged; the peer may still send.
    FinWait2,
    /// The peer's FIN arrived; we may still send.
    CloseWait,
    /// The peer's FIN arrived, then ours went out, not yet acknowledged.
    LastAck,
    /// Both FINs crossed: ours is not yet acknowledged.
    Closing,
    /// Done: both directions finished, or reset.
    Close,
}

/// One end of a TCP loopback connection. `rx` holds the data sent to this
/// end; `rx.full` also means that the peer has unsent data queued behind
/// the closed window (and its FIN, when `fin_queued` is set on the peer).
#[derive(Clone, Debug, Default)]
struct TcpEnd {
    rx: Buf,
    state: TcpState,
    /// `RCV_SHUTDOWN` in `sk_shutdown`.
    rcv_shut: bool,
    /// `SEND_SHUTDOWN` in `sk_shutdown`.
    snd_shut: bool,
    /// The peer's FIN arrived (`SOCK_DONE`): an empty read is end-of-file,
    /// even before a pending error.
    fin_rcvd: bool,
    /// Our FIN waits behind our unsent data (the peer's `rx` is full).
    fin_queued: bool,
    /// `sk_err`.
    err: Option<i32>,
    /// The descriptor is closed: the socket is an orphan (or gone).
    closed: bool,
}

/// The other end of a TCP connection. The functions below are the
/// kernel's reactions to segments, which loopback delivers synchronously
/// within the sending syscall.
fn tcp_peer(side: usize) -> usize {
    1 - side
}

/// `tcp_reset`: the end receives an RST.
fn tcp_reset(e: &mut TcpEnd) {
    if e.state == TcpState::Close {
        return;
    }
    e.err = Some(if e.state == TcpState::CloseWait {
        EPIPE
    } else {
        ECONNRESET
    });
    // tcp_write_queue_purge + tcp_done: the receive queue stays.
    e.fin_queued = false;
    e.state = TcpState::Close;
    e.rcv_shut = true;
    e.snd_shut = true;
}

/// The FIN of `ends[from]` reaches its peer, which acknowledges it.
fn tcp_deliver_fin(ends: &mut [TcpEnd; 2], from: usize) {
    let to = tcp_peer(from);
    let r = &mut ends[to];
    if r.state == TcpState::Close {
        return;
    }
    r.fin_rcvd = true;
    r.rcv_shut = true;
    r.state = match r.state {
        TcpState::Established => TcpState::CloseWait,
        TcpState::FinWait1 => TcpState::Closing,
        // TIME_WAIT, then tcp_done.
        TcpState::FinWait2 => {
            r.snd_shut = true;
            TcpState::Close
        }
        other => other,
    };
    // The ACK of the FIN.
    let s = &mut ends[from];
    s.state = match s.state {
        TcpState::FinWait1 => TcpState::FinWait2,
        TcpState::LastAck | TcpState::Closing => {
            s.rcv_shut = true;
            s.snd_shut = true;
            TcpState::Close
        }
        other => other,
    };
}

/// `tcp_close_state` and the FIN it sends, if any (queued behind unsent
/// data while the peer's receive buffer is full).
fn tcp_send_fin(ends: &mut [TcpEnd; 2], side: usize) {
    let next = match ends[side].state {
        TcpState::Established => TcpState::FinWait1,
        TcpState::CloseWait => TcpState::LastAck,
        _ => return,
    };
    ends[side].state = next;
    if ends[tcp_peer(side)].rx.full {
        ends[side].fin_queued = true;
    } else {
        tcp_deliver_fin(ends, side);
    }
}

/// What an empty receive queue reads as (`tcp_recvmsg` without data).
fn tcp_read_empty(e: &mut TcpEnd) -> IoOutcome {
    if e.fin_rcvd {
        IoOutcome::Eof
    } else if let Some(err) = e.err.take() {
        IoOutcome::Err(err)
    } else if e.rcv_shut {
        IoOutcome::Eof
    } else if e.state == TcpState::Close {
        IoOutcome::Err(ENOTCONN)
    } else {
        IoOutcome::WouldBlock
    }
}

/// The checks `tcp_sendmsg` makes before queueing anything: `Some(errno)`
/// if the send fails (taking a pending error in a finished state).
fn tcp_send_check(e: &mut TcpEnd) -> Option<i32> {
    match e.state {
        TcpState::Established | TcpState::CloseWait => {
            (e.err.is_some() || e.snd_shut).then_some(EPIPE)
        }
        // sk_stream_wait_connect: the pending error (taken), else EPIPE.
        _ => Some(e.err.take().unwrap_or(EPIPE)),
    }
}

/// `n` bytes from `ends[side]` reach the peer: queued, or, at a closed
/// peer (an orphan that shut down reading), answered by a reset.
fn tcp_deliver_data(ends: &mut [TcpEnd; 2], side: usize, n: usize) {
    let peer = tcp_peer(side);
    if ends[peer].closed {
        ends[peer].state = TcpState::Close;
        tcp_reset(&mut ends[side]);
    } else {
        ends[peer].rx.push(n);
    }
}

#[derive(Clone, Debug, Default)]
struct File {
    size: usize,
    offset: usize,
}

#[derive(Clone, Debug)]
enum Object {
    Pipe(Pipe),
    Pair([End; 2]),
    Tcp([TcpEnd; 2]),
    File(File),
}

#[derive(Clone, Debug)]
struct Slot {
    fd: i32,
    open: bool,
    kind: Kind,
    /// Index into `SimWorld::objects`.
    obj: usize,
    /// Which end of a pair (0 or 1); 0 otherwise.
    side: usize,
}

/// The simulated world: pipes, socket pairs, TCP connections and files as
/// plain data, with Linux's readiness rules (see the [module docs](super)).
///
/// Descriptor numbers are the simulation's own: the lowest free number from
/// 3, like the kernel's rule in a process with only stdio open.
#[derive(Clone, Debug, Default)]
pub struct SimWorld {
    slots: Vec<Slot>,
    objects: Vec<Object>,
    /// Signal and process sources, by id; `None` once closed.
    sources: Vec<Option<SimSource>>,
    /// Deliveries not yet read, per signal.
    pending: BTreeMap<i32, u32>,
    /// Exit codes of the children, by index; all have exited.
    children: Vec<i32>,
}

/// A signalfd or pidfd of the simulation.
#[derive(Clone, Copy, Debug)]
struct SimSource {
    fd: i32,
    spec: SourceSpec,
}

/// The first simulated pid (children get `FIRST_PID + index`).
const FIRST_PID: i32 = 1_000_000;
/// `SIGKILL`, `SIGSTOP` and the largest signal number on Linux.
const SIGKILL: i32 = 9;
const SIGSTOP: i32 = 19;
const SIGMAX: i32 = 64;

impl SimWorld {
    /// A new, empty world (same as `Default`).
    pub fn new() -> SimWorld {
        SimWorld::default()
    }

    /// How many handles were created so far (open or closed).
    pub fn handle_count(&self) -> usize {
        self.slots.len()
    }

    /// The readiness mask of the open descriptor numbered `fd`, `None` if
    /// no open descriptor has that number.
    pub fn fd_mask(&self, fd: i32) -> Option<Mask> {
        if let Some(h) = self.slots.iter().position(|s| s.open && s.fd == fd) {
            return self.mask(h);
        }
        let src = self.sources.iter().flatten().find(|s| s.fd == fd)?;
        let ready = match src.spec {
            SourceSpec::Signal(sig) => self.pending.get(&sig).copied().unwrap_or(0) > 0,
            // Every simulated child has exited.
            _ => true,
        };
        Some(if ready { Mask::IN } else { Mask::EMPTY })
    }

    /// Opens a source as the Linux backends do: a signalfd (the signal
    /// must be catchable and in range) or a pidfd (the process must
    /// exist). Returns the descriptor number and the source's id.
    ///
    /// # Errors
    /// The `io::ErrorKind` the real backends give: `InvalidInput` for a
    /// bad signal, `NotFound` for an unknown pid.
    pub fn open_source(&mut self, spec: SourceSpec) -> Result<(i32, u64), std::io::ErrorKind> {
        match spec {
            SourceSpec::Signal(sig)
                if sig == SIGKILL || sig == SIGSTOP || !(1..=SIGMAX).contains(&sig) =>
            {
                return Err(std::io::ErrorKind::InvalidInput);
            }
            SourceSpec::Process(pid) if pid <= 0 => return Err(std::io::ErrorKind::InvalidInput),
            SourceSpec::Process(pid)
                if usize::try_from(pid - FIRST_PID).is_err()
                    || (pid - FIRST_PID) as usize >= self.children.len() =>
            {
                return Err(std::io::ErrorKind::NotFound);
            }
            _ => {}
        }
        let fd = self.alloc_fds(1)[0];
        self.sources.push(Some(SimSource { fd, spec }));
        Ok((fd, (self.sources.len() - 1) as u64))
    }

    /// Reads a source: a signal's deliveries since the last read, or a
    /// child's exit status (not reaped: it can be read again).
    pub fn read_source(&mut self, id: u64) -> SourceReport {
        let Some(Some(src)) = self.sources.get(id as usize).copied() else {
            return SourceReport::Nothing;
        };
        match src.spec {
            SourceSpec::Signal(sig) => match self.pending.remove(&sig) {
                Some(count) if count > 0 => SourceReport::Signal { count },
                _ => SourceReport::Nothing,
            },
            SourceSpec::Process(pid) => {
                SourceReport::Exit(ExitStatus::Code(self.children[(pid - FIRST_PID) as usize]))
            }
            _ => SourceReport::Nothing,
        }
    }

    /// Closes a source; its number becomes free. Closing a signal source
    /// drops the deliveries not yet read (the Linux backends drain them
    /// before they unblock the signal).
    pub fn close_source(&mut self, id: u64) {
        if let Some(slot) = self.sources.get_mut(id as usize)
            && let Some(src) = slot.take()
            && let SourceSpec::Signal(sig) = src.spec
        {
            self.pending.remove(&sig);
        }
    }

    /// The handle of the open descriptor numbered `fd`, if any.
    pub fn handle_of_fd(&self, fd: i32) -> Option<Handle> {
        self.slots.iter().position(|s| s.open && s.fd == fd)
    }

    /// Whether `op`, applied now, stays inside what the simulation predicts
    /// exactly. Generators must produce only allowed operations.
    ///
    /// - Every handle an op names must exist (it may be closed: `EBADF`).
    /// - `Reuse` requires the handle to be open.
    /// - `Write(h, n)`: `1 <= n <= 512`, and, when the write would add data,
    ///   the receiving buffer is full or holds at most 4096 bytes in at most
    ///   16 unread writes (Unix stream sockets charge kernel memory per
    ///   write, and many small unread writes could turn `OUT` off).
    ///   A TCP write into a full direction is not allowed either: a late
    ///   ACK of data in flight can free room for a small write (never
    ///   enough for `OUT`), so its result is not predictable.
    /// - `Read(h, n)`: `1 <= n <= 1 MiB`, and not on a full direction (only
    ///   `Drain` empties a full direction).
    /// - `Fill` and `Drain`: not on a regular file.
    pub fn allowed(&self, op: &Op) -> bool {
        let exists = |h: Handle| h < self.slots.len();
        match *op {
            Op::Open(_) => true,
            Op::Reuse(h, _) => exists(h) && self.slots[h].open,
            Op::Write(h, n) => {
                exists(h)
                    && (1..=MAX_WRITE).contains(&n)
                    && self.receiving_buf(h).is_none_or(|b| {
                        b.room_for_small_write() && !(b.full && self.slots[h].kind == Kind::Tcp)
                    })
            }
            Op::Read(h, n) => {
                exists(h) && (1..=MAX_READ).contains(&n) && self.own_rx(h).is_none_or(|b| !b.full)
            }
            Op::Fill(h) | Op::Drain(h) => exists(h) && self.slots[h].kind != Kind::File,
            Op::ShutdownWrite(h) | Op::Close(h) => exists(h),
        }
    }

    /// The buffer a write on open `h` would add to, if it would.
    fn receiving_buf(&self, h: Handle) -> Option<&Buf> {
        let s = &self.slots[h];
        if !s.open {
            return None;
        }
        match &self.objects[s.obj] {
            Object::Pipe(p) if s.kind == Kind::PipeWrite && !p.reader_closed => Some(&p.buf),
            Object::Pair(ends) if !ends[s.side].shut_wr => Some(&ends[1 - s.side].rx),
            Object::Tcp(ends)
                if matches!(
                    ends[s.side].state,
                    TcpState::Established | TcpState::CloseWait
                ) && !ends[s.side].snd_shut
                    && ends[s.side].err.is_none()
                    && !ends[tcp_peer(s.side)].closed =>
            {
                Some(&ends[tcp_peer(s.side)].rx)
            }
            _ => None,
        }
    }

    /// The buffer a read on open `h` would take from.
    fn own_rx(&self, h: Handle) -> Option<&Buf> {
        let s = &self.slots[h];
        if !s.open {
            return None;
        }
        match &self.objects[s.obj] {
            Object::Pipe(p) if s.kind == Kind::PipeRead => Some(&p.buf),
            Object::Pair(ends) => Some(&ends[s.side].rx),
            Object::Tcp(ends) => Some(&ends[s.side].rx),
            _ => None,
        }
    }

    fn slot(&self, h: Handle) -> &Slot {
        match self.slots.get(h) {
            Some(s) => s,
            None => panic!("handle {h} does not exist ({} created)", self.slots.len()),
        }
    }

    /// The slot of `h` if it is open.
    fn open_slot(&self, h: Handle) -> Option<Slot> {
        let s = self.slot(h);
        s.open.then(|| s.clone())
    }

    /// Allocates `count` lowest free numbers.
    fn alloc_fds(&self, count: usize) -> Vec<i32> {
        let used: BTreeSet<i32> = self
            .slots
            .iter()
            .filter(|s| s.open)
            .map(|s| s.fd)
            .chain(self.sources.iter().flatten().map(|s| s.fd))
            .collect();
        (FIRST_FD..)
            .filter(|n| !used.contains(n))
            .take(count)
            .collect()
    }

    /// Creates the object for `kind`; returns its index and the new slots'
    /// kinds and sides.
    fn create(&mut self, kind: NewKind) -> (usize, Vec<(Kind, usize)>) {
        let (obj, slots) = match kind {
            NewKind::Pipe => (
                Object::Pipe(Pipe::default()),
                vec![(Kind::PipeRead, 0), (Kind::PipeWrite, 0)],
            ),
            NewKind::Pair => (
                Object::Pair(Default::default()),
                vec![(Kind::Socket, 0), (Kind::Socket, 1)],
            ),
            NewKind::Tcp => (
                Object::Tcp(Default::default()),
                vec![(Kind::Tcp, 0), (Kind::Tcp, 1)],
            ),
            NewKind::File => (Object::File(File::default()), vec![(Kind::File, 0)]),
        };
        self.objects.push(obj);
        (self.objects.len() - 1, slots)
    }

    fn push_slots(&mut self, obj: usize, fds: &[i32], kinds: &[(Kind, usize)]) -> Vec<Handle> {
        fds.iter()
            .zip(kinds)
            .map(|(&fd, &(kind, side))| {
                self.slots.push(Slot {
                    fd,
                    open: true,
                    kind,
                    obj,
                    side,
                });
                self.slots.len() - 1
            })
            .collect()
    }

    /// The effects of closing the (only) descriptor of `s`.
    fn release(&mut self, s: &Slot) {
        match &mut self.objects[s.obj] {
            Object::Pipe(p) => {
                // The buffer stays until both ends are gone: a full pipe
                // whose reader closed is still full (no OUT).
                if s.kind == Kind::PipeRead {
                    p.reader_closed = true;
                } else {
                    p.writer_closed = true;
                }
            }
            Object::Pair(ends) => {
                let unread = ends[s.side].rx.has_data();
                let me = &mut ends[s.side];
                me.closed = true;
                // The receive queue is purged: the peer's send memory is
                // freed, so its direction is no longer full.
                me.rx.clear();
                let peer = &mut ends[1 - s.side];
                if !peer.closed {
                    peer.shut_rd = true;
                    peer.shut_wr = true;
                    if unread {
                        peer.err = Some(ECONNRESET);
                    }
                }
            }
            Object::Tcp(ends) => {
                let side = s.side;
                let me = &mut ends[side];
                me.closed = true;
                me.rcv_shut = true;
                me.snd_shut = true;
                // The receive queue is purged; data in it means a reset.
                let unread = me.rx.has_data();
                me.rx.clear();
                if me.state == TcpState::Close {
                    // Already finished or reset: nothing is sent.
                } else if unread {
                    me.state = TcpState::Close;
                    me.fin_queued = false;
                    let peer = &mut ends[tcp_peer(side)];
                    if !peer.closed {
                        tcp_reset(peer);
                    }
                } else {
                    tcp_send_fin(ends, side);
                }
            }
            Object::File(_) => {}
        }
    }
}

impl World for SimWorld {
    fn open(&mut self, kind: NewKind) -> Vec<Handle> {
        let (obj, kinds) = self.create(kind);
        let fds = self.alloc_fds(kinds.len());
        self.push_slots(obj, &fds, &kinds)
    }

    fn reuse(&mut self, h: Handle, kind: NewKind) -> Vec<Handle> {
        let Some(old) = self.open_slot(h) else {
            panic!("reuse({h}): the handle is not open");
        };
        // As the real world does it: create the new descriptors (lowest free
        // numbers, `h`'s still taken), `dup3` the first over `h`'s number
        // (closing `h`'s file), then close the first's original number.
        let (obj, kinds) = self.create(kind);
        let mut fds = self.alloc_fds(kinds.len());
        fds[0] = old.fd;
        self.slots[h].open = false;
        self.release(&old);
        self.push_slots(obj, &fds, &kinds)
    }

    fn write(&mut self, h: Handle, n: usize) -> IoOutcome {
        let Some(s) = self.open_slot(h) else {
            return IoOutcome::Err(EBADF);
        };
        match &mut self.objects[s.obj] {
            Object::Pipe(_) if s.kind == Kind::PipeRead => IoOutcome::Err(EBADF),
            Object::Pipe(_) if n == 0 => IoOutcome::Done(0),
            Object::Pipe(p) if p.reader_closed => IoOutcome::Err(EPIPE),
            Object::Pipe(p) if p.buf.full => IoOutcome::WouldBlock,
            Object::Pipe(p) => {
                p.buf.push(n);
                IoOutcome::Done(n)
            }
            Object::Pair(ends) => {
                if ends[s.side].shut_wr {
                    return IoOutcome::Err(EPIPE);
                }
                let rx = &mut ends[1 - s.side].rx;
                if rx.full {
                    IoOutcome::WouldBlock
                } else {
                    rx.push(n);
                    IoOutcome::Done(n)
                }
            }
            Object::Tcp(ends) => {
                if let Some(e) = tcp_send_check(&mut ends[s.side]) {
                    return IoOutcome::Err(e);
                }
                if ends[tcp_peer(s.side)].rx.full {
                    return IoOutcome::WouldBlock;
                }
                tcp_deliver_data(ends, s.side, n);
                IoOutcome::Done(n)
            }
            Object::File(f) => {
                f.offset += n;
                f.size = f.size.max(f.offset);
                IoOutcome::Done(n)
            }
        }
    }

    fn read(&mut self, h: Handle, n: usize) -> IoOutcome {
        let Some(s) = self.open_slot(h) else {
            return IoOutcome::Err(EBADF);
        };
        match &mut self.objects[s.obj] {
            Object::Pipe(_) if s.kind == Kind::PipeWrite => IoOutcome::Err(EBADF),
            _ if n == 0 => IoOutcome::Done(0),
            Object::Pipe(p) => {
                if p.buf.has_data() {
                    IoOutcome::Done(p.buf.take(n))
                } else if p.writer_closed {
                    IoOutcome::Eof
                } else {
                    IoOutcome::WouldBlock
                }
            }
            Object::Pair(ends) => {
                let me = &mut ends[s.side];
                if me.rx.has_data() {
                    IoOutcome::Done(me.rx.take(n))
                } else if let Some(e) = me.err.take() {
                    IoOutcome::Err(e)
                } else if me.shut_rd {
                    IoOutcome::Eof
                } else {
                    IoOutcome::WouldBlock
                }
            }
            Object::Tcp(ends) => {
                let me = &mut ends[s.side];
                if me.rx.has_data() {
                    IoOutcome::Done(me.rx.take(n))
                } else {
                    tcp_read_empty(me)
                }
            }
            Object::File(f) => {
                let k = n.min(f.size - f.offset);
                f.offset += k;
                if k == 0 {
                    IoOutcome::Eof
                } else {
                    IoOutcome::Done(k)
                }
            }
        }
    }

    fn fill(&mut self, h: Handle) -> IoOutcome {
        let Some(s) = self.open_slot(h) else {
            return IoOutcome::Err(EBADF);
        };
        match &mut self.objects[s.obj] {
            Object::Pipe(_) if s.kind == Kind::PipeRead => IoOutcome::Err(EBADF),
            Object::Pipe(p) if p.reader_closed => IoOutcome::Err(EPIPE),
            Object::Pipe(p) => {
                p.buf.full = true;
                IoOutcome::Done(0)
            }
            Object::Pair(ends) => {
                if ends[s.side].shut_wr {
                    return IoOutcome::Err(EPIPE);
                }
                ends[1 - s.side].rx.full = true;
                IoOutcome::Done(0)
            }
            Object::Tcp(ends) => {
                if let Some(e) = tcp_send_check(&mut ends[s.side]) {
                    return IoOutcome::Err(e);
                }
                if ends[tcp_peer(s.side)].rx.full {
                    return IoOutcome::Done(0);
                }
                if ends[tcp_peer(s.side)].closed {
                    // The first chunk goes out and is answered by a reset;
                    // the next write fails with (and takes) the error.
                    tcp_deliver_data(ends, s.side, 1);
                    let me = &mut ends[s.side];
                    return IoOutcome::Err(tcp_send_check(me).unwrap_or(EPIPE));
                }
                ends[tcp_peer(s.side)].rx.full = true;
                IoOutcome::Done(0)
            }
            Object::File(_) => IoOutcome::Err(EINVAL),
        }
    }

    fn drain(&mut self, h: Handle) -> DrainOutcome {
        let Some(s) = self.open_slot(h) else {
            return DrainOutcome {
                got_data: false,
                end: IoOutcome::Err(EBADF),
            };
        };
        match &mut self.objects[s.obj] {
            Object::Pipe(_) if s.kind == Kind::PipeWrite => DrainOutcome {
                got_data: false,
                end: IoOutcome::Err(EBADF),
            },
            Object::Pipe(p) => {
                let got_data = p.buf.has_data();
                p.buf.clear();
                let end = if p.writer_closed {
                    IoOutcome::Eof
                } else {
                    IoOutcome::WouldBlock
                };
                DrainOutcome { got_data, end }
            }
            Object::Pair(ends) => {
                let me = &mut ends[s.side];
                let got_data = me.rx.has_data();
                me.rx.clear();
                let end = if let Some(e) = me.err.take() {
                    IoOutcome::Err(e)
                } else if me.shut_rd {
                    IoOutcome::Eof
                } else {
                    IoOutcome::WouldBlock
                };
                DrainOutcome { got_data, end }
            }
            Object::Tcp(ends) => {
                let side = s.side;
                let got_data = ends[side].rx.has_data();
                let was_full = ends[side].rx.full;
                ends[side].rx.clear();
                // Reading opens the window: the peer's queued data follows
                // (read by this drain too), then its queued FIN.
                let peer = tcp_peer(side);
                if was_full && ends[peer].fin_queued {
                    ends[peer].fin_queued = false;
                    tcp_deliver_fin(ends, peer);
                }
                let end = tcp_read_empty(&mut ends[side]);
                DrainOutcome { got_data, end }
            }
            Object::File(f) => {
                let got_data = f.offset < f.size;
                f.offset = f.size;
                DrainOutcome {
                    got_data,
                    end: IoOutcome::Eof,
                }
            }
        }
    }

    fn shutdown_write(&mut self, h: Handle) -> Result<(), i32> {
        let Some(s) = self.open_slot(h) else {
            return Err(EBADF);
        };
        match &mut self.objects[s.obj] {
            Object::Pair(ends) => {
                ends[s.side].shut_wr = true;
                let peer = &mut ends[1 - s.side];
                if !peer.closed {
                    peer.shut_rd = true;
                }
                Ok(())
            }
            Object::Tcp(ends) => {
                if ends[s.side].state == TcpState::Close {
                    return Err(ENOTCONN);
                }
                ends[s.side].snd_shut = true;
                tcp_send_fin(ends, s.side);
                Ok(())
            }
            Object::Pipe(_) | Object::File(_) => Err(ENOTSOCK),
        }
    }

    fn close(&mut self, h: Handle) -> Result<(), i32> {
        let Some(s) = self.open_slot(h) else {
            return Err(EBADF);
        };
        self.slots[h].open = false;
        self.release(&s);
        Ok(())
    }

    fn raw_fd(&self, h: Handle) -> i32 {
        self.slot(h).fd
    }

    fn raise(&mut self, signal: i32) {
        let watched = self
            .sources
            .iter()
            .flatten()
            .any(|s| s.spec == SourceSpec::Signal(signal));
        assert!(
            watched,
            "scenarios raise only watched signals (signal {signal} is not)"
        );
        let n = self.pending.entry(signal).or_insert(0);
        // Standard signals merge while pending; real-time ones queue.
        *n = if signal < 32 { 1 } else { *n + 1 };
    }

    fn spawn(&mut self, code: i32) -> usize {
        self.children.push(code);
        self.children.len() - 1
    }

    fn pid(&self, child: usize) -> i32 {
        FIRST_PID + child as i32
    }

    fn is_open(&self, h: Handle) -> bool {
        self.slot(h).open
    }

    fn kind(&self, h: Handle) -> Kind {
        self.slot(h).kind
    }

    fn mask(&self, h: Handle) -> Option<Mask> {
        let s = self.slot(h);
        if !s.open {
            return None;
        }
        let mut m = Mask::EMPTY;
        match &self.objects[s.obj] {
            Object::Pipe(p) if s.kind == Kind::PipeRead => {
                m.set(Mask::IN, p.buf.has_data());
                m.set(Mask::HUP, p.writer_closed);
            }
            Object::Pipe(p) => {
                m.set(Mask::OUT, !p.buf.full);
                m.set(Mask::ERR, p.reader_closed);
            }
            Object::Pair(ends) => {
                let me = &ends[s.side];
                m.set(Mask::ERR, me.err.is_some());
                m.set(Mask::HUP, me.shut_rd && me.shut_wr);
                m.set(Mask::IN | Mask::RDHUP, me.shut_rd);
                if me.rx.has_data() {
                    m.insert(Mask::IN);
                }
                // unix_writable: only this end's send-buffer usage counts.
                m.set(Mask::OUT, !ends[1 - s.side].rx.full);
            }
            Object::Tcp(ends) => {
                // tcp_poll.
                let me = &ends[s.side];
                m.set(
                    Mask::HUP,
                    (me.rcv_shut && me.snd_shut) || me.state == TcpState::Close,
                );
                m.set(Mask::IN | Mask::RDHUP, me.rcv_shut);
                if me.rx.has_data() {
                    m.insert(Mask::IN);
                }
                // OUT after a send shutdown; else while our unsent data
                // does not fill the send buffer.
                m.set(Mask::OUT, me.snd_shut || !ends[tcp_peer(s.side)].rx.full);
                m.set(Mask::ERR, me.err.is_some());
            }
            Object::File(_) => m = Mask::IN | Mask::OUT,
        }
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_is_lowest_free_and_reuse_keeps_it() {
        let mut w = SimWorld::new();
        assert_eq!(w.open(NewKind::Pipe), vec![0, 1]);
        assert_eq!((w.raw_fd(0), w.raw_fd(1)), (3, 4));
        assert_eq!(w.open(NewKind::File), vec![2]);
        assert_eq!(w.raw_fd(2), 5);
        assert_eq!(w.close(0), Ok(()));
        assert_eq!(w.open(NewKind::File), vec![3]);
        assert_eq!(w.raw_fd(3), 3);
        // Reuse of 4: the new pair is made at 6, 7 first; 6 is dup'ed onto
        // 4 and closed.
        assert_eq!(w.reuse(1, NewKind::Pair), vec![4, 5]);
        assert_eq!((w.raw_fd(4), w.raw_fd(5)), (4, 7));
        assert_eq!(w.raw_fd(1), 4);
        assert!(!w.is_open(1));
        assert_eq!(w.fd_mask(4), Some(Mask::OUT));
        assert_eq!(w.handle_of_fd(4), Some(4));
        assert_eq!(w.fd_mask(6), None);
        assert_eq!(w.open(NewKind::File), vec![6]);
        assert_eq!(w.raw_fd(6), 6);
    }

    #[test]
    fn allowed_caps() {
        let mut w = SimWorld::new();
        w.open(NewKind::Pair);
        w.open(NewKind::File);
        assert!(!w.allowed(&Op::Write(9, 1)));
        assert!(!w.allowed(&Op::Write(0, 0)));
        assert!(!w.allowed(&Op::Write(0, 513)));
        assert!(w.allowed(&Op::Write(0, 512)));
        assert!(!w.allowed(&Op::Fill(2)));
        assert!(!w.allowed(&Op::Drain(2)));
        for _ in 0..=MAX_UNREAD_WRITES {
            assert!(w.allowed(&Op::Write(0, 1)));
            w.write(0, 1);
        }
        assert!(!w.allowed(&Op::Write(0, 1)));
        assert!(w.allowed(&Op::Write(1, 1)));
        w.fill(0);
        assert!(w.allowed(&Op::Write(0, 1)));
        assert!(!w.allowed(&Op::Read(1, 1)));
        assert!(w.allowed(&Op::Read(0, 1)));
        w.drain(1);
        assert!(w.allowed(&Op::Read(1, 1)));
        w.close(0).unwrap();
        assert!(w.allowed(&Op::Write(0, 1)));
        assert!(!w.allowed(&Op::Reuse(0, NewKind::File)));
        assert!(w.allowed(&Op::Reuse(1, NewKind::File)));
    }

    #[test]
    fn tcp_numbering_states_and_allowed() {
        let mut w = SimWorld::new();
        assert_eq!(w.open(NewKind::Tcp), vec![0, 1]);
        assert_eq!((w.raw_fd(0), w.raw_fd(1)), (3, 4));
        assert_eq!((w.kind(0), w.kind(1)), (Kind::Tcp, Kind::Tcp));
        assert_eq!(w.mask(0), Some(Mask::OUT));
        // A write on a full direction is not predicted; a failing one is.
        w.fill(0);
        assert!(!w.allowed(&Op::Write(0, 1)));
        assert_eq!(w.shutdown_write(1), Ok(()));
        assert_eq!(w.mask(0), Some(Mask::IN | Mask::RDHUP));
        // Our FIN waits behind the data: the peer is CLOSING, not closed.
        assert_eq!(w.shutdown_write(0), Ok(()));
        assert_eq!(
            w.mask(0),
            Some(Mask::IN | Mask::RDHUP | Mask::OUT | Mask::HUP)
        );
        assert_eq!(w.shutdown_write(0), Ok(()));
        assert!(w.allowed(&Op::Write(0, 1)));
        assert_eq!(w.write(0, 1), IoOutcome::Err(EPIPE));
        let d = w.drain(1);
        assert_eq!((d.got_data, d.end), (true, IoOutcome::Eof));
        assert_eq!(w.shutdown_write(0), Err(ENOTCONN));
        assert_eq!(w.shutdown_write(1), Err(ENOTCONN));
        // A finished connection takes no data; closing it sends nothing.
        assert_eq!(w.write(1, 1), IoOutcome::Err(EPIPE));
        assert_eq!(w.close(0), Ok(()));
        assert_eq!(
            w.mask(1),
            Some(Mask::IN | Mask::RDHUP | Mask::OUT | Mask::HUP)
        );
    }

    #[test]
    fn partial_reads_span_writes() {
        let mut w = SimWorld::new();
        w.open(NewKind::Pair);
        w.write(0, 3);
        w.write(0, 4);
        assert_eq!(w.read(1, 5), IoOutcome::Done(5));
        assert_eq!(w.read(1, 5), IoOutcome::Done(2));
        assert_eq!(w.read(1, 5), IoOutcome::WouldBlock);
    }
}
