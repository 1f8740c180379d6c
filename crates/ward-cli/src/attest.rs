//! `ward attest ...`: verify and inspect attestation evidence.
//! (Owned by the attestation work; filled in by ward-attest's author.)

use std::process::ExitCode;

/// Attestation commands.
#[derive(Debug, clap::Subcommand)]
pub enum AttestCommand {}

/// Runs an attestation subcommand.
pub fn run(cmd: AttestCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
