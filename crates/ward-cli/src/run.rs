//! `ward run`: run a workload in a Keep on this machine.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};
use ward_host::{find_keep_binary, KeepEvent, LocalKeep, ProcessKeep, Session};
use ward_proto::{SandboxStatus, StdioMode, WorkloadConfig, WorkloadOutcome, MAX_WORKLOAD_LEN};

/// Backends `ward run` can start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Backend {
    /// A sandboxed child process (seccomp, landlock, namespaces). No hardware
    /// isolation: the host can read it.
    Process,
    /// A micro-VM on /dev/kvm (ward-vmm + ward-shim) running the same ward-keep.
    /// Guest memory = [limits] memory + 256 MiB. Without SEV-SNP/TDX the host can
    /// still read it; it is the Keep that becomes confidential on such hardware.
    Kvm,
}

/// Arguments of `ward run`.
#[derive(clap::Args)]
#[command(
    after_help = "The workload's exit code becomes ward's. Ward's own codes:
  124  a limit stopped the workload (wall_time or fuel)
  125  Ward could not run the workload (bad module, bad config, missing import...)
  134  the workload trapped (the message names the trap)"
)]
pub(crate) struct RunArgs {
    /// Kind of Keep to start.
    #[arg(long, value_enum, default_value = "process")]
    backend: Backend,
    /// Workload configuration (see `ward config init`). Without it: stdio relayed,
    /// no files, no sockets, 512 MiB of memory, no deadline.
    #[arg(long, short = 'c', value_name = "Ward.toml")]
    config: Option<PathBuf>,
    /// Say less: no sandbox warnings or listening notices.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// The Wasm module or component (`.wasm`, or `.wat` text).
    #[arg(value_name = "APP.wasm")]
    app: PathBuf,
    /// Arguments for the workload, after `--`. Appended to the config's `args`.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

pub(crate) fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = match &args.config {
        Some(path) => ward_runtime::config::load(path)?,
        None => WorkloadConfig::default(),
    };
    cfg.args.extend(args.args.iter().cloned());
    let module = read_workload(&args.app)?;
    let name = args
        .app
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "workload.wasm".into());

    let keep_bin = find_keep_binary().map_err(anyhow::Error::msg)?;
    // How `keep.finish()` failures are introduced in messages.
    let who = match args.backend {
        Backend::Process => "keep exited",
        Backend::Kvm => "kvm keep",
    };
    let mut keep = match args.backend {
        Backend::Process => LocalKeep::Process(ProcessKeep::spawn(&keep_bin)?),
        Backend::Kvm => {
            let vm = ward_host::local::kvm_keep_config(
                &keep_bin,
                cfg.limits.memory_bytes,
                cfg.limits.wall_time_ms.map(Duration::from_millis),
                false,
            )?
            .resources(ward_host::local::kvm_host_resources(&cfg)?);
            LocalKeep::launch_kvm(&vm)?
        }
    };
    let channel = keep.take_channel().context("keep channel")?;
    let writer = channel.try_clone().context("keep channel")?;
    let mut session = Session::new(channel, writer);

    let quiet = args.quiet;
    let mut stdout = std::io::stdout().lock();
    let mut events = |e: KeepEvent| handle_event(e, quiet, &mut stdout);

    let spec = ward_host::launch_spec(&name, &module, cfg.clone());
    if let Err(e) = session.launch(&spec, &module, &mut events) {
        // A Keep that died while starting explains more than the broken channel.
        drop(session);
        return match keep.finish() {
            Ok(end) if !end.success => Err(anyhow::anyhow!("{e} ({who}: {})", end.how)),
            _ => Err(e.into()),
        };
    }
    drop(module);
    if cfg.stdin == StdioMode::Forward {
        session.forward_stdin(Box::new(std::io::stdin()))?;
    }

    // The Keep enforces wall_time itself; this is the backstop if it cannot.
    let _watchdog = cfg
        .limits
        .wall_time_ms
        .zip(keep.pid())
        .map(|(ms, pid)| watchdog(pid, ms));
    let outcome = session.wait(&mut events);
    let _ = std::io::stdout().flush();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => match keep.finish() {
            Ok(end) if end.timed_out => {
                // Same outcome and exit code as a process Keep's own deadline.
                let ms = cfg.limits.wall_time_ms.unwrap_or(0);
                eprintln!(
                    "ward: workload stopped: wall-time limit of {} exceeded (the VMM stopped the kvm Keep after {} more)",
                    fmt_ms(ms),
                    fmt_ms(ward_host::local::KVM_DEADLINE_SLACK.as_millis() as u64)
                );
                return Ok(ExitCode::from(
                    WorkloadOutcome::DeadlineExceeded { limit_ms: ms }.exit_status(),
                ));
            }
            Ok(end) if !end.success => bail!("{e} ({who}: {})", end.how),
            _ => return Err(e.into()),
        },
    };
    match keep.finish() {
        Ok(end) if !end.success => {
            // The workload's outcome arrived, but the Keep did not end cleanly.
            eprintln!("ward: warning: {who}: {}", end.how);
        }
        _ => {}
    }

    Ok(report_outcome(&outcome.report, &cfg.limits))
}

