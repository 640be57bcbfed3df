//! An echo server: what a client sends comes back.
//!
//! ```text
//! cargo run -p evmux-net --example echo -- [--backend NAME] [--port 7878] [--mode edge|level]
//! nc 127.0.0.1 7878
//! ```
//!
//! The shape of an evmux program with `evmux-net`: sources registered under
//! tokens of the program's choosing, I/O methods that take the poller (so
//! that a `WouldBlock` re-arms an edge registration by itself), and the
//! interest switched between reading and writing as the output queue fills
//! and drains; the poller turns those switches into kernel calls only when
//! they do not cancel out.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;

use evmux_backends::{AnyBackend, BackendKind, PollerExt};
use evmux_interest::{Events, Interest, Mode, Poller, Token};
use evmux_net::{TcpListener, TcpStream};

const LISTENER: Token = Token(0);

struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet echoed.
    out: Vec<u8>,
    interest: Interest,
    peer_done: bool,
}

/// Reads what is there, echoes what it can; `Ok(false)` when the
/// connection is finished.
fn drive(conn: &mut Conn, poller: &mut Poller<AnyBackend>, mode: Mode) -> io::Result<bool> {
    let mut buf = [0u8; 16 * 1024];
    // Read while there is no backlog of output (back-pressure).
    while conn.out.is_empty() && !conn.peer_done {
        match conn.stream.read(poller, &mut buf) {
            Ok(0) => conn.peer_done = true,
            Ok(n) => conn.out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
        // Echo at once.
        while !conn.out.is_empty() {
            match conn.stream.write(poller, &conn.out) {
                Ok(n) => {
                    conn.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
    }
    while !conn.out.is_empty() {
        match conn.stream.write(poller, &conn.out) {
            Ok(n) => {
                conn.out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if conn.peer_done && conn.out.is_empty() {
        return Ok(false);
    }
    let want = if conn.out.is_empty() {
        Interest::READABLE
    } else {
        Interest::WRITABLE
    };
    if want != conn.interest || mode == Mode::Oneshot {
        // Declaring again also re-arms, so an edge registration reports a
        // direction that became ready while it was not asked for.
        conn.stream.reregister(poller, want, mode)?;
        conn.interest = want;
    }
    Ok(true)
}

fn main() -> ExitCode {
    let mut backend = BackendKind::Auto;
    let mut port = 7878u16;
    let mut mode = Mode::Edge;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--backend" => match BackendKind::from_name(&value) {
                Ok(k) => backend = k,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            },
            "--port" => port = value.parse().unwrap_or(port),
            "--mode" if value == "level" => mode = Mode::Level,
            "--mode" if value == "edge" => mode = Mode::Edge,
            "--mode" if value == "oneshot" => mode = Mode::Oneshot,
            _ => {
                eprintln!("usage: echo [--backend NAME] [--port PORT] [--mode edge|level|oneshot]");
                return ExitCode::FAILURE;
            }
        }
    }
    match run(backend, port, mode) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(backend: BackendKind, port: u16, mode: Mode) -> io::Result<()> {
    let mut poller = Poller::<AnyBackend>::with_backend(backend)?;
    let mut listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    listener.register(&mut poller, LISTENER, Interest::READABLE, mode)?;
    println!(
        "echo on {} ({} backend, {mode:?} mode)",
        listener.local_addr()?,
        poller.backend_name()
    );
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut events = Events::with_capacity(256);
    loop {
        poller.get_next_event(&mut events, None)?;
        for ev in events.iter() {
            if ev.token == LISTENER {
                loop {
                    match listener.accept(&mut poller) {
                        Ok((mut stream, _)) => {
                            let i = conns.iter().position(Option::is_none).unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            stream.register(&mut poller, Token(i + 1), Interest::READABLE, mode)?;
                            conns[i] = Some(Conn {
                                stream,
                                out: Vec::new(),
                                interest: Interest::READABLE,
                                peer_done: false,
                            });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            // EMFILE (a connection was shed), ECONNRESET, …:
                            // per-connection trouble; go on.
                            eprintln!("accept: {e}");
                        }
                    }
                }
                if mode == Mode::Oneshot {
                    listener.reregister(&mut poller, Interest::READABLE, mode)?;
                }
                continue;
            }
            let i = ev.token.0 - 1;
            let Some(conn) = conns.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            match drive(conn, &mut poller, mode) {
                Ok(true) => {}
                Ok(false) | Err(_) => {
                    // Forget before close.
                    let mut conn = conns[i].take().expect("live");
                    conn.stream.deregister(&mut poller)?;
                }
            }
        }
    }
}
