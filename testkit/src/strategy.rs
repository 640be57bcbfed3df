//! Proptest strategies: random step sequences that stay inside what the
//! model can predict exactly.
//!
//! A case is a vector of small integer *seeds*; [`realize`] turns it into
//! steps against an evolving simulated world, skipping seeds that would be
//! outside the model's exact range. Shrinking removes and simplifies seeds,
//! and every shrunk vector still realizes into a valid scenario.
//!
//! The rules that keep a scenario inside the specified part of the contract:
//! - a descriptor closed while registered, or declared while closed, is
//!   "dangling": until its token is forgotten no wait, no operation on any
//!   descriptor and no declaration of that token is generated, because
//!   `SEMANTICS.md` leaves both the stream of a closed-but-registered
//!   descriptor and the lifetime of its open file unspecified (an io_uring
//!   poll keeps the file open until `forget`, so a peer would see no end of
//!   file where epoll's peer does);
//! - `Reuse` only replaces descriptors with no live registration;
//! - a closed handle is declared again only before any new descriptor was
//!   created (so its number is free in every world);
//! - byte counts and buffer levels stay within [`SimWorld::allowed`].

use std::collections::{BTreeMap, BTreeSet};

use evmux_interest::{Interest, Mode};
use proptest::prelude::*;

use crate::scenario::Step;
use crate::world::{self, Handle, NewKind, Op, SimWorld, World};

/// One seed: an operation selector and three parameters.
pub type Seed = (u8, u8, u8, u8);

/// A strategy for seed vectors of up to `max_len` entries.
pub fn seeds(max_len: usize) -> impl Strategy<Value = Vec<Seed>> {
    proptest::collection::vec(any::<Seed>(), 1..=max_len)
}

const MAX_HANDLES: usize = 8;
const TOKENS: usize = 6;

fn kind(a: u8) -> NewKind {
    match a % 4 {
        0 => NewKind::Pipe,
        1 => NewKind::Pair,
        2 => NewKind::Tcp,
        _ => NewKind::File,
    }
}

fn interest(b: u8) -> Interest {
    match b % 3 {
        0 => Interest::READABLE,
        1 => Interest::WRITABLE,
        _ => Interest::BOTH,
    }
}

fn mode(c: u8) -> Mode {
    match c % 3 {
        0 => Mode::Level,
        1 => Mode::Edge,
        _ => Mode::Oneshot,
    }
}

/// The generator's view of the poller's table (enough to know which
/// declares succeed).
#[derive(Default)]
struct Book {
    /// token → handle, for live registrations.
    live: BTreeMap<usize, Handle>,
    /// tokens whose descriptor was closed while registered: no wait until
    /// they are forgotten.
    dangling: BTreeSet<usize>,
    /// tokens declared on a closed descriptor (an `EBADF` event is due):
    /// no new descriptor until they are forgotten.
    on_closed: BTreeSet<usize>,
    /// handles closed since the last time a descriptor was created.
    closed_recently: BTreeSet<Handle>,
}

impl Book {
    fn token_of(&self, h: Handle) -> Option<usize> {
        self.live.iter().find(|(_, hh)| **hh == h).map(|(t, _)| *t)
    }
}

