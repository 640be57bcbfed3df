//! `accept` under `EMFILE`: the listener sheds what it cannot take, keeps
//! serving, and the loop does not spin.
//!
//! The descriptor limit is per process, so the real test runs in a child:
//! `emfile_is_survived` re-executes this test binary (filtered to itself)
//! once per backend with `EVMUX_NET_EMFILE_CHILD=1`; in the child the same
//! test lowers `RLIMIT_NOFILE`, fills the table, and checks a TCP and a Unix
//! listener in level and edge mode.

mod common;

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::TIMEOUT;
use evmux_backends::{AnyBackend, BackendKind};
use evmux_interest::{Events, Interest, Mode, Poller, Token};
use evmux_net::{TcpListener, UnixListener};
use rustix::process::{Resource, getrlimit, setrlimit};

const CHILD_VAR: &str = "EVMUX_NET_EMFILE_CHILD";
const MARKER: &str = "emfile child: ok";
const L: Token = Token(1);

#[test]
fn emfile_is_survived() {
    if std::env::var_os(CHILD_VAR).is_some() {
        emfile_child();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut ran = 0;
    for kind in common::kinds() {
        if common::poller(kind).is_none() {
            continue;
        }
        let out = Command::new(&exe)
            .args([
                "--exact",
                "emfile_is_survived",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_VAR, "1")
            .env(evmux_backends::ENV_VAR, kind.name())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains(MARKER),
            "{kind}: child failed ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status
        );
        ran += 1;
    }
    assert!(ran > 0);
}

/// A listener under test and how to connect a (blocking, std) client.
trait Listener {
    type Client: Read + Write;
    fn register(&mut self, p: &mut Poller<AnyBackend>, mode: Mode);
    fn deregister(&mut self, p: &mut Poller<AnyBackend>);
    fn connect(&self) -> Self::Client;
    /// Accepts one connection: the server side as a std stream.
    fn accept(&self, p: &mut Poller<AnyBackend>) -> io::Result<Box<dyn Write>>;
    fn shed_count(&self) -> u64;
}

struct Tcp(TcpListener, SocketAddr);

impl Listener for Tcp {
    type Client = std::net::TcpStream;
    fn register(&mut self, p: &mut Poller<AnyBackend>, mode: Mode) {
        self.0.register(p, L, Interest::READABLE, mode).unwrap();
    }
    fn deregister(&mut self, p: &mut Poller<AnyBackend>) {
        self.0.deregister(p).unwrap();
    }
    fn connect(&self) -> std::net::TcpStream {
        let c = std::net::TcpStream::connect(self.1).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        c
    }
    fn accept(&self, p: &mut Poller<AnyBackend>) -> io::Result<Box<dyn Write>> {
        let (s, _) = self.0.accept(p)?;
        let s = s.into_std();
        s.set_nonblocking(false)?;
        Ok(Box::new(s))
    }
    fn shed_count(&self) -> u64 {
        self.0.shed_count()
    }
}

struct Unix(UnixListener, std::path::PathBuf);

impl Listener for Unix {
    type Client = std::os::unix::net::UnixStream;
    fn register(&mut self, p: &mut Poller<AnyBackend>, mode: Mode) {
        self.0.register(p, L, Interest::READABLE, mode).unwrap();
    }
    fn deregister(&mut self, p: &mut Poller<AnyBackend>) {
        self.0.deregister(p).unwrap();
    }
    fn connect(&self) -> std::os::unix::net::UnixStream {
        let c = std::os::unix::net::UnixStream::connect(&self.1).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        c
    }
    fn accept(&self, p: &mut Poller<AnyBackend>) -> io::Result<Box<dyn Write>> {
        let (s, _) = self.0.accept(p)?;
        let s = s.into_std();
        s.set_nonblocking(false)?;
        Ok(Box::new(s))
    }
    fn shed_count(&self) -> u64 {
        self.0.shed_count()
    }
}

fn is_emfile(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::MFILE.raw_os_error())
}

/// The highest open descriptor number.
fn max_fd() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap()
}

