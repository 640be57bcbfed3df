//! The reserve-descriptor technique for `accept` under `EMFILE`/`ENFILE`.
//!
//! A listener whose `accept` fails for want of descriptors stays readable:
//! the pending connection is still there. A level-triggered loop would spin
//! on it, an edge-triggered one would stall. Keeping one spare descriptor
//! open lets the listener make room: close the spare, accept the connection
//! into the freed number, close the connection at once, reopen the spare.

use std::fs::File;
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sys;

/// One spare descriptor and the count of connections shed with it.
#[derive(Debug)]
pub(crate) struct Reserve {
    spare: Mutex<Option<File>>,
    shed: AtomicU64,
}

fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

impl Reserve {
    /// A reserve holding a spare descriptor (if one can be opened now; if
    /// not, the next exhaustion tries again).
    pub(crate) fn new() -> Reserve {
        Reserve {
            spare: Mutex::new(open_spare()),
            shed: AtomicU64::new(0),
        }
    }

    /// How many connections were accepted and closed at once because
    /// descriptors ran out.
    pub(crate) fn shed_count(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Runs `accept`, skipping aborted connections; on `EMFILE`/`ENFILE`
    /// sheds one pending connection with the spare descriptor and returns
    /// the exhaustion error (or `WouldBlock` if nothing was pending).
    pub(crate) fn accept<T>(&self, mut accept: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        let retrying = |accept: &mut dyn FnMut() -> io::Result<T>| loop {
            match accept() {
                Err(e) if sys::is_aborted(&e) => {}
                r => return r,
            }
        };
        let exhausted = match retrying(&mut accept) {
            Err(e) if sys::is_fd_exhaustion(&e) => e,
            r => return r,
        };
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        let Some(file) = spare.take() else {
            // No spare (it could not be reopened last time): try to get one
            // for next time and report the exhaustion.
            *spare = open_spare();
            return Err(exhausted);
        };
        drop(file);
        let shed = match retrying(&mut accept) {
            Ok(conn) => {
                // Closed before the spare is reopened: the spare takes its
                // number back.
                drop(conn);
                self.shed.fetch_add(1, Ordering::Relaxed);
                Err(exhausted)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(e),
            // Still out of descriptors (another thread took the spare's
            // number) or some other failure: report the exhaustion.
            Err(_) => Err(exhausted),
        };
        *spare = open_spare();
        shed
    }
}