/// Turns seeds into a valid scenario (see the module docs). The result
/// always ends with a `Wait`.
pub fn realize(seeds: &[Seed]) -> Vec<Step> {
    let mut sim = SimWorld::default();
    let mut book = Book::default();
    let mut handles = 0usize;
    let mut steps = Vec::new();
    for &(op, a, b, c) in seeds {
        let open: Vec<Handle> = (0..handles).filter(|&h| sim.is_open(h)).collect();
        let pick_open = |x: u8| (!open.is_empty()).then(|| open[x as usize % open.len()]);
        let step = match op % 16 {
            0 => {
                if handles + 2 > MAX_HANDLES
                    || !book.dangling.is_empty()
                    || !book.on_closed.is_empty()
                {
                    continue;
                }
                Step::Open(kind(a))
            }
            1 => {
                if handles + 2 > MAX_HANDLES
                    || !book.dangling.is_empty()
                    || !book.on_closed.is_empty()
                {
                    continue;
                }
                let free: Vec<Handle> = open
                    .iter()
                    .copied()
                    .filter(|&h| book.token_of(h).is_none())
                    .collect();
                if free.is_empty() {
                    continue;
                }
                Step::Reuse(free[a as usize % free.len()], kind(b))
            }
            2..=4 => {
                let mut cands = open.clone();
                cands.extend(
                    book.closed_recently
                        .iter()
                        .copied()
                        .filter(|&h| book.token_of(h).is_none()),
                );
                if cands.is_empty() {
                    continue;
                }
                let h = cands[a as usize % cands.len()];
                let token = match book.token_of(h) {
                    Some(t) if b % 4 != 0 => t,
                    _ => (b as usize / 4) % TOKENS,
                };
                if book.dangling.contains(&token) || book.on_closed.contains(&token) {
                    continue;
                }
                Step::Declare {
                    h,
                    token,
                    interest: interest(c),
                    mode: mode(c / 3),
                }
            }
            5 => {
                if b % 8 == 0 {
                    Step::Forget((a as usize) % (TOKENS + 1))
                } else if book.live.is_empty() {
                    continue;
                } else {
                    let ts: Vec<usize> = book.live.keys().copied().collect();
                    Step::Forget(ts[a as usize % ts.len()])
                }
            }
            6..=11 => {
                if !book.dangling.is_empty() {
                    continue;
                }
                let Some(h) = pick_open(a) else { continue };
                let n = 1 + (usize::from(b) * 2 + usize::from(c)) % 512;
                let (st, o) = match op % 16 {
                    6 | 7 => (Step::Write(h, n), Op::Write(h, n)),
                    8 => (Step::Read(h, n), Op::Read(h, n)),
                    9 => (Step::Fill(h), Op::Fill(h)),
                    10 => (Step::Drain(h), Op::Drain(h)),
                    _ => (Step::ShutdownWrite(h), Op::ShutdownWrite(h)),
                };
                if !sim.allowed(&o) {
                    continue;
                }
                st
            }
            12 => {
                if !book.dangling.is_empty() {
                    continue;
                }
                let Some(h) = pick_open(a) else { continue };
                Step::Close(h)
            }
            _ => {
                if !book.dangling.is_empty() {
                    continue;
                }
                Step::Wait
            }
        };
        // Keep the simulated world and the book in step.
        match &step {
            Step::Open(k) => {
                handles += world::apply(&mut sim, &Op::Open(*k)).handles().len();
                book.closed_recently.clear();
            }
            Step::Reuse(h, k) => {
                handles += world::apply(&mut sim, &Op::Reuse(*h, *k)).handles().len();
                book.closed_recently.clear();
            }
            Step::Declare { h, token, .. } => {
                let token_ok = match book.live.get(token) {
                    Some(hh) => hh == h,
                    None => true,
                };
                let fd_ok = match book.token_of(*h) {
                    Some(t) => t == *token,
                    None => true,
                };
                if token_ok && fd_ok {
                    book.live.insert(*token, *h);
                    if !sim.is_open(*h) {
                        book.on_closed.insert(*token);
                    }
                }
            }
            Step::Forget(t) => {
                book.live.remove(t);
                book.dangling.remove(t);
                book.on_closed.remove(t);
            }
            Step::Close(h) => {
                world::apply(&mut sim, &Op::Close(*h));
                if let Some(t) = book.token_of(*h) {
                    book.dangling.insert(t);
                }
                book.closed_recently.insert(*h);
            }
            Step::Write(h, n) => {
                world::apply(&mut sim, &Op::Write(*h, *n));
            }
            Step::Read(h, n) => {
                world::apply(&mut sim, &Op::Read(*h, *n));
            }
            Step::Fill(h) => {
                world::apply(&mut sim, &Op::Fill(*h));
            }
            Step::Drain(h) => {
                world::apply(&mut sim, &Op::Drain(*h));
            }
            Step::ShutdownWrite(h) => {
                world::apply(&mut sim, &Op::ShutdownWrite(*h));
            }
            Step::DeclareRaw { .. }
            | Step::Wait
            | Step::AddTimer(..)
            | Step::AddTimerAt(..)
            | Step::Track(_)
            | Step::ThreadDeclare { .. }
            | Step::ThreadForget(_)
            | Step::AddUser(_)
            | Step::Trigger(_)
            | Step::RemoveUser(_)
            | Step::AddSignal(..)
            | Step::RemoveSignal(_)
            | Step::Raise(_)
            | Step::Spawn(_)
            | Step::AddProcess(..)
            | Step::AddProcessRaw(..)
            | Step::RemoveProcess(_)
            | Step::CancelTimer(_)
            | Step::WaitFor(_) => {}
        }
        steps.push(step);
    }
    for t in std::mem::take(&mut book.dangling) {
        steps.push(Step::Forget(t));
    }
    steps.push(Step::Wait);
    steps
}
