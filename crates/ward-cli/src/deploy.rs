//! `ward deploy`: run a workload in a Keep on an untrusted host, after verifying the
//! Keep's evidence inside the TLS handshake.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use hyper::Method;
use tokio::io::AsyncWriteExt;
use tokio_util::io::SyncIoBridge;
use ward_attest::verify::Policy;
use ward_host::{KeepEvent, Session};
use ward_proto::host::{CreateKeep, KeepInfo};
use ward_proto::{encode_frame, StdioMode, TunnelHello, WorkloadConfig, PROTOCOL_VERSION};

use crate::remote::{keep_tls, Host, KeepCert};
use crate::run::{handle_event, read_workload, report_outcome};

/// Arguments of `ward deploy`.
#[derive(clap::Args)]
#[command(after_help = "Example:
  ward host serve --listen 127.0.0.1:8443          # on the host
  ward deploy examples/hello.wasm --host https://127.0.0.1:8443 --insecure

The workload, its config and secrets travel only inside TLS that terminates in the
Keep, after its evidence has been verified against the policy. The host sees
ciphertext.")]
pub(crate) struct DeployArgs {
    /// The Wasm module or component.
    #[arg(value_name = "APP.wasm")]
    app: PathBuf,
    /// The host daemon, `https://HOST:PORT`.
    #[arg(long)]
    host: String,
    /// Kind of Keep to ask for.
    #[arg(long, default_value = "process")]
    backend: String,
    /// Workload configuration.
    #[arg(long, short = 'c', value_name = "Ward.toml")]
    config: Option<PathBuf>,
    /// Attestation policy (see `ward attest policy init`). Default: strict.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Accept a Keep without hardware protection (process and kvm backends). The host
    /// can then read and change the workload. For testing only.
    #[arg(long)]
    insecure: bool,
    /// A secret for the workload, as an environment variable: NAME=@FILE. It travels
    /// only inside the attested TLS session.
    #[arg(long = "secret", value_name = "NAME=@FILE")]
    secrets: Vec<String>,
    /// Pin the host's API certificate (SHA-256, hex) against a man in the middle.
    #[arg(long, value_name = "SHA256")]
    host_fingerprint: Option<String>,
    /// Print the verified claims as one JSON line on stdout before the workload's
    /// output, and after it (when the workload ran to the end) one JSON line with the
    /// exit code and the time each phase took, in milliseconds:
    /// {"exit_code":0,"timings_ms":{"create":..,"attest":..,"upload":..,"run":..,"total":..}}
    /// create: the host starts the Keep; attest: tunnel, TLS handshake and evidence
    /// check; upload: launch spec and module until the Keep confirms its digest; run:
    /// until the workload ends; total: all of it (at least the sum of the others).
    #[arg(long)]
    json: bool,
    /// No progress messages.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Arguments for the workload, after `--`.
    #[arg(last = true)]
    args: Vec<String>,
}

const MAX_SECRET: u64 = 64 << 10;

fn secrets(specs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for spec in specs {
        let Some((name, file)) = spec.split_once("=@") else {
            bail!("--secret takes NAME=@FILE (values never go on the command line)");
        };
        if name.is_empty() || name.contains('=') {
            bail!("--secret: bad variable name {name:?}");
        }
        let len = std::fs::metadata(file)
            .with_context(|| format!("--secret {name}: cannot read {file}"))?
            .len();
        if len > MAX_SECRET {
            bail!("--secret {name}: {file} is larger than {MAX_SECRET} bytes");
        }
        let value = std::fs::read_to_string(file)
            .with_context(|| format!("--secret {name}: cannot read {file} as UTF-8"))?;
        out.push((name.to_string(), value.trim_end_matches('\n').to_string()));
    }
    Ok(out)
}

fn say(quiet: bool, msg: std::fmt::Arguments<'_>) {
    if !quiet {
        eprintln!("ward: {msg}");
    }
}

pub(crate) fn run(args: DeployArgs) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(deploy(args))
}

/// Milliseconds since `since`, with microsecond resolution.
fn ms(since: Instant) -> f64 {
    (since.elapsed().as_micros() as f64) / 1000.0
}

/// The `--json` line printed after the workload's output (phases in their order).
fn timings_json(exit_code: u8, t: &[(&str, f64)]) -> String {
    let phases: Vec<String> = t
        .iter()
        .map(|(k, v)| {
            format!(
                "{}:{}",
                serde_json::json!(k),
                serde_json::json!((v * 1000.0).round() / 1000.0)
            )
        })
        .collect();
    format!(
        "{{\"exit_code\":{exit_code},\"timings_ms\":{{{}}}}}",
        phases.join(",")
    )
}

/// A session that broke off, as one clear line: a tunnel that closed (the host
/// stopped relaying, or the Keep died) is said so; other failures keep their cause.
fn session_error(e: ward_host::LaunchError, stage: &str) -> anyhow::Error {
    use ward_host::LaunchError as E;
    use ward_proto::FrameError as F;
    let closed = match &e {
        E::KeepVanished | E::Channel(F::Truncated { .. }) => true,
        E::Channel(F::Io(io)) => matches!(
            io.kind(),
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
        ),
        _ => false,
    };
    match e {
        _ if closed => anyhow::anyhow!(
            "the tunnel to the keep closed {stage} (the host stopped relaying, or the keep died); the workload did not finish"
        ),
        // The Keep's own report, or the digest check: already one clear line.
        E::Keep { .. } | E::DigestMismatch { .. } => e.into(),
        _ => anyhow::Error::new(e).context(format!("the keep session failed {stage}")),
    }
}

