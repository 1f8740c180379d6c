//! `ward steward ...`: run the attestation CA and show its certificate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ward_attest::verify::Policy;
use ward_steward::{Clock, Steward, StewardConfig};

/// The Steward: an attestation CA for Keeps.
///
/// A Keep sends a CSR that carries its attestation evidence; the Steward checks the
/// evidence against a policy, checks that it binds the CSR's key, and issues a
/// short-lived certificate chained to its own CA. The workload's clients then trust
/// only that CA. See docs/steward.md.
#[derive(Debug, clap::Subcommand)]
pub enum StewardCommand {
    /// Serve `POST /v1/attest` over HTTPS until SIGTERM or Ctrl-C.
    ///
    /// On first start the CA key and certificate are created in --ca-dir (mode 0700,
    /// files 0600); later starts load them, so the CA fingerprint stays the same.
    /// Every issued certificate is appended to <ca-dir>/issued.jsonl and synced to
    /// disk before it is returned; the record is also the replay memory.
    #[command(after_help = "Examples:
  ward attest policy init policy.toml          # strict: hardware evidence only
  ward steward serve --listen 127.0.0.1:8444 --ca-dir ./steward-ca --policy policy.toml
  ward steward serve --listen 0.0.0.0:8444 --name steward.example.com --ca-dir ./ca --policy p.toml --validity 15m

Keeps without hardware protection (process, kvm) send `none` evidence: the policy
refuses it unless it says `insecure_allow_software = true` (testing only).

Rejections are HTTP 4xx with a CBOR body {reason-code, message}; the codes are
listed in docs/steward.md. Logs go to stderr (WARD_LOG=ward_steward=debug for more).")]
    Serve(ServeArgs),
    /// Print the CA certificate (PEM) and its SHA-256 fingerprint.
    ///
    /// Give this certificate to the workload's clients (they trust it as a root) and
    /// the fingerprint to whoever checks it out of band. Creates the CA if --ca-dir
    /// holds none yet, so the CA can be distributed before the first `serve`.
    #[command(after_help = "Examples:
  ward steward ca --ca-dir ./steward-ca > steward-ca.pem
  ward steward ca --ca-dir ./steward-ca --json")]
    Ca {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        /// Print {ca_dir, fingerprint_sha256, pem, issued} as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `ward steward serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8444")]
    listen: SocketAddr,
    /// Where the CA key, certificate and issued-certificate record live.
    #[arg(long, value_name = "DIR")]
    ca_dir: PathBuf,
    /// The attestation policy (`ward attest policy init` writes a template).
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// Validity of issued certificates: 90s, 15m, 1h, 2d (at most 31d).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    validity: Duration,
    /// How far a CSR's context time may be from the Steward's clock.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    freshness: Duration,
    /// DNS names or IP addresses for the Steward's own TLS certificate (repeatable).
    /// Default: localhost and the --listen IP.
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// Refuse Enarx CSRs whose bundled CRLs are out of date (default: a note in the
    /// answer).
    #[arg(long)]
    require_current_crls: bool,
    /// Verify evidence, and date certificates, as of this time instead of now
    /// (RFC 3339 or Unix seconds). For replaying recorded evidence in tests only.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
}

/// Parses `90s`, `15m`, `1h`, `2d`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 15m, 1h or 2d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}: use s, m, h or d")),
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// Runs a `ward steward` command.
pub fn run(cmd: StewardCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StewardCommand::Serve(args) => serve(args),
        StewardCommand::Ca { ca_dir, json } => ca(ca_dir, json),
    }
}

fn ca(dir: PathBuf, json: bool) -> anyhow::Result<ExitCode> {
    let ca = ward_steward::Ca::load_or_create(&dir)?;
    if ca.created() {
        eprintln!("ward steward: created a new CA in {}", dir.display());
    }
    let issued = ward_steward::record::Record::read_entries(&dir)?.len();
    if json {
        let v = serde_json::json!({
            "ca_dir": dir.display().to_string(),
            "fingerprint_sha256": ca.fingerprint(),
            "pem": ca.cert_pem(),
            "issued": issued,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", ca.cert_pem());
        eprintln!("sha256 fingerprint: {}", ca.fingerprint());
        eprintln!("certificates issued: {issued}");
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.policy)
        .with_context(|| format!("cannot read the policy {}", args.policy.display()))?;
    let policy =
        Policy::from_toml(&text).with_context(|| format!("policy {}", args.policy.display()))?;
    let clock = match &args.at {
        Some(t) => Clock::Fixed(crate::attest::parse_time(t)?),
        None => Clock::System,
    };
    let insecure = policy.insecure_allow_software;
    let config = StewardConfig {
        validity: args.validity,
        freshness: args.freshness,
        require_current_crls: args.require_current_crls,
        clock,
    };
    let names = if args.names.is_empty() {
        let mut n = vec!["localhost".to_string()];
        if !args.listen.ip().is_unspecified() {
            n.push(args.listen.ip().to_string());
        }
        n
    } else {
        args.names.clone()
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WARD_LOG")
                .unwrap_or_else(|_| "ward_steward=info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let steward = Arc::new(Steward::open(&args.ca_dir, policy, config)?);
    eprintln!(
        "ward steward: CA {} ({}), sha256 {}, {} certificate(s) issued so far",
        args.ca_dir.display(),
        if steward.ca().created() {
            "created"
        } else {
            "loaded"
        },
        steward.ca().fingerprint(),
        steward.issued_count()
    );
    if insecure {
        eprintln!(
            "ward steward: WARNING: the policy accepts Keeps WITHOUT hardware protection (insecure_allow_software = true)"
        );
    }
    if args.at.is_some() {
        eprintln!("ward steward: WARNING: --at pins the clock; for tests only");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            let local = listener.local_addr()?;
            eprintln!(
                "ward steward: listening on https://{local}/v1/attest (TLS names: {})",
                names.join(", ")
            );
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            ward_steward::server::serve(listener, steward, &names, async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            })
            .await?;
            eprintln!("ward steward: stopped");
            anyhow::Ok(())
        })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("").is_err());
    }
}
