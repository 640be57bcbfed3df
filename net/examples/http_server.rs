//! A small HTTP/1.1 server: keep-alive, a fixed "hello world" response, an
//! idle timeout, a request-size cap (oversized → 431, malformed → 400, then
//! that connection is closed), one event loop per thread.
//!
//! ```text
//! cargo run --release -p evmux-net --example http_server -- \
//!     [--backend auto|epoll|poll|select|uring|superpoll] [--threads N] \
//!     [--port 8080] [--addr 127.0.0.1] [--idle-timeout-ms 10000] \
//!     [--max-request 8192] [--mode edge|level|oneshot]
//! curl -v http://127.0.0.1:8080/
//! ```
//!
//! With `--threads N` every thread has its own poller and its own listener
//! on the same port (`SO_REUSEPORT`): the kernel spreads connections over
//! them, no lock is shared; with one (the default) the loop runs on the
//! main thread. The server loop is `evmux_net::http::server`.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use evmux_backends::{AnyBackend, BackendKind, PollerExt};
use evmux_interest::{Mode, Poller};
use evmux_net::TcpListener;
use evmux_net::http::server::{Config, Server};

struct Args {
    backend: BackendKind,
    threads: usize,
    addr: IpAddr,
    port: u16,
    config: Config,
}

const USAGE: &str = "usage: http_server [--backend NAME] [--threads N] [--port PORT] \
[--addr IP] [--idle-timeout-ms MS] [--max-request BYTES] [--mode edge|level|oneshot] (edge by default)";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        backend: BackendKind::Auto,
        threads: 1,
        addr: IpAddr::from([127, 0, 0, 1]),
        port: 8080,
        config: Config::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_string());
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--backend" => args.backend = BackendKind::from_name(&value).map_err(|e| bad(&e))?,
            "--threads" => args.threads = value.parse().map_err(|e| bad(&e))?,
            "--port" => args.port = value.parse().map_err(|e| bad(&e))?,
            "--addr" => args.addr = value.parse().map_err(|e| bad(&e))?,
            "--idle-timeout-ms" => {
                args.config.idle_timeout =
                    Duration::from_millis(value.parse().map_err(|e| bad(&e))?);
            }
            "--max-request" => args.config.max_head = value.parse().map_err(|e| bad(&e))?,
            "--mode" => {
                args.config.mode = match value.as_str() {
                    "edge" => Mode::Edge,
                    "level" => Mode::Level,
                    "oneshot" => Mode::Oneshot,
                    _ => return Err(bad(&"expected edge, level or oneshot")),
                }
            }
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if args.threads == 0 {
        return Err("--threads must be at least 1".to_string());
    }
    Ok(args)
}

fn serve(listener: TcpListener, backend: BackendKind, config: Config) -> std::io::Result<()> {
    // Made on the thread that runs it (io_uring keeps per-thread state).
    let poller = Poller::<AnyBackend>::with_backend(backend)?;
    Server::new(poller, listener, config)?.run()
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let backend = match args.backend.resolve() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // The first listener resolves port 0; the others join it.
    let first = match TcpListener::bind_reuse_port(SocketAddr::new(args.addr, args.port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bind {}:{}: {e}", args.addr, args.port);
            return ExitCode::FAILURE;
        }
    };
    let addr = first.local_addr().expect("local address");
    let mut listeners = vec![first];
    for _ in 1..args.threads {
        match TcpListener::bind_reuse_port(addr) {
            Ok(l) => listeners.push(l),
            Err(e) => {
                eprintln!("bind {addr} (SO_REUSEPORT): {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "listening on http://{addr}/ with {} thread(s), backend {backend}, {:?} mode, \
         idle timeout {:?}, request cap {} bytes",
        args.threads, args.config.mode, args.config.idle_timeout, args.config.max_head
    );
    if listeners.len() == 1 {
        // One loop: run it on this thread. A process that never started a
        // second thread keeps glibc's single-threaded fast path in every
        // `recv`/`send` wrapper (no asynchronous-cancellation toggling
        // around each call, ~3% of the CPU time per request under load).
        let l = listeners.pop().expect("one listener");
        return match serve(l, backend, args.config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("server: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let threads: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let config = args.config.clone();
            thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || serve(l, backend, config))
                .expect("spawn")
        })
        .collect();
    let mut code = ExitCode::SUCCESS;
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("server thread: {e}");
                code = ExitCode::FAILURE;
            }
            Err(_) => code = ExitCode::FAILURE,
        }
    }
    code
}
