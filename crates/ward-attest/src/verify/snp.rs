//! AMD SEV-SNP: report parsing, the ARK → ASK/ASVK → VCEK/VLEK chain, the report
//! signature, and the VCEK's TCB and chip binding.

use std::time::SystemTime;

use p384::ecdsa::signature::Verifier;
use sev::certs::snp::{builtin, Certificate as SevCert, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;
use x509_cert::der::{asn1::ObjectIdentifier, Decode};

use super::{x509, ChainCache, Policy, VerifiedClaims, VerifyError};
use crate::{Collateral, TeeKind};

/// Size of an SNP attestation report (versions 2 through 5).
pub const REPORT_LEN: usize = 0x4A0;
/// The signed part of the report.
const SIGNED_LEN: usize = 0x2A0;
/// SIGNATURE_ALGO value for ECDSA P-384 with SHA-384.
const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;
/// Guest policy bit: debugging allowed.
const POLICY_DEBUG: u64 = 1 << 19;

const OID_BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
const OID_TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
const OID_SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
const OID_UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
const OID_FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
const OID_HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");

/// An AMD EPYC product line, each with its own root keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// 3rd generation EPYC.
    Milan,
    /// 4th generation EPYC.
    Genoa,
    /// 5th generation EPYC.
    Turin,
}

impl Product {
    const ALL: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

    fn name(self) -> &'static str {
        match self {
            Product::Milan => "milan",
            Product::Genoa => "genoa",
            Product::Turin => "turin",
        }
    }

    fn roots(self) -> (&'static [u8], &'static [u8]) {
        match self {
            Product::Milan => (builtin::milan::ARK, builtin::milan::ASK),
            Product::Genoa => (builtin::genoa::ARK, builtin::genoa::ASK),
            Product::Turin => (builtin::turin::ARK, builtin::turin::ASK),
        }
    }

    /// The product named `name` ("milan", "genoa" or "turin").
    pub fn parse(name: &str) -> Option<Product> {
        Product::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// One AMD product's trust anchors: its root (ARK) and the intermediate (ASK) that
/// signs VCEKs. The built-in ones are [`Product::trust_anchors`]; tests pass their own.
#[derive(Debug, Clone, Copy)]
pub struct TrustAnchors<'a> {
    /// Product name, e.g. "milan" (used in messages, claims and `snp.product`).
    pub product: &'a str,
    /// The ARK (self-signed, RSA-PSS SHA-384), PEM or DER.
    pub ark: &'a [u8],
    /// The ASK, signed by the ARK, PEM or DER.
    pub ask: &'a [u8],
}

impl Product {
    /// The built-in AMD roots of this product (from the `sev` crate).
    pub fn trust_anchors(self) -> TrustAnchors<'static> {
        let (ark, ask) = self.roots();
        TrustAnchors {
            product: self.name(),
            ark,
            ask,
        }
    }
}

/// A parsed report with the raw bytes it came from.
pub struct Report {
    /// The parsed fields.
    pub parsed: AttestationReport,
    raw: Vec<u8>,
}

impl Report {
    /// Parses a report, bounding its size.
    pub fn parse(bytes: &[u8]) -> Result<Self, VerifyError> {
        if bytes.len() != REPORT_LEN {
            return Err(VerifyError::Malformed {
                what: "SNP report",
                why: format!("{} bytes; an SNP report is {REPORT_LEN} bytes", bytes.len()),
            });
        }
        let version = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if version < 2 {
            return Err(VerifyError::Malformed {
                what: "SNP report",
                why: format!("version {version} is not supported (need 2 or later)"),
            });
        }
        let parsed = AttestationReport::from_bytes(bytes).map_err(|e| VerifyError::Malformed {
            what: "SNP report",
            why: e.to_string(),
        })?;
        Ok(Self {
            parsed,
            raw: bytes.to_vec(),
        })
    }

    /// The raw guest policy.
    pub fn guest_policy(&self) -> u64 {
        u64::from_le_bytes(self.raw[0x08..0x10].try_into().unwrap_or([0; 8]))
    }

    /// The raw KEY_INFO word (bits 4:2: which key signed the report).
    fn key_info(&self) -> u32 {
        u32::from_le_bytes(self.raw[0x48..0x4C].try_into().unwrap_or([0; 4]))
    }