/// With 5 connections pending and room for exactly 2 descriptors: 2 are
/// accepted, 3 shed (their clients see the connection closed), the
/// listener then stays quiet (no spin), and once descriptors are free again
/// it accepts and serves a new connection.
fn check(poller: &mut Poller<AnyBackend>, mut l: impl Listener, mode: Mode) {
    const PENDING: usize = 5;
    l.register(poller, mode);
    let mut clients: Vec<_> = (0..PENDING).map(|_| l.connect()).collect();

    let saved = getrlimit(Resource::Nofile);
    let mut lowered = saved;
    lowered.current = Some(max_fd() + 16);
    setrlimit(Resource::Nofile, lowered).unwrap();
    // Fill every number below the limit, then free exactly two.
    let mut fillers = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => fillers.push(f),
            Err(e) if is_emfile(&e) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(fillers.len() >= 2);
    fillers.truncate(fillers.len() - 2);

    let mut accepted = Vec::new();
    let mut exhausted = 0;
    let mut events = Events::with_capacity(8);
    let mut waits = 0;
    while accepted.len() + (l.shed_count() as usize) < PENDING {
        waits += 1;
        assert!(
            waits < 100,
            "{mode:?}: the listener keeps reporting without progress"
        );
        let n = poller.get_next_event(&mut events, Some(TIMEOUT)).unwrap();
        assert!(n > 0, "{mode:?}: no event for the pending connections");
        loop {
            let shed_before = l.shed_count();
            match l.accept(poller) {
                Ok(s) => accepted.push(s),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if is_emfile(&e) => {
                    assert_eq!(
                        l.shed_count(),
                        shed_before + 1,
                        "{mode:?}: EMFILE without shedding"
                    );
                    exhausted += 1;
                }
                Err(e) => panic!("{mode:?}: accept: {e}"),
            }
        }
    }
    assert_eq!(accepted.len(), 2, "{mode:?}");
    assert_eq!(l.shed_count(), 3, "{mode:?}");
    assert_eq!(exhausted, 3, "{mode:?}");

    // Nothing pending: the listener is quiet (a level loop would spin here
    // if the shed connections were still queued).
    let n = poller
        .get_next_event(&mut events, Some(Duration::from_millis(100)))
        .unwrap();
    assert_eq!(n, 0, "{mode:?}: {:?}", events.as_slice());

    // The shed clients see their connection closed, in accept order.
    for c in &mut clients[2..] {
        let mut buf = [0u8; 1];
        match c.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("{mode:?}: a shed client read {other:?}"),
        }
    }
    // The accepted ones are served.
    for (s, c) in accepted.iter_mut().zip(&mut clients) {
        s.write_all(b"served").unwrap();
        let mut buf = [0u8; 6];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"served");
    }

    // Free the two accepted connections' numbers: a new client takes one,
    // the listener accepts into the other.
    drop(accepted);
    let mut late = l.connect();
    let mut s = loop {
        poller.get_next_event(&mut events, Some(TIMEOUT)).unwrap();
        match l.accept(poller) {
            Ok(s) => break s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{mode:?}: accept after recovery: {e}"),
        }
    };
    s.write_all(b"again").unwrap();
    let mut buf = [0u8; 5];
    late.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"again");

    drop(s);
    drop(fillers);
    setrlimit(Resource::Nofile, saved).unwrap();
    l.deregister(poller);
}

/// The child's part: runs only with `CHILD_VAR` set.
fn emfile_child() {
    let kind = BackendKind::Auto.resolve().unwrap();
    for mode in [Mode::Level, Mode::Edge] {
        let mut poller = common::poller(kind).unwrap();
        let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        check(&mut poller, Tcp(l, addr), mode);
        assert!(poller.is_empty());

        let path = common::socket_path("emfile");
        let l = UnixListener::bind(&path).unwrap();
        check(&mut poller, Unix(l, path.clone()), mode);
        std::fs::remove_file(&path).unwrap();
        println!("{kind} {mode:?}: shed and recovered");
    }
    println!("{MARKER}");
}
