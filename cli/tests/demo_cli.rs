//! `txmesh demo` as a binary, shortened: with the leader kill it ends with the invariant
//! holding and exit code 0; made to fail (a service that credits twice) it reports the broken
//! invariant and exits non-zero. Either way it leaves no coordinator or data behind.

mod common;

use std::path::Path;
use std::time::Duration;

use common::Run;

/// Three coordinators' startup, an election after the kill, a restart and a few hundred
/// transfers take seconds even in a debug build on a busy machine; beyond this it is stuck.
const BOUND: Duration = Duration::from_secs(180);

fn demo(args: &[&str]) -> Run {
    let args: Vec<&str> = ["demo"].iter().chain(args).copied().collect();
    common::txmesh(&args, BOUND)
}

/// The temporary directory the demo announced; it must be gone once the demo has exited.
fn assert_cleaned_up(stdout: &str) {
    let dir = stdout
        .split("RocksDB under ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the demo names its data directory");
    assert!(
        !Path::new(dir).exists(),
        "{dir} is still there after the demo"
    );
}

fn value_of<'a>(stdout: &'a str, row: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix(row))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {row:?} row in:\n{stdout}"))
}

#[test]
fn transfers_survive_a_leader_kill_and_the_invariant_holds() {
    let run = demo(&[
        "--transfers",
        "300",
        "--concurrency",
        "8",
        "--failure-rate",
        "0.2",
        "--seed",
        "7",
    ]);
    let out = &run.stdout;
    assert!(
        run.status.success(),
        "exit {}; stdout:\n{out}\nstderr:\n{}",
        run.status,
        run.stderr
    );
    assert!(out.contains("✗ killed the coordinator leader"), "{out}");
    assert!(
        out.contains("✓ money conserved: 16000 before, 16000 after"),
        "{out}"
    );
    assert!(
        out.contains("✓ no frozen funds left (0 unsettled)"),
        "{out}"
    );
    assert!(
        out.contains("✓ every committed transfer applied exactly once"),
        "{out}"
    );
    let committed: u64 = value_of(out, "committed").parse().expect("a count");
    let rolled_back: u64 = value_of(out, "rolled back").parse().expect("a count");
    assert_eq!(committed + rolled_back, 300, "{out}");
    assert!(
        committed > 0 && rolled_back > 0,
        "20 % of tries fail: {out}"
    );
    assert_ne!(value_of(out, "failover gap"), "—", "{out}");
    assert_cleaned_up(out);
}

#[test]
fn a_service_that_credits_twice_fails_the_demo() {
    let run = demo(&[
        "--transfers",
        "50",
        "--concurrency",
        "4",
        "--nodes",
        "1",
        "--no-chaos",
        "--sabotage",
    ]);
    let out = &run.stdout;
    assert!(!run.status.success(), "exit 0 despite the sabotage:\n{out}");
    assert!(out.contains("✗ money conserved"), "{out}");
    assert!(
        out.contains("✗ every committed transfer applied exactly once"),
        "{out}"
    );
    assert!(
        run.stderr.contains("the invariant does not hold"),
        "{}",
        run.stderr
    );
    assert_cleaned_up(out);
}