/// Prints how the workload ended (one line, when it did not simply exit) and returns
/// the exit code `ward` should use.
pub(crate) fn report_outcome(
    report: &ward_proto::ExitReport,
    limits: &ward_proto::Limits,
) -> ExitCode {
    if let Some(bytes) = report.memory_denied_at {
        eprintln!(
            "ward: note: the workload asked for {} of linear memory, over its limit of {} (raise [limits] memory in Ward.toml)",
            ward_runtime::config::human_bytes(bytes),
            ward_runtime::config::human_bytes(limits.memory_bytes)
        );
    }
    match &report.outcome {
        WorkloadOutcome::Exited(_) => {}
        WorkloadOutcome::Trapped { trap, detail } => {
            let memory = if report.memory_denied_at.is_some() {
                " after hitting its memory limit"
            } else {
                ""
            };
            eprintln!(
                "ward: workload trapped{memory}: {trap}{}{detail}",
                if detail.is_empty() { "" } else { " " }
            );
        }
        WorkloadOutcome::DeadlineExceeded { limit_ms } => {
            eprintln!(
                "ward: workload stopped: wall-time limit of {} exceeded",
                fmt_ms(*limit_ms)
            );
        }
        WorkloadOutcome::OutOfFuel { fuel } => {
            eprintln!("ward: workload stopped: ran out of fuel ({fuel} units)");
        }
    }
    ExitCode::from(report.outcome.exit_status())
}

pub(crate) fn handle_event(e: KeepEvent, quiet: bool, stdout: &mut impl Write) {
    match e {
        KeepEvent::Stdout(b) => {
            let _ = stdout.write_all(&b);
            let _ = stdout.flush();
        }
        KeepEvent::Stderr(b) => {
            let _ = std::io::stderr().write_all(&b);
        }
        KeepEvent::Ready(layers) if !quiet => {
            for l in layers {
                match l.status {
                    SandboxStatus::Applied => {}
                    SandboxStatus::Partial(why) => {
                        eprintln!(
                            "ward: warning: sandbox layer {} is only partly in force: {why}",
                            l.name
                        )
                    }
                    SandboxStatus::Unavailable(why) => {
                        eprintln!(
                            "ward: warning: sandbox layer {} is unavailable: {why}",
                            l.name
                        )
                    }
                }
            }
        }
        KeepEvent::Listening { name, addr } if !quiet => {
            eprintln!("ward: {name} listening on {addr}");
        }
        _ => {}
    }
}

pub(crate) fn read_workload(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", path.display());
    }
    if meta.len() > MAX_WORKLOAD_LEN {
        bail!(
            "{} is {} bytes; the largest workload is {MAX_WORKLOAD_LEN} bytes",
            path.display(),
            meta.len()
        );
    }
    if meta.len() == 0 {
        bail!("{} is empty, not a Wasm module", path.display());
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Kills the Keep if it is still running `ms` + 2 s from now. Dropping the returned
/// sender disarms it.
fn watchdog(pid: u32, ms: u64) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) =
            rx.recv_timeout(Duration::from_millis(ms) + Duration::from_secs(2))
        {
            eprintln!("ward: the keep ignored its deadline; killing it");
            let _ = ward_host::process::kill_pid(pid);
        }
    });
    tx
}

fn fmt_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}
