//! CPU time of processes (user + system), from `/proc/<pid>/stat`, sampled at both ends of the
//! measured interval.

use std::time::Duration;

use anyhow::Context;

/// Clock ticks per second when `getconf CLK_TCK` cannot be asked: Linux's USER_HZ.
const DEFAULT_TICKS_PER_SECOND: u64 = 100;

/// CPU time consumed over the measured interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUse {
    /// By the coordinator, when its process is known.
    pub coordinator: Option<Duration>,
    /// By the sidecar, when one is measured.
    pub sidecar: Option<Duration>,
    /// By this process (the load generator).
    pub load_generator: Duration,
}

/// CPU counters read at the start of the measured interval.
#[derive(Debug)]
pub struct CpuMeter {
    ticks_per_second: u64,
    coordinator: Option<(u32, u64)>,
    sidecar: Option<(u32, u64)>,
    load_generator_start: u64,
}

impl CpuMeter {
    /// Reads the counters now; fails if a given process cannot be read.
    pub fn start(coordinator_pid: Option<u32>, sidecar_pid: Option<u32>) -> anyhow::Result<Self> {
        let counters = |pid: u32| cpu_ticks(pid).map(|ticks| (pid, ticks));
        Ok(Self {
            ticks_per_second: ticks_per_second(),
            coordinator: coordinator_pid.map(counters).transpose()?,
            sidecar: sidecar_pid.map(counters).transpose()?,
            load_generator_start: cpu_ticks(std::process::id())?,
        })
    }

    /// The CPU time used since [`CpuMeter::start`].
    pub fn stop(&self) -> anyhow::Result<CpuUse> {
        let since = |start: u64, now: u64| {
            let ticks = now.saturating_sub(start);
            Duration::from_secs_f64(ticks as f64 / self.ticks_per_second as f64)
        };
        let used = |process: Option<(u32, u64)>| -> anyhow::Result<Option<Duration>> {
            let Some((pid, start)) = process else {
                return Ok(None);
            };
            Ok(Some(since(start, cpu_ticks(pid)?)))
        };
        Ok(CpuUse {
            coordinator: used(self.coordinator)?,
            sidecar: used(self.sidecar)?,
            load_generator: since(self.load_generator_start, cpu_ticks(std::process::id())?),
        })
    }
}

/// `utime + stime` of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {path} (is process {pid} running?)"))?;
    parse_cpu_ticks(&stat).with_context(|| format!("unexpected content in {path}"))
}

/// Fields 14 and 15 of proc(5)'s `stat`. The second field, the command name in parentheses,
/// may itself hold spaces and parentheses, so counting starts after its last `)`.
fn parse_cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    let (_, after_name) = stat
        .rsplit_once(')')
        .context("no command name in parentheses")?;
    // `after_name` starts at field 3 (state): utime is field 14, stime field 15.
    let mut fields = after_name.split_whitespace().skip(14 - 3);
    let mut next_number = |name: &str| -> anyhow::Result<u64> {
        fields
            .next()
            .with_context(|| format!("no {name} field"))?
            .parse()
            .with_context(|| format!("{name} is not a number"))
    };
    Ok(next_number("utime")? + next_number("stime")?)
}

/// The kernel's clock ticks per second as userspace sees them (USER_HZ).
fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(DEFAULT_TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime_after_an_awkward_command_name() {
        let stat = "4242 (tx mesh) (x)) S 1 4242 4242 0 -1 4194560 1200 0 0 0 \
                    731 269 0 0 20 0 9 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat).expect("parses"), 731 + 269);
    }

    #[test]
    fn refuses_truncated_stat() {
        assert!(parse_cpu_ticks("4242 (txmesh) S 1 2 3").is_err());
        assert!(parse_cpu_ticks("no parentheses at all").is_err());
    }

    #[test]
    fn measures_this_process() {
        let meter = CpuMeter::start(Some(std::process::id()), None).expect("starts");
        // Burn CPU until a tick is accounted (bounded, as the machine may be busy).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut spins = 0u64;
        let used = loop {
            spins = std::hint::black_box(spins + 1);
            let used = meter.stop().expect("stops");
            if used.load_generator > Duration::ZERO || std::time::Instant::now() > deadline {
                break used;
            }
        };
        assert!(used.coordinator.is_some());
        assert!(used.load_generator > Duration::ZERO, "{used:?}");
    }

    #[test]
    fn a_missing_process_is_an_error() {
        // Pids are below 2^22 on Linux.
        assert!(CpuMeter::start(Some(u32::MAX), None).is_err());
        assert!(CpuMeter::start(None, Some(u32::MAX)).is_err());
    }
}
