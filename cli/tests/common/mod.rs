//! Running the `txmesh` binary from a test, output captured: long runs bounded in time,
//! short ones fed on stdin.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// A finished run.
pub struct Run {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

/// Runs `txmesh <args>`; kills it and fails the test when it takes longer than `bound`.
pub fn txmesh(args: &[&str], bound: Duration) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_txmesh"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("txmesh starts");
    let deadline = Instant::now() + bound;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("txmesh {args:?} did not finish within {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |pipe: Option<&mut dyn Read>| {
        let mut text = String::new();
        pipe.expect("piped")
            .read_to_string(&mut text)
            .expect("readable");
        text
    };
    Run {
        status,
        stdout: read(child.stdout.as_mut().map(|p| p as _)),
        stderr: read(child.stderr.as_mut().map(|p| p as _)),
    }
}

/// Runs `txmesh <args>` with `stdin` as its input, to its end.
pub fn txmesh_with_input(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_txmesh"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("txmesh starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes())
        .expect("stdin is written");
    child.wait_with_output().expect("txmesh runs")
}