async fn deploy(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let quiet = args.quiet;
    let mut cfg = match &args.config {
        Some(p) => ward_runtime::config::load(p)?,
        None => WorkloadConfig::default(),
    };
    cfg.args.extend(args.args.iter().cloned());
    cfg.env.extend(secrets(&args.secrets)?);
    let mut policy = match &args.policy {
        Some(p) => Policy::from_toml(
            &std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        )
        .with_context(|| format!("{}", p.display()))?,
        None => Policy::default(),
    };
    if args.insecure {
        policy.insecure_allow_software = true;
        eprintln!("ward: WARNING: --insecure: a Keep without hardware protection will be accepted; the host can read and change it");
    }
    let module = read_workload(&args.app)?;
    let name = args
        .app
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "workload.wasm".into());

    let host = Host::new(&args.host, args.host_fingerprint.clone())?;
    say(quiet, format_args!("creating keep on {}…", host.authority));
    let t_create = Instant::now();
    let keep: KeepInfo = host
        .call(
            Method::POST,
            "/v1/keeps",
            Some(&CreateKeep {
                backend: args.backend.clone(),
                memory_bytes: Some(cfg.limits.memory_bytes),
            }),
        )
        .await?;
    if let Ok(Some(fp)) = host.verifier.seen.lock().map(|s| s.clone()) {
        say(
            quiet,
            format_args!(
                "host certificate sha256 {}… (not trusted for anything)",
                &fp[..16]
            ),
        );
    }
    say(
        quiet,
        format_args!("keep {} created ({}); attesting…", keep.id, keep.backend),
    );

    let create_ms = ms(t_create);
    let t_attest = Instant::now();
    let mut tunnel = host.tunnel(&keep.id).await?;
    let mut nonce = vec![0u8; 32];
    rustix::rand::getrandom(&mut nonce, rustix::rand::GetRandomFlags::empty())
        .map_err(std::io::Error::from)?;
    tunnel
        .write_all(&encode_frame(&TunnelHello {
            version: PROTOCOL_VERSION,
            nonce: nonce.clone(),
        })?)
        .await?;
    let verifier = Arc::new(KeepCert::new(nonce, policy));
    let tls = tokio_rustls::TlsConnector::from(keep_tls(verifier.clone())?)
        .connect(
            rustls::pki_types::ServerName::try_from("ward-keep")?,
            tunnel,
        )
        .await
        .context("TLS with the keep")?;
    let claims = verifier
        .claims
        .lock()
        .ok()
        .and_then(|c| c.clone())
        .context("the keep's evidence was not checked")?;
    let attest_ms = ms(t_attest);
    let measurement = hex::encode(&claims.measurement);
    say(
        quiet,
        format_args!(
            "verified: {} measurement {}…{}",
            claims.kind,
            &measurement[..measurement.len().min(16)],
            if claims.insecure_software {
                " (INSECURE: no hardware protection)"
            } else {
                ""
            }
        ),
    );
    if args.json {
        println!("{}", crate::attest::claims_json_string(&claims));
    }

    let (r, w) = tokio::io::split(tls);
    let (reader, writer) = (SyncIoBridge::new(r), SyncIoBridge::new(w));
    let limits = cfg.limits;
    let forward_stdin = cfg.stdin == StdioMode::Forward;
    let size = module.len();
    let json = args.json;
    let (outcome, upload_ms, run_ms) = tokio::task::spawn_blocking(
        move || -> anyhow::Result<(ward_host::SessionOutcome, f64, f64)> {
            let mut session = Session::new(reader, writer);
            let mut stdout = std::io::stdout().lock();
            // Whether the workload's output so far ends a line (for the --json line).
            let mut at_line_start = true;
            let mut events = |e: KeepEvent| {
                if let KeepEvent::Stdout(b) = &e {
                    if let Some(last) = b.last() {
                        at_line_start = *last == b'\n';
                    }
                }
                handle_event(e, quiet, &mut stdout)
            };
            let spec = ward_host::launch_spec(&name, &module, cfg);
            say(
                quiet,
                format_args!(
                    "sending {}…",
                    ward_runtime::config::human_bytes(size as u64)
                ),
            );
            let t_upload = Instant::now();
            session
                .launch(&spec, &module, &mut events)
                .map_err(|e| session_error(e, "while sending the workload"))?;
            let upload_ms = ms(t_upload);
            say(quiet, format_args!("running"));
            let t_run = Instant::now();
            if forward_stdin {
                session.forward_stdin(Box::new(std::io::stdin()))?;
            }
            let outcome = session
                .wait(&mut events)
                .map_err(|e| session_error(e, "while the workload ran"))?;
            let run_ms = ms(t_run);
            if json && !at_line_start {
                let _ = stdout.write_all(b"\n");
            }
            let _ = stdout.flush();
            Ok((outcome, upload_ms, run_ms))
        },
    )
    .await??;
    let code = report_outcome(&outcome.report, &limits);
    if args.json {
        let total_ms = ms(started);
        println!(
            "{}",
            timings_json(
                outcome.report.outcome.exit_status(),
                &[
                    ("create", create_ms),
                    ("attest", attest_ms),
                    ("upload", upload_ms),
                    ("run", run_ms),
                    ("total", total_ms),
                ],
            )
        );
    }
    Ok(code)
}
