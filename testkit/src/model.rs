//! The reference model: a [`Backend`] over simulated descriptors.
//!
//! The model is deliberately the plainest backend there is: level-only, no
//! native edge or oneshot, every change applied to a table, readiness read
//! from the simulated buffers at the time of the wait. The *same driver*
//! ([`Poller`](evmux_interest::Poller)) runs on it as on the kernels, so the
//! model is the oracle for what the driver promises, and every real backend
//! must produce the stream it produces.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use evmux_interest::{
    Backend, Capabilities, Change, Key, OpenedSource, Output, RawEvent, Ready, Rejection,
    SourceReport, SourceSpec, Wake, Watch,
};

use crate::world::{DrainOutcome, Handle, IoOutcome, Kind, Mask, NewKind, SimWorld, World};

const EBADF: i32 = 9;

/// A simulated world shared by the scenario runner (which acts on it) and
/// the [`ModelBackend`] (which reads readiness from it).
#[derive(Clone, Debug, Default)]
pub struct SharedSim(Arc<Mutex<SimWorld>>);

impl SharedSim {
    /// A new, empty simulated world.
    pub fn new() -> SharedSim {
        SharedSim::default()
    }

    /// Locks the world.
    pub fn lock(&self) -> MutexGuard<'_, SimWorld> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(&self) -> io::Result<()> {
        self.0.store(true, Ordering::SeqCst);
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: Key,
    watch: Watch,
    /// The descriptor was closed under the registration: silent until a
    /// change for the key arrives.
    disabled: bool,
}

/// The model backend. Virtual time: a wait that finds nothing advances the
/// clock by its timeout, and an infinite wait that would find nothing is a
/// scenario bug (it would block forever) and panics.
#[derive(Debug)]
pub struct ModelBackend {
    world: SharedSim,
    entries: BTreeMap<RawFd, Entry>,
    waker: Arc<Flag>,
    clock: Duration,
}

impl ModelBackend {
    /// A model backend reading readiness from `world`.
    pub fn new(world: SharedSim) -> ModelBackend {
        ModelBackend {
            world,
            entries: BTreeMap::new(),
            waker: Arc::default(),
            clock: Duration::ZERO,
        }
    }

    /// Advances virtual time.
    pub fn advance(&mut self, by: Duration) {
        self.clock += by;
    }
}

impl Backend for ModelBackend {
    fn name(&self) -> &'static str {
        "model"
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
        max_events: usize,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let world = self.world.lock();
        for c in changes {
            match c.new {
                None => {
                    self.entries.remove(&c.fd);
                }
                Some(watch) => {
                    // As EPOLL_CTL_ADD/MOD: a closed number is refused.
                    if world.fd_mask(c.fd).is_none() {
                        self.entries.remove(&c.fd);
                        out.rejected.push(Rejection {
                            key: c.key,
                            errno: EBADF,
                        });
                    } else {
                        self.entries.insert(
                            c.fd,
                            Entry {
                                key: c.key,
                                watch,
                                disabled: false,
                            },
                        );
                    }
                }
            }
        }
        if self.waker.0.swap(false, Ordering::SeqCst) {
            out.events.push(RawEvent {
                key: Key::WAKER,
                ready: Ready::IN,
            });
        }
        for (&fd, e) in self.entries.iter_mut() {
            if out.events.len() >= max_events.max(1) {
                break;
            }
            if e.disabled {
                continue;
            }
            let Some(mask) = world.fd_mask(fd) else {
                // Closed without being forgotten: silent from now on.
                e.disabled = true;
                continue;
            };
            let ready = Ready(mask.0) & Ready::reportable(e.watch.interest);
            if !ready.is_empty() {
                out.events.push(RawEvent { key: e.key, ready });
            }
        }
        if out.events.is_empty() && out.rejected.is_empty() {
            match timeout {
                Some(t) => self.clock += t,
                None => panic!("the model would block forever: nothing is ready and no timeout"),
            }
        }
        Ok(())
    }

    fn waker(&mut self) -> io::Result<Arc<dyn Wake>> {
        Ok(self.waker.clone())
    }

    fn now(&self) -> Duration {
        self.clock
    }

    fn open_source(&mut self, spec: SourceSpec) -> io::Result<OpenedSource> {
        let (fd, id) = self
            .world
            .lock()
            .open_source(spec)
            .map_err(|kind| io::Error::new(kind, format!("the model refuses {spec:?}")))?;
        Ok(OpenedSource { fd, id })
    }

    fn read_source(&mut self, id: u64) -> io::Result<SourceReport> {
        Ok(self.world.lock().read_source(id))
    }

    fn close_source(&mut self, id: u64) {
        self.world.lock().close_source(id);
    }
}

impl World for SharedSim {
    fn open(&mut self, kind: NewKind) -> Vec<Handle> {
        self.lock().open(kind)
    }
    fn reuse(&mut self, h: Handle, kind: NewKind) -> Vec<Handle> {
        self.lock().reuse(h, kind)
    }
    fn write(&mut self, h: Handle, n: usize) -> IoOutcome {
        self.lock().write(h, n)
    }
    fn read(&mut self, h: Handle, n: usize) -> IoOutcome {
        self.lock().read(h, n)
    }
    fn fill(&mut self, h: Handle) -> IoOutcome {
        self.lock().fill(h)
    }
    fn drain(&mut self, h: Handle) -> DrainOutcome {
        self.lock().drain(h)
    }
    fn shutdown_write(&mut self, h: Handle) -> Result<(), i32> {
        self.lock().shutdown_write(h)
    }
    fn close(&mut self, h: Handle) -> Result<(), i32> {
        self.lock().close(h)
    }
    fn raw_fd(&self, h: Handle) -> i32 {
        self.lock().raw_fd(h)
    }
    fn is_open(&self, h: Handle) -> bool {
        self.lock().is_open(h)
    }
    fn raise(&mut self, signal: i32) {
        self.lock().raise(signal)
    }
    fn spawn(&mut self, code: i32) -> usize {
        self.lock().spawn(code)
    }
    fn pid(&self, child: usize) -> i32 {
        self.lock().pid(child)
    }
    fn kind(&self, h: Handle) -> Kind {
        self.lock().kind(h)
    }
    fn mask(&self, h: Handle) -> Option<Mask> {
        self.lock().mask(h)
    }
}
