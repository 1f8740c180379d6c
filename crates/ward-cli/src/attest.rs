//! `ward attest ...`: verify and inspect attestation evidence.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use ward_attest::verify::{self, Policy, VerifiedClaims};
use ward_attest::{Collateral, Evidence, TeeKind};

/// Attestation commands.
#[derive(Debug, clap::Subcommand)]
pub enum AttestCommand {
    /// Verify evidence against the vendor roots and a policy; print the claims and
    /// the verdict. Exits 1 when the evidence is rejected.
    #[command(after_help = "Examples:
  ward attest verify --kind snp report.bin --vcek vcek.der
  ward attest verify --kind snp report.bin --vcek vcek.der --policy policy.toml --at 2025-01-01T00:00:00Z --json")]
    Verify(VerifyArgs),
    /// Print the fields of a report without judging it.
    Inspect {
        /// Kind of the file.
        #[arg(long, value_enum, default_value = "snp")]
        kind: Kind,
        /// The report.
        file: PathBuf,
    },
    /// Work with verification policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

/// `ward attest policy ...`.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Write a commented policy template.
    Init {
        /// Where to write it ("-" for stdout).
        #[arg(default_value = "policy.toml")]
        path: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// AMD SEV-SNP attestation report (1184 bytes).
    Snp,
    /// Intel TDX quote (v4 or v5); needs --collateral.
    Tdx,
    /// Intel SGX DCAP quote (v3); needs --collateral.
    Sgx,
    /// AWS Nitro attestation document (COSE_Sign1); the chain is inside it.
    Nitro,
    /// A Ward evidence envelope (CBOR), of any kind.
    Envelope,
}

/// Arguments of `ward attest verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Kind of evidence in FILE.
    #[arg(long, value_enum)]
    kind: Kind,
    /// The report, quote, document or envelope.
    file: PathBuf,
    /// SNP: the VCEK or VLEK certificate (DER or PEM).
    #[arg(long, value_name = "FILE")]
    vcek: Option<PathBuf>,
    /// SNP: the ASK or ASVK certificate, if not the built-in ASK (e.g. for VLEKs).
    #[arg(long, value_name = "FILE")]
    ask: Option<PathBuf>,
    /// TDX/SGX: the DCAP quote collateral (JSON: TCB info, QE identity, CRLs, chains).
    #[arg(long, value_name = "FILE")]
    collateral: Option<PathBuf>,
    /// Policy file (see `ward attest policy init`). Default: the strictest policy.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Verify as of this time (RFC 3339 like 2025-01-01T00:00:00Z, or Unix seconds).
    /// Default: now.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Print the verdict and claims as JSON.
    #[arg(long)]
    json: bool,
}

/// Largest evidence or certificate file read.
const MAX_FILE: u64 = 1 << 20;

