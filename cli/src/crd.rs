//! `txmesh crd`: prints the CustomResourceDefinitions the operator serves, as YAML. The chart's
//! `crds/` copy is this output (a test in txmesh-crds keeps it current).

use std::io::Write;

use anyhow::Context;
use clap::Args;

/// Options of `txmesh crd` (none: the output depends only on this build).
#[derive(Debug, Args)]
pub struct CrdArgs {}

impl CrdArgs {
    /// Writes the YAML to stdout.
    pub fn run(self) -> anyhow::Result<()> {
        let yaml = txmesh_crds::crd_yaml()?;
        std::io::stdout()
            .write_all(yaml.as_bytes())
            .context("cannot write to stdout")
    }
}