    /// The ECDSA P-384 signature (stored little-endian, zero-padded to 72 bytes).
    fn signature(&self) -> Result<p384::ecdsa::Signature, VerifyError> {
        let mut r = [0u8; 48];
        let mut s = [0u8; 48];
        r.copy_from_slice(&self.raw[SIGNED_LEN..SIGNED_LEN + 48]);
        s.copy_from_slice(&self.raw[SIGNED_LEN + 72..SIGNED_LEN + 72 + 48]);
        r.reverse();
        s.reverse();
        p384::ecdsa::Signature::from_scalars(r, s).map_err(|_| VerifyError::SignatureInvalid {
            signer: "VCEK",
            what: "SNP report (the signature is not a valid P-384 value)",
        })
    }
}

fn sev_cert(der: &[u8], which: &str) -> Result<SevCert, VerifyError> {
    let r = if der.starts_with(b"-----BEGIN") {
        SevCert::from_pem(der)
    } else {
        SevCert::from_der(der)
    };
    r.map_err(|e| VerifyError::Malformed {
        what: "certificate",
        why: format!("{which}: {e}"),
    })
}

fn signs(
    issuer: &SevCert,
    subject: &SevCert,
    issuer_name: &str,
    subject_name: &str,
) -> Result<(), VerifyError> {
    (issuer, subject)
        .verify()
        .map_err(|e| VerifyError::ChainInvalid {
            issuer: issuer_name.to_string(),
            subject: subject_name.to_string(),
            why: e.to_string(),
        })
}

