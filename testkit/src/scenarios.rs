//! The hand-written scenarios. Each runs on the model and on every backend;
//! the traces must be equal. Shrunk property-test failures print in this
//! syntax and can be pasted here.
//!
//! Handles are numbered in creation order: `Open(Pipe)` makes the read end
//! then the write end, `Open(Pair)` the two socket ends, `Open(File)` one
//! regular file, `Reuse(h, k)` new descriptors, the first at `h`'s number.

use evmux_interest::Mode::{Edge, Level, Oneshot};

use crate::scenario::Step::*;
use crate::scenario::{BOTH, R, Scenario, W, decl};
use crate::world::NewKind::{File, Pair, Pipe};

fn sc(name: &'static str, category: &'static str, steps: Vec<crate::scenario::Step>) -> Scenario {
    Scenario {
        name,
        category,
        steps,
    }
}

/// Every hand-written scenario.
pub fn all() -> Vec<Scenario> {
    vec![
        // ---- level ----
        sc(
            "level-read-while-data",
            "level",
            vec![
                Open(Pipe),
                decl(0, 1, R, Level),
                Wait,
                Write(1, 10),
                Wait,
                Wait,
                Read(0, 4),
                Wait,
                Read(0, 100),
                Wait,
            ],
        ),
        sc(
            "level-write-always",
            "level",
            vec![
                Open(Pair),
                decl(0, 1, W, Level),
                Wait,
                Wait,
                Write(0, 100),
                Wait,
            ],
        ),
        sc(
            "level-both-directions",
            "level",
            vec![
                Open(Pair),
                decl(0, 1, BOTH, Level),
                decl(1, 2, R, Level),
                Wait,
                Write(1, 5),
                Wait,
                Drain(0),
                Wait,
            ],
        ),
        sc(
            "level-flip-read-write-read",
            "level",
            vec![
                Open(Pair),
                decl(0, 1, R, Level),
                Wait,
                Write(1, 3),
                decl(0, 1, W, Level),
                decl(0, 1, R, Level),
                Wait,
                decl(0, 1, W, Level),
                Wait,
                decl(0, 1, R, Level),
                Wait,
            ],
        ),
        sc(
            "level-full-then-drained",
            "level",
            vec![
                Open(Pipe),
                decl(1, 1, W, Level),
                Wait,
                Fill(1),
                Wait,
                Write(1, 1),
                Drain(0),
                Wait,
            ],
        ),
        // ---- edge ----
        sc(
            "edge-read-once-until-would-block",
            "edge",
            vec![
                Open(Pipe),
                decl(0, 1, R, Edge),
                Write(1, 10),
                Wait,
                Wait,
                Read(0, 4),
                Wait,
                Write(1, 3),
                Wait,
                Drain(0),
                Wait,
                Write(1, 1),
                Wait,
                Wait,
            ],
        ),
        sc(
            "edge-write-once-until-would-block",
            "edge",
            vec![
                Open(Pair),
                decl(0, 1, W, Edge),
                Wait,
                Wait,
                Write(0, 10),
                Wait,
                Fill(0),
                Wait,
                Drain(1),
                Wait,
                Wait,
            ],
        ),
        sc(
            "edge-redeclare-rearms",
            "edge",
            vec![
                Open(Pipe),
                Write(1, 10),
                decl(0, 1, R, Edge),
                Wait,
                Wait,
                decl(0, 1, R, Edge),
                Wait,
                Wait,
                Read(0, 3),
                decl(0, 1, R, Edge),
                Wait,
            ],
        ),
        sc(
            "edge-both-directions-independent",
            "edge",
            vec![
                Open(Pair),
                decl(0, 1, BOTH, Edge),
                Wait,
                Write(1, 4),
                Wait,
                Drain(0),
                Write(1, 4),
                Wait,
                Fill(0),
                Wait,
                Drain(1),
                Wait,
            ],
        ),
        sc(
            "edge-flip-to-write-and-back",
            "edge",
            vec![
                Open(Pair),
                decl(0, 1, R, Edge),
                Write(1, 2),
                Wait,
                decl(0, 1, W, Edge),
                decl(0, 1, R, Edge),
                Wait,
                Drain(0),
                Write(1, 2),
                Wait,
            ],
        ),
        // ---- oneshot ----
        sc(
            "oneshot-once-until-declared",
            "oneshot",
            vec![
                Open(Pipe),
                decl(0, 1, R, Oneshot),
                Write(1, 5),
                Wait,
                Wait,
                Write(1, 5),
                Wait,
                decl(0, 1, R, Oneshot),
                Wait,
                Wait,
            ],
        ),
        sc(
            "oneshot-both-directions-one-event",
            "oneshot",
            vec![
                Open(Pair),
                Write(1, 3),
                decl(0, 1, BOTH, Oneshot),
                Wait,
                Wait,
                decl(0, 1, W, Oneshot),
                Wait,
                Wait,
            ],
        ),
        sc(
            "oneshot-not-ready-stays-armed",
            "oneshot",
            vec![
                Open(Pipe),
                decl(0, 1, R, Oneshot),
                Wait,
                Wait,
                Write(1, 1),
                Wait,
                Wait,
            ],
        ),
        sc(
            "oneshot-switch-to-level",
            "oneshot",
            vec![
                Open(Pipe),
                Write(1, 2),
                decl(0, 1, R, Oneshot),
                Wait,
                decl(0, 1, R, Level),
                Wait,
                Wait,
            ],
        ),
        sc(
            // Found by the property test: the intermediate Level declare
            // must not make the driver forget that the kernel's oneshot
            // already fired.
            "oneshot-rearm-through-level-between-waits",
            "oneshot",
            vec![
                Open(Pipe),
                decl(1, 3, BOTH, Oneshot),
                Wait,
                decl(1, 3, R, Level),
                decl(1, 3, BOTH, Oneshot),
                Wait,
                Wait,
            ],
        ),
        sc(
            "edge-rearm-through-level-between-waits",
            "edge",
            vec![
                Open(Pipe),
                Write(1, 5),
                decl(0, 1, R, Edge),
                Wait,
                decl(0, 1, BOTH, Level),
                decl(0, 1, R, Edge),
                Wait,
                Wait,
            ],
        ),
        // ---- hangup ----
        sc(
            "hangup-pipe-writer-closed",
            "hangup",
            vec![
                Open(Pipe),
                decl(0, 1, R, Level),
                Write(1, 3),
                Close(1),
                Wait,
                Drain(0),
                Wait,
            ],
        ),
        sc(
            "hangup-pipe-reader-closed",
            "hangup",
            vec![
                Open(Pipe),
                decl(1, 1, W, Level),
                Wait,
                Close(0),
                Wait,
                Write(1, 1),
                Wait,
            ],
        ),
        sc(
            "hangup-socket-peer-shutdown-write",
            "hangup",
            vec![
                Open(Pair),
                decl(0, 1, BOTH, Level),
                Wait,
                ShutdownWrite(1),
                Wait,
                Read(0, 10),
                Wait,
            ],
        ),
        sc(
            "hangup-socket-both-shutdown",
            "hangup",
            vec![
                Open(Pair),
                decl(0, 1, R, Level),
                decl(1, 2, W, Level),
                ShutdownWrite(1),
                ShutdownWrite(0),
                Wait,
            ],
        ),
        sc(
            "hangup-socket-peer-closed",
            "hangup",
            vec![
                Open(Pair),
                decl(0, 1, BOTH, Edge),
                Wait,
                Close(1),
                Wait,
                Drain(0),
                Wait,
            ],
        ),
        sc(
            "hangup-write-only-interest-sees-hup",
            "hangup",
            vec![Open(Pair), decl(0, 1, W, Level), Wait, Close(1), Wait],
        ),
        sc(
            "hangup-edge-reports-once",
            "hangup",
            vec![
                Open(Pipe),
                decl(0, 1, R, Level),
                Close(1),
                Wait,
                decl(0, 1, R, Edge),
                Wait,
                Wait,
            ],
        ),
        sc(
            "error-econnreset-on-close-with-unread-data",
            "hangup",
            vec![
                Open(Pair),
                decl(0, 1, R, Level),
                Write(0, 7),
                Close(1),
                Wait,
                Drain(0),
                Wait,
            ],
        ),
        // ---- forget / redeclare ----
        sc(
            "forget-silences-token",
            "forget",
            vec![
                Open(Pipe),
                decl(0, 1, R, Level),
                Write(1, 1),
                Wait,
                Forget(1),
                Wait,
                decl(0, 2, R, Level),
                Wait,
            ],
        ),
        sc(
            "forget-before-first-wait",
            "forget",
            vec![
                Open(Pipe),
                decl(0, 1, R, Level),
                Write(1, 1),
                Forget(1),
                Wait,
            ],
        ),
        sc(
            "redeclare-changes-mode",
            "forget",
            vec![
                Open(Pair),
                decl(0, 1, W, Level),
                Wait,
                decl(0, 1, W, Edge),
                Wait,
                Wait,
                decl(0, 1, W, Level),
                Wait,
            ],
        ),
        // ---- fd reuse ----
        sc(
            "reuse-across-waits",
            "reuse",
            vec![
                Open(Pipe),
                decl(0, 1, R, Level),
                Write(1, 1),
                Wait,
                Forget(1),
                Reuse(0, Pair),
                Write(3, 2),
                decl(2, 2, R, Level),
                Wait,
            ],
        ),
        sc(
            "reuse-within-one-batch",
            "reuse",
            vec![
                Open(Pair),
                decl(0, 1, BOTH, Level),
                Wait,
                Forget(1),
                Reuse(0, Pipe),
                decl(2, 2, R, Level),
                Write(3, 1),
                Wait,
            ],
        ),
        sc(
            "reuse-closed-never-forgotten-is-refused",
            "reuse",
            vec![
                Open(Pair),
                decl(0, 1, R, Edge),
                Wait,
                Reuse(0, Pair),
                decl(2, 2, R, Level),
                Forget(1),
                decl(2, 2, R, Level),
                Write(3, 1),
                Wait,
            ],
        ),
        sc(
            "reuse-with-pending-readiness",
            "reuse",
            vec![
                Open(Pair),
                Write(1, 4),
                decl(0, 1, R, Oneshot),
                Forget(1),
                Reuse(0, File),
                decl(2, 2, W, Edge),
                Wait,
                Wait,
            ],
        ),
        // ---- regular files ----
        sc(
            "file-level-always-ready",
            "file",
            vec![
                Open(File),
                decl(0, 1, BOTH, Level),
                Wait,
                Wait,
                Write(0, 10),
                Read(0, 3),
                Wait,
            ],
        ),
        sc(
            "file-edge-once",
            "file",
            vec![
                Open(File),
                decl(0, 1, R, Edge),
                Wait,
                Wait,
                decl(0, 1, R, Edge),
                Wait,
                Wait,
            ],
        ),
        sc(
            "file-oneshot-and-forget",
            "file",
            vec![
                Open(File),
                decl(0, 1, W, Oneshot),
                Wait,
                Wait,
                decl(0, 1, BOTH, Oneshot),
                Wait,
                Forget(1),
                Wait,
            ],
        ),
        sc(
            "file-beside-pipe",
            "file",
            vec![
                Open(File),
                Open(Pipe),
                decl(0, 1, R, Level),
                decl(1, 2, R, Level),
                Wait,
                Write(2, 1),
                Wait,
            ],
        ),
        // ---- errors ----
        sc(
            "errors-closed-descriptor-is-an-event",
            "errors",
            vec![
                Open(Pipe),
                Open(Pipe),
                Close(0),
                decl(0, 1, R, Level),
                decl(2, 2, R, Level),
                Write(3, 1),
                Wait,
                Wait,
                Forget(1),
                Wait,
            ],
        ),
        sc(
            "errors-duplicate-token",
            "errors",
            vec![
                Open(Pipe),
                decl(0, 1, R, Level),
                decl(1, 1, W, Level),
                Write(1, 1),
                Wait,
            ],
        ),
        sc(
            "errors-duplicate-fd",
            "errors",
            vec![
                Open(Pipe),
                decl(0, 1, R, Level),
                decl(0, 2, R, Level),
                Write(1, 1),
                Wait,
            ],
        ),
        sc(
            "errors-unknown-token",
            "errors",
            vec![
                Open(Pipe),
                Forget(4),
                decl(0, 1, R, Level),
                Forget(1),
                Forget(1),
                Wait,
            ],
        ),
        sc(
            "errors-negative-fd",
            "errors",
            vec![
                DeclareRaw { fd: -1, token: 3 },
                Open(Pipe),
                decl(0, 3, R, Level),
                Write(1, 1),
                Wait,
            ],
        ),
        sc(
            "errors-closed-then-redeclared-open",
            "errors",
            vec![
                Open(Pipe),
                Close(0),
                decl(0, 1, R, Level),
                Wait,
                Wait,
                Forget(1),
                Open(Pipe),
                decl(2, 1, R, Level),
                Write(3, 1),
                Wait,
            ],
        ),
        // ---- timer ----
        // Real backends run these in real time: deadlines are spaced so that
        // scheduling noise of tens of milliseconds cannot reorder anything,
        // and each `WaitFor(5000)` would take 5 s if a timer failed to cut
        // the wait short.
        sc(
            "timer-fires-once",
            "timer",
            vec![AddTimer(1, 120), Wait, WaitFor(5000), Wait, CancelTimer(1)],
        ),
        sc(
            "timer-cancelled-never-fires",
            "timer",
            vec![
                AddTimer(1, 40),
                AddTimer(2, 160),
                CancelTimer(1),
                CancelTimer(1),
                WaitFor(5000),
                Wait,
            ],
        ),
        sc(
            "timer-cuts-a-wait-short-and-fd-events-still-come",
            "timer",
            vec![
                Open(Pipe),
                decl(0, 1, R, Level),
                AddTimer(2, 60),
                WaitFor(5000),
                Write(1, 3),
                WaitFor(5000),
                Read(0, 10),
                Wait,
            ],
        ),
        sc(
            "timer-equal-deadlines-fire-together-in-order",
            "timer",
            vec![
                AddTimerAt(3, 300),
                AddTimerAt(1, 150),
                AddTimerAt(2, 150),
                WaitFor(5000),
                WaitFor(5000),
                Wait,
            ],
        ),
        sc(
            "timer-past-deadline-fires-at-next-wait",
            "timer",
            vec![AddTimerAt(1, 0), Wait, Wait],
        ),
        sc(
            "timer-wait-times-out-before-deadline",
            "timer",
            vec![AddTimer(1, 400), WaitFor(20), Wait, WaitFor(5000)],
        ),
        sc(
            "timer-reuses-its-token-after-expiry",
            "timer",
            vec![
                AddTimer(1, 30),
                AddTimer(1, 30),
                WaitFor(5000),
                AddTimer(1, 30),
                WaitFor(5000),
            ],
        ),
        sc(
            "timer-tokens-share-the-namespace",
            "timer",
            vec![
                Open(Pipe),
                decl(0, 1, R, Level),
                AddTimer(1, 100),
                AddTimer(2, 100),
                decl(1, 2, W, Level),
                CancelTimer(2),
                decl(1, 2, W, Level),
                CancelTimer(5),
                Wait,
            ],
        ),
        // ---- user ----
        sc(
            "user-triggers-coalesce",
            "user",
            vec![
                AddUser(1),
                Trigger(1),
                Trigger(1),
                Wait,
                Wait,
                Trigger(1),
                Wait,
            ],
        ),
        sc(
            "user-remove-drops-a-pending-trigger",
            "user",
            vec![
                AddUser(1),
                Trigger(1),
                RemoveUser(1),
                Wait,
                Trigger(1),
                RemoveUser(1),
                AddUser(1),
                Wait,
            ],
        ),
        sc(
            "user-tokens-share-the-namespace",
            "user",
            vec![
                Open(Pipe),
                decl(0, 1, R, Level),
                AddUser(1),
                AddUser(2),
                AddUser(2),
                decl(1, 2, W, Level),
                AddTimer(2, 10),
                Wait,
            ],
        ),
        sc(
            "user-and-descriptor-events-in-one-wait",
            "user",
            vec![
                Open(Pipe),
                decl(0, 1, R, Level),
                AddUser(2),
                Write(1, 1),
                Trigger(2),
                Wait,
                Wait,
            ],
        ),
        // ---- threads ----
        sc(
            "threads-declare-and-forget-from-another-thread",
            "threads",
            vec![
                Open(Pipe),
                Write(1, 1),
                ThreadDeclare {
                    h: 0,
                    token: 1,
                    interest: R,
                    mode: Level,
                },
                Wait,
                ThreadForget(1),
                Wait,
            ],
        ),
        sc(
            "threads-conflicts-become-error-events",
            "threads",
            vec![
                Open(Pipe),
                decl(0, 1, R, Level),
                ThreadDeclare {
                    h: 0,
                    token: 2,
                    interest: R,
                    mode: Level,
                },
                ThreadForget(7),
                Wait,
                Wait,
            ],
        ),
        sc(
            "threads-operations-apply-in-issue-order",
            "threads",
            vec![
                Open(Pair),
                ThreadDeclare {
                    h: 0,
                    token: 1,
                    interest: R,
                    mode: Level,
                },
                ThreadForget(1),
                ThreadDeclare {
                    h: 0,
                    token: 1,
                    interest: W,
                    mode: Level,
                },
                Wait,
                ThreadForget(1),
                ThreadDeclare {
                    h: 1,
                    token: 1,
                    interest: W,
                    mode: Oneshot,
                },
                Wait,
                Wait,
            ],
        ),
        // ---- signal ----
        // Signals are raised at this thread only, and only while a source
        // watches (blocks) them. 10 = SIGUSR1, 12 = SIGUSR2, 40 = a
        // real-time signal.
        sc(
            "signal-standard-deliveries-merge",
            "signal",
            vec![
                AddSignal(1, 10),
                Wait,
                Raise(10),
                Raise(10),
                Wait,
                Wait,
                Raise(10),
                Wait,
                RemoveSignal(1),
            ],
        ),
        sc(
            "signal-realtime-deliveries-queue",
            "signal",
            vec![
                AddSignal(1, 40),
                Raise(40),
                Raise(40),
                Raise(40),
                Wait,
                Wait,
                RemoveSignal(1),
            ],
        ),
        sc(
            "signal-bad-input",
            "signal",
            vec![
                AddSignal(1, 9),
                AddSignal(1, 19),
                AddSignal(1, 0),
                AddSignal(1, 65),
                AddSignal(1, 12),
                AddSignal(2, 12),
                RemoveSignal(2),
                Open(Pipe),
                decl(0, 3, R, Level),
                AddSignal(3, 10),
                RemoveSignal(1),
                RemoveSignal(1),
            ],
        ),
        sc(
            "signal-and-descriptor-events-in-one-wait",
            "signal",
            vec![
                Open(Pipe),
                decl(0, 1, R, Level),
                AddSignal(2, 12),
                Write(1, 1),
                Raise(12),
                Wait,
                Wait,
                RemoveSignal(2),
            ],
        ),
        sc(
            "signal-source-takes-a-descriptor-number",
            "signal",
            vec![
                AddSignal(1, 10),
                Open(Pipe),
                decl(0, 2, R, Level),
                Write(1, 1),
                Raise(10),
                Wait,
                RemoveSignal(1),
                Open(Pipe),
                decl(2, 3, R, Level),
                Write(3, 1),
                Wait,
            ],
        ),
        sc(
            "signal-remove-drops-deliveries-not-yet-reported",
            "signal",
            vec![
                AddSignal(1, 10),
                Raise(10),
                RemoveSignal(1),
                Wait,
                AddSignal(1, 10),
                Wait,
                RemoveSignal(1),
            ],
        ),
        // ---- process ----
        // Children exit at once; real backends wait for it with WaitFor.
        sc(
            "process-exit-reported-once-then-the-watch-ends",
            "process",
            vec![
                Spawn(3),
                AddProcess(1, 0),
                WaitFor(5000),
                Wait,
                RemoveProcess(1),
            ],
        ),
        sc(
            "process-exit-code-zero-alongside-a-descriptor",
            "process",
            vec![
                Open(Pipe),
                decl(0, 1, R, Level),
                Spawn(0),
                AddProcess(2, 0),
                WaitFor(5000),
                Write(1, 1),
                Wait,
            ],
        ),
        sc(
            "process-bad-input",
            "process",
            vec![
                Open(Pipe),
                decl(0, 1, R, Level),
                Spawn(7),
                AddProcess(1, 0),
                AddProcessRaw(2, i32::MAX),
                AddProcessRaw(2, -5),
                RemoveProcess(1),
                AddProcess(2, 0),
                WaitFor(5000),
            ],
        ),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_unique_and_there_are_enough() {
        let all = super::all();
        let mut names: Vec<_> = all.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert!(all.len() >= 30);
    }
}
