//! Banga's stateful interest sets, sans-io.
//!
//! A program *declares* what it wants to hear about
//! ([`Poller::declare_interest`]) and *collects* what happened
//! ([`Poller::get_next_event`]). The interest set lives in user space and
//! reaches the kernel in batches, at the next wait, as the net change per
//! descriptor: a read → write → read flip between two waits costs no
//! syscall at all.
//!
//! This crate makes no syscall. It holds:
//! - the vocabulary ([`Token`], [`Interest`], [`Mode`], [`Event`], [`Events`],
//!   [`Ready`]);
//! - the registration table, keyed by descriptor, with a generation per
//!   registration so that a reused descriptor number never receives an old
//!   registration's events;
//! - the coalescing change list;
//! - the [`Backend`] contract, which kernel mechanisms implement in the
//!   `backends/*` crates;
//! - the driver, [`Poller`], where the canonical semantics of level, edge
//!   and oneshot live, once for every backend.
//!
//! The event-stream contract is written down in `SEMANTICS.md` at the root
//! of the repository; the testkit's reference model checks every backend
//! against it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backend;
mod error;
mod intmap;
mod mailbox;
mod poller;
mod sync;
mod types;

pub use backend::{
    Backend, Capabilities, Change, ExitStatus, Key, OpenedSource, Output, RawEvent, Rejection,
    SourceReport, SourceSpec, Trigger, Wake, Watch,
};
pub use error::{Error, TokenUse};
pub use intmap::{DenseKey, DenseMap, IntHasher, IntMap};
pub use mailbox::{Registry, UserTrigger, Waker};
pub use poller::{ModeName, Poller, Registration};
pub use types::{Event, Events, Interest, Mode, Ready, Token};