/// Verifies the chain from one of `anchors` to the endorsement key; returns the
/// product name of the anchor that vouches for it.
fn verify_chain<'a>(
    vek_der: &[u8],
    intermediate: Option<&[u8]>,
    anchors: &[TrustAnchors<'a>],
    policy: &Policy,
    now: SystemTime,
    cache: &ChainCache,
) -> Result<&'a str, VerifyError> {
    let vek = sev_cert(vek_der, "VCEK/VLEK")?;
    let candidates: Vec<&TrustAnchors<'a>> = match &policy.snp.product {
        Some(name) => anchors.iter().filter(|a| a.product == name).collect(),
        None => anchors.iter().collect(),
    };
    if candidates.is_empty() {
        return Err(VerifyError::Policy(format!(
            "no AMD roots for snp.product {:?}",
            policy.snp.product.as_deref().unwrap_or("")
        )));
    }
    let mut last_err = None;
    for anchor in &candidates {
        let ark = sev_cert(anchor.ark, "ARK")?;
        let ask_bytes = intermediate.unwrap_or(anchor.ask);
        let ask = sev_cert(ask_bytes, "ASK")?;
        let ark_name = format!("ARK ({})", anchor.product);
        let ask_name = if intermediate.is_some() {
            "ASK/ASVK (from collateral)".to_string()
        } else {
            format!("ASK ({})", anchor.product)
        };
        let key = ChainCache::key(&[anchor.ark, ask_bytes, vek_der]);
        if !cache.contains(&key) {
            // Which certificate the VEK chains through decides the product.
            match signs(&ask, &vek, &ask_name, "VCEK/VLEK") {
                Ok(()) => {}
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            }
            signs(&ark, &ark, &ark_name, &ark_name)?;
            signs(&ark, &ask, &ark_name, &ask_name)?;
            cache.insert(key);
        }
        for (bytes, which) in [
            (anchor.ark, ark_name.as_str()),
            (ask_bytes, ask_name.as_str()),
            (vek_der, "VCEK/VLEK"),
        ] {
            x509::check_dates(&x509::parse(bytes, which)?, which, now)?;
        }
        return Ok(anchor.product);
    }
    match (candidates.len(), last_err) {
        (1, Some(e)) => Err(e),
        _ => Err(VerifyError::UnknownRoot {
            subject: "VCEK/VLEK".into(),
            tried: candidates
                .iter()
                .map(|a| a.product)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Checks that an intermediate (an ASK, or the ASVK that signs VLEKs) is signed by
/// `product`'s built-in ARK and valid at `now`.
pub fn check_intermediate(
    product: Product,
    intermediate: &[u8],
    now: SystemTime,
) -> Result<(), VerifyError> {
    let (ark_pem, _) = product.roots();
    let ark = sev_cert(ark_pem, "ARK")?;
    let inter = sev_cert(intermediate, "ASK/ASVK")?;
    let ark_name = format!("ARK ({})", product.name());
    signs(&ark, &inter, &ark_name, "ASK/ASVK")?;
    x509::check_dates(&x509::parse(intermediate, "ASK/ASVK")?, "ASK/ASVK", now)
}

fn ext_u8(
    cert: &x509_cert::Certificate,
    oid: &ObjectIdentifier,
) -> Result<Option<u8>, VerifyError> {
    match x509::extension(cert, oid) {
        None => Ok(None),
        Some(raw) => u8::from_der(raw)
            .map(Some)
            .map_err(|e| VerifyError::Malformed {
                what: "VCEK TCB extension",
                why: format!("{oid}: {e}"),
            }),
    }
}

/// Checks the VCEK was issued for this chip and this reported TCB.
fn check_vek_binding(vek_der: &[u8], report: &AttestationReport) -> Result<(), VerifyError> {
    let cert = x509::parse(vek_der, "VCEK/VLEK")?;
    if let Some(raw) = x509::extension(&cert, &OID_HW_ID) {
        // AMD stores the raw chip id; tolerate a DER OCTET STRING wrapper too.
        let hw = if raw.len() > 2 && raw[0] == 0x04 && raw[1] as usize == raw.len() - 2 {
            &raw[2..]
        } else {
            raw
        };
        let chip = &report.chip_id[..hw.len().min(64)];
        if hw.is_empty() || hw != chip {
            return Err(VerifyError::ChipIdMismatch {
                cert: hex::encode(hw),
                report: hex::encode(report.chip_id),
            });
        }
    }
    let tcb = &report.reported_tcb;
    let checks: [(&ObjectIdentifier, &'static str, Option<u8>); 5] = [
        (&OID_BL_SPL, "bootloader", Some(tcb.bootloader)),
        (&OID_TEE_SPL, "tee", Some(tcb.tee)),
        (&OID_SNP_SPL, "snp", Some(tcb.snp)),
        (&OID_UCODE_SPL, "microcode", Some(tcb.microcode)),
        (&OID_FMC_SPL, "fmc", tcb.fmc),
    ];
    for (oid, component, in_report) in checks {
        if let (Some(cert_v), Some(report_v)) = (ext_u8(&cert, oid)?, in_report) {
            if cert_v != report_v {
                return Err(VerifyError::TcbMismatch {
                    component,
                    report: report_v,
                    cert: cert_v,
                });
            }
        }
    }
    Ok(())
}

fn check_min_tcb(report: &AttestationReport, policy: &Policy) -> Result<(), VerifyError> {
    let min = policy.snp.min_tcb;
    let tcb = &report.reported_tcb;
    for (component, got, want) in [
        ("bootloader", tcb.bootloader, min.bootloader),
        ("tee", tcb.tee, min.tee),
        ("snp", tcb.snp, min.snp),
        ("microcode", tcb.microcode, min.microcode),
        ("fmc", tcb.fmc.unwrap_or(0), min.fmc),
    ] {
        if got < want {
            return Err(VerifyError::TcbTooLow {
                component,
                got,
                min: want,
            });
        }
    }
    Ok(())
}

/// Verifies an SNP report with its VCEK/VLEK (and, for VLEK, the ASVK) as of `now`.
pub fn verify(
    bytes: &[u8],
    collateral: &Collateral,
    policy: &Policy,
    now: SystemTime,
) -> Result<VerifiedClaims, VerifyError> {
    verify_cached(bytes, collateral, policy, now, &ChainCache::new())
}

/// [`verify`], reusing chain checks recorded in `cache`.
pub fn verify_cached(
    bytes: &[u8],
    collateral: &Collateral,
    policy: &Policy,
    now: SystemTime,
    cache: &ChainCache,
) -> Result<VerifiedClaims, VerifyError> {
    let builtin = Product::ALL.map(Product::trust_anchors);
    verify_with_anchors(bytes, collateral, &builtin, policy, now, cache)
}

/// [`verify`] against the given trust anchors instead of the built-in AMD roots
/// (for tests that make their own ARK, ASK and VCEK).
pub fn verify_with_anchors(
    bytes: &[u8],
    collateral: &Collateral,
    anchors: &[TrustAnchors<'_>],
    policy: &Policy,
    now: SystemTime,
    cache: &ChainCache,
) -> Result<VerifiedClaims, VerifyError> {
    let report = Report::parse(bytes)?;
    if collateral.vek.is_empty() {
        return Err(VerifyError::MissingCollateral(
            "the VCEK/VLEK certificate (--vcek)",
        ));
    }
    if collateral.chain.len() > 1 {
        return Err(VerifyError::Malformed {
            what: "SNP collateral",
            why: format!(
                "{} intermediate certificates; at most one (an ASK or ASVK) is used",
                collateral.chain.len()
            ),
        });
    }
    let intermediate = collateral.chain.first().map(|c| c.as_slice());
    let product = verify_chain(&collateral.vek, intermediate, anchors, policy, now, cache)?;
    check_vek_binding(&collateral.vek, &report.parsed)?;

    let key = x509::parse(&collateral.vek, "VCEK/VLEK")?;
    let spki = key
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let vk =
        p384::ecdsa::VerifyingKey::from_sec1_bytes(spki).map_err(|e| VerifyError::Malformed {
            what: "VCEK public key",
            why: e.to_string(),
        })?;
    verify_report_signature(&report, &vk, policy, product)
}

/// The checks after the chain, for a report signed by `product`'s VCEK/VLEK `vk`:
/// the report signature, then the SNP policy (guest policy mask, minimum TCB).
/// Public so that tests can sign synthetic reports with their own key.
pub fn verify_signed_report(
    report: &Report,
    vk: &p384::ecdsa::VerifyingKey,
    policy: &Policy,
    product: Product,
) -> Result<VerifiedClaims, VerifyError> {
    verify_report_signature(report, vk, policy, product.name())
}

fn verify_report_signature(
    report: &Report,
    vk: &p384::ecdsa::VerifyingKey,
    policy: &Policy,
    product: &str,
) -> Result<VerifiedClaims, VerifyError> {
    if report.parsed.sig_algo != SIG_ALGO_ECDSA_P384_SHA384 {
        return Err(VerifyError::Malformed {
            what: "SNP report",
            why: format!(
                "signature algorithm {} is not ECDSA P-384 with SHA-384 (1)",
                report.parsed.sig_algo
            ),
        });
    }
    let sig = report.signature()?;
    vk.verify(&report.raw[..SIGNED_LEN], &sig)
        .map_err(|_| VerifyError::SignatureInvalid {
            signer: "VCEK",
            what: "SNP report",
        })?;

    let guest_policy = report.guest_policy();
    if let Some(mask) = policy.snp.guest_policy_mask {
        let bits = guest_policy & !(mask | POLICY_DEBUG);
        if bits != 0 {
            return Err(VerifyError::GuestPolicyNotAllowed {
                policy: guest_policy,
                bits,
            });
        }
    }
    check_min_tcb(&report.parsed, policy)?;
    Ok(claims(report, product))
}

fn signing_key(key_info: u32) -> &'static str {
    match (key_info >> 2) & 0b111 {
        0 => "vcek",
        1 => "vlek",
        7 => "none",
        _ => "reserved",
    }
}

fn claims(report: &Report, product: &str) -> VerifiedClaims {
    let r = &report.parsed;
    let t = &r.reported_tcb;
    let mut tcb = vec![
        ("bootloader".to_string(), t.bootloader as u64),
        ("tee".to_string(), t.tee as u64),
        ("snp".to_string(), t.snp as u64),
        ("microcode".to_string(), t.microcode as u64),
    ];
    if let Some(f) = t.fmc {
        tcb.push(("fmc".into(), f as u64));
    }
    VerifiedClaims {
        kind: TeeKind::Snp,
        measurement: r.measurement.to_vec(),
        report_data: r.report_data.to_vec(),
        tcb,
        debug: report.guest_policy() & POLICY_DEBUG != 0,
        platform_id: r.chip_id.to_vec(),
        signers: vec![
            ("id_key_digest".into(), r.id_key_digest.to_vec()),
            ("author_key_digest".into(), r.author_key_digest.to_vec()),
        ],
        details: vec![
            ("product".into(), product.into()),
            ("signing_key".into(), signing_key(report.key_info()).into()),
            ("report_version".into(), r.version.to_string()),
            ("vmpl".into(), r.vmpl.to_string()),
            (
                "guest_policy".into(),
                format!("{:#x}", report.guest_policy()),
            ),
            ("guest_svn".into(), r.guest_svn.to_string()),
            ("host_data".into(), hex::encode(r.host_data)),
        ],
        pcrs: Vec::new(),
        insecure_software: false,
    }
}
