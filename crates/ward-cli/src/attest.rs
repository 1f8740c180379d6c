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
  ward attest verify --kind snp report.bin --vcek vcek.der --policy policy.toml --at 2025-01-01T00:00:00Z --json
  ward attest verify --kind tdx quote.bin --collateral collateral.json --at 1751328000
  ward attest verify --kind nitro attestation.cose
  ward attest verify --kind csr keep.csr      (an Enarx-format CSR with SNP evidence)

Exit status: 0 accepted, 1 rejected (the reason is printed), 125 unusable input.")]
    Verify(VerifyArgs),
    /// Print the fields of a report, quote, document, envelope, CSR or certificate
    /// without judging it.
    #[command(after_help = "Example: ward attest inspect report.bin")]
    Inspect {
        /// Kind of the file. Default: guessed from its contents.
        #[arg(long, value_enum)]
        kind: Option<Kind>,
        /// The file.
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
    /// AMD SEV-SNP attestation report (1184 bytes); needs --vcek.
    Snp,
    /// Intel TDX quote (v4 or v5); needs --collateral.
    Tdx,
    /// Intel SGX DCAP quote (v3); needs --collateral.
    Sgx,
    /// AWS Nitro attestation document (COSE_Sign1); the chain is inside it.
    Nitro,
    /// A Ward evidence envelope (CBOR), of any kind, collateral included.
    Envelope,
    /// An Enarx-format CSR (PKCS#10, DER or PEM) carrying SNP evidence.
    Csr,
    /// An RA-TLS certificate (DER or PEM) carrying a Ward evidence envelope.
    Cert,
}

/// Arguments of `ward attest verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Kind of evidence in FILE.
    #[arg(long, value_enum)]
    kind: Kind,
    /// The report, quote, document, envelope, CSR or certificate.
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
    /// Verify as of this time (RFC 3339 like 2025-01-01T00:00:00Z or with an offset,
    /// 2025-01-01T02:00:00+02:00; or Unix seconds).
    /// Default: now.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// RA-TLS certificates: the nonce (hex) the certificate's evidence must bind,
    /// with its key.
    #[arg(long, value_name = "HEX")]
    nonce: Option<String>,
    /// Accept evidence with NO hardware protection (kind `none`). For testing only.
    #[arg(long)]
    insecure: bool,
    /// Print the verdict and claims as JSON.
    #[arg(long)]
    json: bool,
}

/// `writeln!` into a `String` (which cannot fail).
macro_rules! outln {
    ($o:expr, $($t:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($o, $($t)*);
    }};
}

/// Writes `s` to stdout; a closed pipe (`| head`) is not an error.
fn emit(s: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes()).and_then(|()| out.flush());
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