fn read(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if len > MAX_FILE {
        bail!(
            "{} is {len} bytes; evidence files are at most {MAX_FILE} bytes",
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Runs an attestation subcommand.
pub fn run(cmd: AttestCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AttestCommand::Verify(args) => verify_cmd(args),
        AttestCommand::Inspect { kind, file } => inspect(kind, &file),
        AttestCommand::Policy(PolicyCommand::Init { path, force }) => {
            if path.as_os_str() == "-" {
                print!("{}", verify::POLICY_TEMPLATE);
                return Ok(ExitCode::SUCCESS);
            }
            if path.exists() && !force {
                bail!("{} exists; pass --force to overwrite it", path.display());
            }
            std::fs::write(&path, verify::POLICY_TEMPLATE)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("ward: wrote {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn verify_cmd(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let bytes = read(&args.file)?;
    let evidence = match args.kind {
        Kind::Envelope => Evidence::from_cbor(&bytes)?,
        Kind::Snp => Evidence {
            kind: TeeKind::Snp,
            evidence: bytes,
            collateral: Collateral {
                vek: args
                    .vcek
                    .as_ref()
                    .map(read)
                    .transpose()?
                    .unwrap_or_default(),
                chain: args
                    .ask
                    .as_ref()
                    .map(read)
                    .transpose()?
                    .into_iter()
                    .map(serde_bytes::ByteBuf::from)
                    .collect(),
                ..Collateral::default()
            },
        },
        Kind::Tdx | Kind::Sgx => Evidence {
            kind: if args.kind == Kind::Tdx {
                TeeKind::Tdx
            } else {
                TeeKind::Sgx
            },
            evidence: bytes,
            collateral: Collateral {
                quote_collateral: args
                    .collateral
                    .as_ref()
                    .map(read)
                    .transpose()?
                    .unwrap_or_default(),
                ..Collateral::default()
            },
        },
        Kind::Nitro => Evidence {
            kind: TeeKind::Nitro,
            evidence: bytes,
            collateral: Collateral::default(),
        },
    };
    let policy = match &args.policy {
        Some(p) => Policy::from_toml(&String::from_utf8(read(p)?).context("policy is not UTF-8")?)
            .with_context(|| format!("{}", p.display()))?,
        None => Policy::default(),
    };
    let now = match &args.at {
        Some(t) => parse_time(t)?,
        None => SystemTime::now(),
    };
    if policy.insecure_allow_software {
        eprintln!("ward: WARNING: this policy accepts Keeps with NO hardware protection (insecure_allow_software = true)");
    }
    match verify::verify(&evidence, &policy, now) {
        Ok(claims) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"verdict": "accepted", "claims": claims_json(&claims)})
                );
            } else {
                print_claims(&claims);
                println!("verdict: ACCEPTED");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"verdict": "rejected", "reason": reason.to_string()})
                );
            } else {
                println!("verdict: REJECTED: {reason}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn inspect(kind: Kind, file: &PathBuf) -> anyhow::Result<ExitCode> {
    let bytes = read(file)?;
    match kind {
        Kind::Snp => {
            let report = verify::snp::Report::parse(&bytes)?;
            println!("{}", report.parsed);
        }
        Kind::Envelope => {
            let e = Evidence::from_cbor(&bytes)?;
            println!(
                "kind: {}\nevidence: {} bytes\nvek: {} bytes\nchain: {} certificates",
                e.kind,
                e.evidence.len(),
                e.collateral.vek.len(),
                e.collateral.chain.len()
            );
        }
        Kind::Nitro => {
            let (_, doc) = verify::nitro::parse(&bytes)?;
            println!(
                "module_id: {}\ntimestamp_ms: {}",
                doc.module_id, doc.timestamp
            );
            for (i, v) in &doc.pcrs {
                println!("pcr{i}: {}", hex(v));
            }
            println!(
                "certificate: {} bytes\ncabundle: {} certificates",
                doc.certificate.len(),
                doc.cabundle.len()
            );
            for (k, v) in [
                ("public_key", &doc.public_key),
                ("user_data", &doc.user_data),
                ("nonce", &doc.nonce),
            ] {
                if let Some(v) = v {
                    println!("{k}: {}", hex(v));
                }
            }
        }
        Kind::Tdx | Kind::Sgx => {
            let quote = dcap_qvl::quote::Quote::parse(&bytes)
                .map_err(|e| anyhow::anyhow!("malformed quote: {e}"))?;
            println!("{:#?}", quote.header);
            println!("{:#?}", quote.report);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_claims(c: &VerifiedClaims) {
    println!("kind: {}", c.kind);
    if c.insecure_software {
        println!("protection: NONE (software Keep; accepted only because the policy allows it)");
    }
    println!("measurement: {}", hex(&c.measurement));
    if !c.platform_id.is_empty() {
        println!("chip id: {}", hex(&c.platform_id));
    }
    println!("report data: {}", hex(&c.report_data));
    if !c.tcb.is_empty() {
        let tcb: Vec<String> = c.tcb.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("tcb: {}", tcb.join(" "));
    }
    println!("debug: {}", c.debug);
    for (k, v) in &c.signers {
        println!("{k}: {}", hex(v));
    }
    for (k, v) in &c.details {
        println!("{k}: {v}");
    }
}

fn claims_json(c: &VerifiedClaims) -> serde_json::Value {
    serde_json::json!({
        "kind": c.kind.to_string(),
        "measurement": hex(&c.measurement),
        "report_data": hex(&c.report_data),
        "platform_id": hex(&c.platform_id),
        "tcb": c.tcb.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        "debug": c.debug,
        "signers": c.signers.iter().map(|(k, v)| (k.clone(), serde_json::json!(hex(v)))).collect::<serde_json::Map<_, _>>(),
        "details": c.details.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        "insecure_software": c.insecure_software,
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses `2025-01-01T00:00:00Z` (UTC only) or Unix seconds.
fn parse_time(t: &str) -> anyhow::Result<SystemTime> {
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(UNIX_EPOCH + Duration::from_secs(secs));
    }
    let bad = || {
        anyhow::anyhow!(
            "cannot parse time {t:?}: use RFC 3339 in UTC (2025-01-01T00:00:00Z) or Unix seconds"
        )
    };
    let s = t
        .strip_suffix('Z')
        .or_else(|| t.strip_suffix("+00:00"))
        .ok_or_else(bad)?;
    let (date, time) = s.split_once('T').ok_or_else(bad)?;
    let d: Vec<u32> = date
        .split('-')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let tm: Vec<u32> = time
        .split('.')
        .next()
        .unwrap_or("")
        .split(':')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    if d.len() != 3
        || tm.len() != 3
        || !(1..=12).contains(&d[1])
        || !(1..=31).contains(&d[2])
        || tm[0] > 23
        || tm[1] > 59
        || tm[2] > 60
    {
        return Err(bad());
    }
    // Days since the epoch (civil-from-days inverse, proleptic Gregorian).
    let (y, m) = if d[1] <= 2 {
        (d[0] as i64 - 1, d[1] + 9)
    } else {
        (d[0] as i64, d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m as i64 + 2) / 5 + d[2] as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + (tm[0] * 3600 + tm[1] * 60 + tm[2]) as i64;
    let secs = u64::try_from(secs).map_err(|_| bad())?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        let t = |s| {
            parse_time(s)
                .unwrap()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
        };
        assert_eq!(t("2025-01-01T00:00:00Z"), 1_735_689_600);
        assert_eq!(t("1970-01-01T00:00:00Z"), 0);
        assert_eq!(t("2024-02-29T12:30:00+00:00"), 1_709_209_800);
        assert_eq!(t("1736179625"), 1_736_179_625);
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2025-13-01T00:00:00Z").is_err());
        assert!(parse_time("2025-01-01T00:00:00+02:00").is_err());
    }
}
