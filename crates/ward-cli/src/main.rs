//! `ward`: run WebAssembly workloads in Keeps.

mod attest;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Run WebAssembly workloads inside isolated, attested Keeps.
///
/// A Keep is an isolated environment (a sandboxed process, a micro-VM, or an SEV-SNP/TDX
/// guest) whose contents the host cannot read or change. `ward run` starts one on this
/// machine and runs a `.wasm` file in it.
#[derive(Parser)]
#[command(name = "ward", version, propagate_version = true)]
#[command(after_help = "Examples:
  ward run examples/hello.wasm
  ward run --config examples/echo.toml examples/echo.wasm
  ward run examples/cpubench.wasm -- 20
  ward config init Ward.toml
  ward attest verify --kind snp report.bin --vcek vcek.der")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a Wasm module or component in a Keep on this machine.
    Run(run::RunArgs),
    /// Work with Ward.toml workload configs.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Verify and inspect attestation evidence.
    #[command(subcommand)]
    Attest(attest::AttestCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Write a commented Ward.toml template.
    Init {
        /// Where to write it ("-" for stdout).
        #[arg(default_value = "Ward.toml")]
        path: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Check a Ward.toml and print what it resolves to.
    Check {
        /// The file.
        #[arg(default_value = "Ward.toml")]
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Config(cmd) => config(cmd),
        Command::Attest(cmd) => attest::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ward: error: {}", one_line(&e));
            ExitCode::from(ward_proto::keep::EXIT_WARD_ERROR)
        }
    }
}

/// An error and its causes, on one line.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

fn config(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    match cmd {
        ConfigCommand::Init { path, force } => {
            let template = ward_runtime::config::TEMPLATE;
            if path.as_os_str() == "-" {
                print!("{template}");
                return Ok(ExitCode::SUCCESS);
            }
            if path.exists() && !force {
                anyhow::bail!("{} exists; pass --force to overwrite it", path.display());
            }
            std::fs::write(&path, template)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("ward: wrote {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Check { path } => {
            let cfg = ward_runtime::config::load(&path)?;
            println!("{cfg:#?}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