/// A PEM file's first block as DER; other bytes unchanged.
fn der_of(bytes: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Ok(bytes);
    };
    let Some(start) = text.find("-----BEGIN ") else {
        return Ok(bytes);
    };
    let body_start = text[start..]
        .find('\n')
        .map(|i| start + i + 1)
        .context("truncated PEM")?;
    let body_end = text[body_start..]
        .find("-----END ")
        .map(|i| body_start + i)
        .context("PEM without an END line")?;
    let b64: String = text[body_start..body_end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64_decode(&b64).context("invalid base64 in PEM")
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Runs an attestation subcommand.
pub fn run(cmd: AttestCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AttestCommand::Verify(args) => verify_cmd(args),
        AttestCommand::Inspect { kind, file } => inspect(kind, &file),
        AttestCommand::Policy(PolicyCommand::Init { path, force }) => {
            if path.as_os_str() == "-" {
                emit(verify::POLICY_TEMPLATE);
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

/// What `verify` checks besides the evidence itself.
enum Binding {
    None,
    /// Enarx CSR: the first 48 bytes of report data = SHA-384 of the CSR's SPKI.
    CsrKey(Vec<u8>),
}

fn verify_cmd(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let bytes = read(&args.file)?;
    let mut policy = match &args.policy {
        Some(p) => Policy::from_toml(&String::from_utf8(read(p)?).context("policy is not UTF-8")?)
            .with_context(|| format!("{}", p.display()))?,
        None => Policy::default(),
    };
    if args.insecure {
        policy.insecure_allow_software = true;
    }
    let now = match &args.at {
        Some(t) => parse_time(t)?,
        None => SystemTime::now(),
    };
    let mut binding = Binding::None;
    let mut notes = Vec::new();
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
        Kind::Csr => {
            let csr = verify::enarx::parse_csr(&der_of(bytes)?)?;
            if let Err(e) = verify::enarx::check_crls_current(&csr.crls, now) {
                notes.push(format!(
                    "note: {e} (CRLs are not applied to SNP verification)"
                ));
            }
            binding = Binding::CsrKey(csr.key_digest().to_vec());
            csr.evidence
        }
        Kind::Cert => {
            let der = der_of(bytes)?;
            if let Some(nonce) = &args.nonce {
                let nonce = unhex(nonce.trim()).context("--nonce is not hex")?;
                let (e, spki) = ward_attest::ratls::check::evidence_from_cert(&der)?;
                policy.report_data = Some(verify::Hex(
                    ward_attest::report_data_for(&spki, Some(&nonce)).to_vec(),
                ));
                e
            } else {
                notes.push(
                    "note: no --nonce: the evidence is not checked against the certificate's key"
                        .into(),
                );
                ward_attest::evidence_from_cert_der(&der)?
                    .context("the certificate carries no Ward evidence extension")?
            }
        }
    };
    if policy.insecure_allow_software {
        eprintln!("ward: WARNING: accepting Keeps with NO hardware protection (insecure_allow_software / --insecure): the host can read and change them");
    }
    let verdict = verify::verify(&evidence, &policy, now).and_then(|claims| match &binding {
        Binding::CsrKey(digest) if claims.report_data.get(..48) != Some(digest.as_slice()) => {
            Err(verify::VerifyError::ReportDataMismatch {
                expected: format!("{} (SHA-384 of the CSR's public key)", hex(digest)),
                got: hex(&claims.report_data),
            })
        }
        _ => Ok(claims),
    });
    for n in &notes {
        eprintln!("ward: {n}");
    }
    let mut o = String::new();
    let code = match verdict {
        Ok(claims) => {
            if args.json {
                outln!(
                    o,
                    "{}",
                    serde_json::json!({"verdict": "accepted", "claims": claims_json(&claims)})
                );
            } else {
                print_claims(&mut o, &claims);
                if matches!(binding, Binding::CsrKey(_)) {
                    outln!(
                        o,
                        "key binding: report data = SHA-384 of the CSR's public key"
                    );
                }
                outln!(o, "verdict: ACCEPTED");
            }
            ExitCode::SUCCESS
        }
        Err(reason) => {
            if args.json {
                outln!(
                    o,
                    "{}",
                    serde_json::json!({"verdict": "rejected", "reason": reason.to_string()})
                );
            } else {
                outln!(o, "verdict: REJECTED: {reason}");
            }
            ExitCode::from(1)
        }
    };
    emit(&o);
    Ok(code)
}

/// Guesses what a file holds from its first bytes and size.
fn guess_kind(b: &[u8]) -> anyhow::Result<Kind> {
    let u16_at = |o: usize| b.get(o..o + 2).map(|x| u16::from_le_bytes([x[0], x[1]]));
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
    };
    if b.len() == verify::snp::REPORT_LEN && matches!(u32_at(0), Some(2..=5)) {
        return Ok(Kind::Snp);
    }
    match (u16_at(0), u32_at(4)) {
        (Some(3), Some(0)) => return Ok(Kind::Sgx),
        (Some(4 | 5), Some(0x81)) => return Ok(Kind::Tdx),
        _ => {}
    }
    if b.starts_with(b"-----BEGIN CERTIFICATE REQUEST")
        || b.starts_with(b"-----BEGIN NEW CERTIFICATE REQUEST")
    {
        return Ok(Kind::Csr);
    }
    if b.starts_with(b"-----BEGIN CERTIFICATE") {
        return Ok(Kind::Cert);
    }
    if b.first() == Some(&0x30) {
        if verify::enarx::parse_csr(b).is_ok() {
            return Ok(Kind::Csr);
        }
        return Ok(Kind::Cert);
    }
    if verify::nitro::parse(b).is_ok() {
        return Ok(Kind::Nitro);
    }
    if Evidence::from_cbor(b).is_ok() {
        return Ok(Kind::Envelope);
    }
    bail!("cannot tell what this file is; pass --kind snp|tdx|sgx|nitro|envelope|csr|cert")
}

fn inspect(kind: Option<Kind>, file: &PathBuf) -> anyhow::Result<ExitCode> {
    let bytes = read(file)?;
    let kind = match kind {
        Some(k) => k,
        None => guess_kind(&bytes)?,
    };
    let mut o = String::new();
    outln!(o, "# {}", format!("{kind:?}").to_lowercase());
    match kind {
        Kind::Snp => {
            let report = verify::snp::Report::parse(&bytes)?;
            outln!(o, "{}", report.parsed);
        }
        Kind::Envelope => {
            let e = Evidence::from_cbor(&bytes)?;
            inspect_envelope(&mut o, &e);
        }
        Kind::Csr => {
            let csr = verify::enarx::parse_csr(&der_of(bytes)?)?;
            outln!(
                o,
                "public key SHA-384: {}\nVCEK: {} bytes\nCRLs: {}",
                hex(&csr.key_digest()),
                csr.evidence.collateral.vek.len(),
                csr.crls.len()
            );
            for (url, der) in &csr.crls {
                outln!(o, "  {url} ({} bytes)", der.len());
            }
            let report = verify::snp::Report::parse(&csr.evidence.evidence)?;
            outln!(o, "{}", report.parsed);
        }
        Kind::Cert => match ward_attest::evidence_from_cert_der(&der_of(bytes)?)? {
            Some(e) => inspect_envelope(&mut o, &e),
            None => outln!(
                o,
                "no Ward evidence extension ({})",
                ward_attest::EVIDENCE_EXTENSION_OID
            ),
        },
        Kind::Nitro => {
            let (_, doc) = verify::nitro::parse(&bytes)?;
            outln!(
                o,
                "module_id: {}\ntimestamp_ms: {}",
                doc.module_id,
                doc.timestamp
            );
            for (i, v) in &doc.pcrs {
                outln!(o, "pcr{i}: {}", hex(v));
            }
            outln!(
                o,
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
                    outln!(o, "{k}: {}", hex(v));
                }
            }
        }
        Kind::Tdx | Kind::Sgx => {
            let quote = verify::dcap::parse_quote(&bytes)?;
            outln!(o, "{:#?}", quote.header);
            outln!(o, "{:#?}", quote.report);
        }
    }
    emit(&o);
    Ok(ExitCode::SUCCESS)
}

fn inspect_envelope(o: &mut String, e: &Evidence) {
    outln!(o,
        "kind: {}\nevidence: {} bytes\nvek: {} bytes\nchain: {} certificates\nquote collateral: {} bytes",
        e.kind,
        e.evidence.len(),
        e.collateral.vek.len(),
        e.collateral.chain.len(),
        e.collateral.quote_collateral.len(),
    );
    if e.kind == TeeKind::None {
        if let Ok(r) = ward_attest::SoftwareReport::from_cbor(&e.evidence) {
            outln!(o,
                "software report (NO hardware protection, unsigned):\n  measurement: {}\n  report data: {}",
                hex(&r.measurement),
                hex(&r.report_data)
            );
        }
    } else if e.kind == TeeKind::Snp {
        if let Ok(r) = verify::snp::Report::parse(&e.evidence) {
            outln!(o, "{}", r.parsed);
        }
    }
}

fn print_claims(o: &mut String, c: &VerifiedClaims) {
    outln!(o, "kind: {}", c.kind);
    if c.insecure_software {
        outln!(
            o,
            "protection: NONE (software Keep; accepted only because the policy allows it)"
        );
    }
    outln!(o, "measurement: {}", hex(&c.measurement));
    if !c.platform_id.is_empty() {
        outln!(o, "chip id: {}", hex(&c.platform_id));
    }
    outln!(o, "report data: {}", hex(&c.report_data));
    if !c.tcb.is_empty() {
        let tcb: Vec<String> = c.tcb.iter().map(|(k, v)| format!("{k}={v}")).collect();
        outln!(o, "tcb: {}", tcb.join(" "));
    }
    outln!(o, "debug: {}", c.debug);
    for (k, v) in &c.signers {
        outln!(o, "{k}: {}", hex(v));
    }
    for (i, v) in &c.pcrs {
        outln!(o, "pcr{i}: {}", hex(v));
    }
    for (k, v) in &c.details {
        outln!(o, "{k}: {v}");
    }
}

/// The claims as one line of JSON.
pub(crate) fn claims_json_string(c: &VerifiedClaims) -> String {
    claims_json(c).to_string()
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
        "pcrs": c.pcrs.iter().map(|(i, v)| (i.to_string(), serde_json::json!(hex(v)))).collect::<serde_json::Map<_, _>>(),
        "details": c.details.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        "insecure_software": c.insecure_software,
    })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses `2025-01-01T00:00:00Z` (UTC only) or Unix seconds.
