//! `txmesh`: the command-line entry point. Each subcommand lives in its own module; this file
//! only parses the command line, sets up logging and dispatches.
//!
//! Exit codes: 0 on success, 2 on any error (clap uses 2 for usage errors as well).

mod bench;
mod child;
mod coordinator;
mod crd;
mod demo;
mod frame;
mod local_cluster;
mod logging;
mod operator;
mod outage;
mod sidecar;
mod signals;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A Kubernetes-native, Seata-compatible distributed transaction system.
#[derive(Debug, Parser)]
#[command(name = "txmesh", version, about)]
struct Cli {
    #[command(flatten)]
    log: logging::LogArgs,

    #[command(subcommand)]
    command: Command,
}

/// The subcommands. Adding one: a variant here, its arm in [`Command::run`], and its module.
#[derive(Debug, Subcommand)]
enum Command {
    /// Measure txmesh under load (results: docs/benchmarks.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run the Seata-compatible transaction coordinator.
    Coordinator(Box<coordinator::CoordinatorArgs>),
    /// Print the CustomResourceDefinitions of txmesh's resources (YAML).
    Crd(crd::CrdArgs),
    /// Money transfers between two services on a local coordinator group, with a leader kill.
    Demo(demo::DemoArgs),
    /// Decode and encode single Seata RPC frames (hex ⇄ JSON).
    #[command(subcommand)]
    Frame(frame::FrameCommand),
    /// Run the Kubernetes operator for TransactionCoordinator resources.
    Operator(Box<operator::OperatorArgs>),
    /// Run the sidecar that lets an application join transactions over localhost gRPC.
    Sidecar(Box<sidecar::SidecarArgs>),
}

impl Command {
    fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Bench(command) => command.run(),
            Command::Coordinator(args) => args.run(),
            Command::Crd(args) => args.run(),
            Command::Demo(args) => args.run(),
            Command::Frame(command) => command.run(),
            Command::Operator(args) => args.run(),
            Command::Sidecar(args) => args.run(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Demo(_) => "error",
        _ => "info",
    };
    match cli.log.init(default_level).and_then(|()| cli.command.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // If stderr itself is gone there is nowhere left to report to.
            let _ = writeln!(std::io::stderr(), "error: {error:#}");
            ExitCode::from(2)
        }
    }
}
