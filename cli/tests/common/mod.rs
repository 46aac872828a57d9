//! Running the `txmesh` binary from a test: bounded in time, output captured.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
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