pub(crate) fn parse_time(t: &str) -> anyhow::Result<SystemTime> {
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(UNIX_EPOCH + Duration::from_secs(secs));
    }
    let bad = || {
        anyhow::anyhow!(
            "cannot parse time {t:?}: use RFC 3339 (2025-01-01T00:00:00Z, 2025-01-01T02:00:00+02:00) or Unix seconds"
        )
    };
    // The offset: Z, or +HH:MM / -HH:MM (seconds east of UTC).
    let (s, offset) = if let Some(s) = t.strip_suffix('Z').or_else(|| t.strip_suffix('z')) {
        (s, 0i64)
    } else {
        let cut = t.len().checked_sub(6).ok_or_else(bad)?;
        let (s, off) = (t.get(..cut).ok_or_else(bad)?, t.get(cut..).ok_or_else(bad)?);
        let sign = match off.as_bytes().first() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err(bad()),
        };
        let (h, m) = off[1..].split_once(':').ok_or_else(bad)?;
        let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 23 || m > 59 {
            return Err(bad());
        }
        (s, sign * (h * 3600 + m * 60))
    };
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
    let secs = days * 86_400 + (tm[0] * 3600 + tm[1] * 60 + tm[2]) as i64 - offset;
    let secs = u64::try_from(secs).map_err(|_| bad())?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_and_base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk").unwrap(), b"hi");
        assert!(base64_decode("a*b").is_none());
        let pem = b"-----BEGIN X-----\naGVs\nbG8=\n-----END X-----\n".to_vec();
        assert_eq!(der_of(pem).unwrap(), b"hello");
        assert_eq!(der_of(vec![0x30, 1, 2]).unwrap(), vec![0x30, 1, 2]);
        assert!(der_of(b"-----BEGIN X-----\naGVs".to_vec()).is_err());
    }

    #[test]
    fn kinds_are_guessed() {
        let mut snp = vec![0u8; verify::snp::REPORT_LEN];
        snp[0] = 2;
        assert_eq!(guess_kind(&snp).unwrap(), Kind::Snp);
        let mut tdx = vec![0u8; 1000];
        tdx[0] = 4;
        tdx[4] = 0x81;
        assert_eq!(guess_kind(&tdx).unwrap(), Kind::Tdx);
        let mut sgx = vec![0u8; 1000];
        sgx[0] = 3;
        assert_eq!(guess_kind(&sgx).unwrap(), Kind::Sgx);
        let env = Evidence::software(vec![1; 48], [2; 64]).to_cbor();
        assert_eq!(guess_kind(&env).unwrap(), Kind::Envelope);
        assert!(guess_kind(b"hello").is_err());
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(unhex("00ff10").unwrap(), vec![0, 255, 16]);
        assert!(unhex("0").is_none() && unhex("zz").is_none() && unhex("é0").is_none());
        assert_eq!(hex(&[0xab, 1]), "ab01");
    }

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
        assert_eq!(t("2025-01-01T02:00:00+02:00"), 1_735_689_600);
        assert_eq!(t("2024-12-31T19:00:00-05:00"), 1_735_689_600);
        assert!(parse_time("2025-01-01T00:00:00+2:00").is_err());
        assert!(parse_time("2025-01-01T00:00:00+24:00").is_err());
        assert!(parse_time("2025-01-01T00:00:00").is_err());
        assert!(parse_time("+00:00").is_err());
    }
}
