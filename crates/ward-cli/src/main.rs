//! `ward`: run WebAssembly workloads in Keeps.

mod attest;
mod deploy;
mod measure;
mod remote;
mod run;
mod steward;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Run WebAssembly workloads inside isolated, attested Keeps.
///
/// A Keep is an isolated environment for one workload: a sandboxed process, a micro-VM
/// (kvm), or, on SEV-SNP/TDX hardware, a confidential VM whose memory the host cannot
/// read or change. Process and plain kvm Keeps protect the host from the workload, not
/// the workload from the host, and their evidence says so (kind `none`). `ward run`
/// starts a Keep on this machine; `ward deploy` attests one on an untrusted host first.
#[derive(Parser)]
#[command(name = "ward", version, propagate_version = true)]
#[command(after_help = "Examples:
  ward run examples/hello.wasm
  ward run --backend kvm examples/hello.wasm
  ward run --config examples/echo.toml examples/echo.wasm
  ward run examples/cpubench.wasm -- 20
  ward host serve --listen 127.0.0.1:8443 --backends process,kvm
  ward deploy examples/hello.wasm --host https://127.0.0.1:8443 --insecure
  ward measure --backend kvm
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
    /// Deploy a workload to a Keep on a remote, untrusted host (see `ward host serve`).
    Deploy(deploy::DeployArgs),
    /// Run the host side: the Keep manager daemon.
    #[command(subcommand)]
    Host(HostCommand),
    /// Work with Ward.toml workload configs.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Verify and inspect attestation evidence.
    #[command(subcommand)]
    Attest(attest::AttestCommand),
    /// Run the Steward, an attestation CA that certifies Keeps (see docs/steward.md).
    #[command(subcommand)]
    Steward(steward::StewardCommand),
    /// Print the launch measurement a Keep's evidence will carry, without starting one.
    Measure(measure::MeasureArgs),
}

#[derive(Subcommand)]
enum HostCommand {
    /// Serve the Keep manager API over HTTPS until SIGTERM.
    #[command(after_help = "Example: ward host serve --listen 127.0.0.1:8443")]
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: std::net::SocketAddr,
        /// Backends to offer (comma-separated): `process` (a sandboxed child process)
        /// and `kvm` (a micro-VM; needs /dev/kvm). kvm guests are sized from the
        /// client's [limits] memory + 256 MiB.
        #[arg(long, default_value = "process", value_delimiter = ',')]
        backends: Vec<String>,
        /// Most Keeps at once.
        #[arg(long, default_value_t = 64)]
        max_keeps: usize,
        /// Where the host's TLS identity is kept (default: $XDG_STATE_HOME/ward or
        /// ~/.local/state/ward).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// A file of verification collateral to offer clients in GET /v1/platform
        /// (e.g. this host's VCEK or VLEK chain, TCB info); repeatable, 63 KiB in all.
        /// Clients check it against their own roots: it is a convenience, not trust.
        #[arg(long, value_name = "FILE")]
        collateral: Vec<PathBuf>,
        /// Let remote workloads preopen DIR (and what is beneath it), read-only; add
        /// `:rw` to let them write. Repeatable. By default they reach no host files.
        #[arg(long, value_name = "DIR[:rw]")]
        allow_dir: Vec<String>,
        /// Let remote workloads listen on and connect to TCP addresses (and reach a
        /// Steward). Process Keeps only. By default they get stdio and nothing else.
        #[arg(long)]
        allow_sockets: bool,
    },
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
        Command::Steward(cmd) => steward::run(cmd),
        Command::Deploy(args) => deploy::run(args),
        Command::Host(cmd) => host(cmd),
        Command::Measure(args) => measure::run(args),
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

fn host(cmd: HostCommand) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let HostCommand::Serve {
        listen,
        backends,
        max_keeps,
        state_dir,
        collateral,
        allow_dir,
        allow_sockets,
    } = cmd;
    let mut allow = ward_host::loader::RemoteAllow {
        sockets: allow_sockets,
        ..Default::default()
    };
    for spec in &allow_dir {
        let (dir, rw) = match spec.strip_suffix(":rw") {
            Some(d) => (d, true),
            None => (spec.as_str(), false),
        };
        let real = std::fs::canonicalize(dir).with_context(|| format!("--allow-dir {dir}"))?;
        if !real.is_dir() {
            anyhow::bail!("--allow-dir {dir}: not a directory");
        }
        allow.dirs.push((real, rw));
    }
    let mut offered = Vec::new();
    let mut total = 0usize;
    for path in &collateral {
        let bytes =
            std::fs::read(path).with_context(|| format!("--collateral {}", path.display()))?;
        total += bytes.len();
        if total > ward_host::daemon::MAX_COLLATERAL {
            anyhow::bail!(
                "--collateral: {} bytes in all is over the {} a platform answer can carry",
                total,
                ward_host::daemon::MAX_COLLATERAL
            );
        }
        offered.push(bytes);
    }
    for b in &backends {
        if !ward_host::loader::BACKENDS.contains(&b.as_str()) {
            anyhow::bail!(
                "unknown backend {b:?} (known: {})",
                ward_host::loader::BACKENDS.join(",")
            );
        }
        if b == "kvm" {
            ward_vmm::kvm_available()
                .map_err(|why| anyhow::anyhow!("cannot offer the kvm backend: {why}"))?;
        }
    }
    if max_keeps == 0 {
        anyhow::bail!("--max-keeps must be at least 1");
    }
    let state_dir = match state_dir {
        Some(d) => d,
        None => std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .map(|d| d.join("ward"))
            .ok_or_else(|| anyhow::anyhow!("no --state-dir and no $HOME"))?,
    };
    let keep_bin = ward_host::find_keep_binary().map_err(anyhow::Error::msg)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WARD_LOG")
                .unwrap_or_else(|_| "ward_host=info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only for a terminal: logs that go to a file or journal stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = ward_host::daemon::DaemonConfig {
        listen,
        backends,
        max_keeps,
        state_dir,
        keep_bin,
        collateral: offered,
        allow,
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(ward_host::daemon::serve(config))?;
    Ok(ExitCode::SUCCESS)
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
