//! Log output shared by every subcommand: `tracing` events to stderr, as text or JSON, so that
//! stdout stays free for a command's own output.

use std::io::IsTerminal;

use anyhow::anyhow;
use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The global logging options.
#[derive(Debug, Args)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// Log line format.
    #[arg(
        long,
        global = true,
        env = "TXMESH_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,

    /// Which events to log: a level (`debug`) or `tracing` filter directives
    /// (`info,txmesh_seata=trace`) [default: info; error for `txmesh demo`, whose own output
    /// is the point].
    #[arg(long, global = true, env = "TXMESH_LOG")]
    log_level: Option<String>,
}

impl LogArgs {
    /// Installs the global subscriber; `default_level` applies without `--log-level`.
    pub fn init(&self, default_level: &str) -> anyhow::Result<()> {
        let level = self.log_level.as_deref().unwrap_or(default_level);
        // Not `context`: the filter's error repeats its cause in its own message.
        let filter = EnvFilter::try_new(level)
            .map_err(|error| anyhow!("invalid --log-level {level:?}: {error}"))?;
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        let installed = match self.log_format {
            LogFormat::Text => builder
                .with_ansi(std::io::stderr().is_terminal())
                .try_init(),
            LogFormat::Json => builder.json().try_init(),
        };
        installed.map_err(|error| anyhow!("cannot install the logger: {error}"))
    }
}
