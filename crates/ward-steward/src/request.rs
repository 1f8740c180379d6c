//! CSRs: parsing what a Keep sends (Ward or Enarx format) and building Ward CSRs.
//!
//! A **Ward CSR** is a PKCS#10 request, signed with the Keep's key, whose
//! extensionRequest attribute carries two non-critical extensions:
//! - `1.3.6.1.4.1.59999.77.1` ([`ward_attest::EVIDENCE_EXTENSION_OID`]): the CBOR
//!   evidence envelope, inside an OCTET STRING (as in RA-TLS certificates);
//! - `1.3.6.1.4.1.59999.77.2` ([`crate::CONTEXT_OID`]): the CBOR [`CsrContext`],
//!   inside an OCTET STRING.
//!
//! The nonce is the context's exact CBOR bytes: the evidence's report data must be
//! `SHA-512(SubjectPublicKeyInfo DER ‖ context bytes)` ([`binding`]). So the hardware
//! signs the key, the time, a random value and the workload digest at once.
//!
//! An **Enarx CSR** carries SNP evidence under `1.3.6.1.4.1.58270.1.3`; its report
//! data starts with SHA-384 of the CSR's SubjectPublicKeyInfo. (`.1.1`, SGX, and
//! `.1.2`, KVM, are recognised and refused as unsupported.)

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use ward_attest::{report_data_for, Evidence};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::extensions::{GeneralName, ParsedExtension, X509Extension};
use x509_parser::prelude::FromDer;

use crate::der::{octet_string, parse_octet_string};
use crate::error::Rejection;
use crate::MAX_CSR_LEN;

/// Most subject alternative names in one request.
pub const MAX_SANS: usize = 16;
/// Size bounds of [`CsrContext::random`], bytes.
pub const RANDOM_LEN: std::ops::RangeInclusive<usize> = 16..=64;
/// Largest [`CsrContext::workload`] digest, bytes.
pub const MAX_WORKLOAD_LEN: usize = 64;

const ENARX_SGX: &str = "1.3.6.1.4.1.58270.1.1";
const ENARX_KVM: &str = "1.3.6.1.4.1.58270.1.2";
const ENARX_SNP: &str = "1.3.6.1.4.1.58270.1.3";

/// What a Ward CSR binds besides its key, in CBOR (`deny_unknown_fields`). Its exact
/// encoded bytes are the nonce in the report data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsrContext {
    /// When the Keep made the request, seconds since the Unix epoch. The Steward
    /// accepts it only within its freshness window of its own clock.
    pub time: u64,
    /// 16 to 64 random bytes. Each value is accepted once: the Steward's replay key.
    #[serde(with = "serde_bytes")]
    pub random: Vec<u8>,
    /// Digest of the workload the Keep loaded (e.g. SHA-256 of the .wasm), or empty.
    /// Copied into the issued certificate's claims.
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Vec::is_empty")]
    pub workload: Vec<u8>,
}

impl CsrContext {
    /// A context for `time` with 32 fresh random bytes.
    pub fn new(time: SystemTime, workload: Vec<u8>) -> Self {
        let mut random = vec![0u8; 32];
        // The system RNG does not fail on Linux; a zero nonce would only be refused
        // as a replay the second time.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random);
        Self {
            time: time
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            random,
            workload,
        }
    }

    /// The CBOR encoding (the nonce).
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = ciborium::into_writer(self, &mut out);
        out
    }

    /// Decodes and checks a context: at most 256 bytes, no trailing bytes, random
    /// and workload within their bounds.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() > 256 {
            return Err(format!("{} bytes is more than 256", bytes.len()));
        }
        let mut cursor = std::io::Cursor::new(bytes);
        let ctx: Self = ciborium::from_reader(&mut cursor).map_err(|e| e.to_string())?;
        if cursor.position() as usize != bytes.len() {
            return Err("trailing bytes after the context".into());
        }
        if !RANDOM_LEN.contains(&ctx.random.len()) {
            return Err(format!(
                "random is {} bytes; it must be 16 to 64",
                ctx.random.len()
            ));
        }
        if ctx.workload.len() > MAX_WORKLOAD_LEN {
            return Err(format!(
                "workload digest is {} bytes; at most {MAX_WORKLOAD_LEN}",
                ctx.workload.len()
            ));
        }
        Ok(ctx)
    }
}

/// The report data a Ward CSR's evidence must carry: SHA-512(SPKI DER ‖ context
/// bytes).
pub fn binding(spki_der: &[u8], context_cbor: &[u8]) -> [u8; 64] {
    report_data_for(spki_der, Some(context_cbor))
}

/// A subject alternative name the Steward can certify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    /// A DNS name.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

impl std::fmt::Display for San {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            San::Dns(d) => write!(f, "DNS:{d}"),
            San::Ip(i) => write!(f, "IP:{i}"),
        }
    }
}

/// Which format a CSR is in, with its evidence.
#[derive(Debug, Clone)]
pub enum CsrForm {
    /// Ward format: envelope + context.
    Ward {
        /// The evidence envelope.
        evidence: Evidence,
        /// The context's exact bytes (the nonce).
        context_cbor: Vec<u8>,
        /// The decoded context.
        context: CsrContext,
    },
    /// Enarx format: SNP evidence whose report data starts with SHA-384(SPKI).
    Enarx {
        /// The SNP evidence (report + VCEK).
        evidence: Evidence,
        /// The CRLs bundled with it: (distribution URL, DER).
        crls: Vec<(String, Vec<u8>)>,
    },
}

/// A CSR whose self-signature verified.
#[derive(Debug, Clone)]
pub struct ParsedCsr {
    /// The requester's SubjectPublicKeyInfo (DER), exactly as in the CSR.
    pub spki_der: Vec<u8>,
    /// Requested subject alternative names.
    pub sans: Vec<San>,
    /// The evidence, by format.
    pub form: CsrForm,
}

fn bad(code: &str, message: impl Into<String>) -> Rejection {
    Rejection::new(400, code, message)
}

/// Signature algorithms accepted on CSRs (no SHA-1).
const SIGNATURE_ALGORITHMS: &[&str] = &[
    "1.2.840.10045.4.3.2",   // ecdsa-with-SHA256
    "1.2.840.10045.4.3.3",   // ecdsa-with-SHA384
    "1.2.840.10045.4.3.4",   // ecdsa-with-SHA512
    "1.3.101.112",           // Ed25519
    "1.2.840.113549.1.1.11", // sha256WithRSAEncryption
    "1.2.840.113549.1.1.12", // sha384WithRSAEncryption
    "1.2.840.113549.1.1.13", // sha512WithRSAEncryption
    "1.2.840.113549.1.1.10", // RSASSA-PSS
];

/// Parses a DER CSR, checks its self-signature, and finds its evidence.
pub fn parse(der: &[u8]) -> Result<ParsedCsr, Rejection> {
    if der.len() > MAX_CSR_LEN {
        return Err(Rejection::new(
            413,
            "body-too-large",
            format!("the CSR is {} bytes; at most {MAX_CSR_LEN}", der.len()),
        ));
    }
    let (rest, csr) = X509CertificationRequest::from_der(der).map_err(|e| {
        bad(
            "csr-malformed",
            format!("the body is not a DER PKCS#10 CSR: {e}"),
        )
    })?;
    if !rest.is_empty() {
        return Err(bad(
            "csr-malformed",
            format!("{} trailing bytes after the CSR", rest.len()),
        ));
    }
    // x509-parser tolerates some BER liberties (wrong tag classes) in the unsigned
    // outer structure; a CSR must also be strict DER.
    <x509_cert::request::CertReq as x509_cert::der::Decode>::from_der(der)
        .map_err(|e| bad("csr-malformed", format!("the CSR is not strict DER: {e}")))?;
    if csr.signature_value.unused_bits != 0 {
        return Err(bad(
            "csr-malformed",
            "the signature BIT STRING has unused bits",
        ));
    }
    let alg = csr.signature_algorithm.algorithm.to_id_string();
    if !SIGNATURE_ALGORITHMS.contains(&alg.as_str()) {
        return Err(bad(
            "csr-signature-algorithm",
            format!("signature algorithm {alg} is not accepted (use ECDSA with SHA-256/384/512, Ed25519, or RSA with SHA-256 or better)"),
        ));
    }
    csr.verify_signature().map_err(|e| {
        bad(
            "csr-signature-invalid",
            format!("the CSR's self-signature does not verify with its own key ({e}): it was changed after signing"),
        )
    })?;
    let info = &csr.certification_request_info;
    let spki_der = info.subject_pki.raw.to_vec();

    let mut extensions: Vec<&X509Extension<'_>> = Vec::new();
    for attr in info.iter_attributes() {
        if let ParsedCriAttribute::ExtensionRequest(req) = attr.parsed_attribute() {
            extensions.extend(req.extensions.iter());
        }
    }
    let find = |oid: &str| -> Result<Option<&X509Extension<'_>>, Rejection> {
        let mut it = extensions
            .iter()
            .filter(|e| e.oid.to_id_string() == oid)
            .copied();
        match (it.next(), it.next()) {
            (Some(_), Some(_)) => Err(bad(
                "csr-malformed",
                format!("extension {oid} appears more than once"),
            )),
            (one, _) => Ok(one),
        }
    };
    let sans = match find("2.5.29.17")? {
        None => Vec::new(),
        Some(ext) => sans_of(ext)?,
    };
    let ward = find(ward_attest::EVIDENCE_EXTENSION_OID)?;
    let enarx_snp = find(ENARX_SNP)?;
    for (oid, what) in [(ENARX_SGX, "SGX"), (ENARX_KVM, "KVM")] {
        if find(oid)?.is_some() {
            return Err(bad(
                "evidence-unsupported",
                format!("Enarx {what} evidence ({oid}) is not supported; only Enarx SNP ({ENARX_SNP}) and Ward evidence ({})", ward_attest::EVIDENCE_EXTENSION_OID),
            ));
        }
    }
    let form = match (ward, enarx_snp) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "evidence-ambiguous",
                "the CSR carries both Ward and Enarx evidence",
            ))
        }
        (None, None) => {
            return Err(bad(
                "evidence-missing",
                format!(
                    "the CSR carries no evidence: expected extension {} (Ward) or {ENARX_SNP} (Enarx SNP)",
                    ward_attest::EVIDENCE_EXTENSION_OID
                ),
            ))
        }
        (None, Some(_)) => {
            let parsed = ward_attest::verify::enarx::parse_csr(der)
                .map_err(|e| bad("evidence-malformed", e.to_string()))?;
            if parsed.spki_der != spki_der {
                return Err(bad(
                    "csr-malformed",
                    "the CSR's public key reads differently with two parsers",
                ));
            }
            CsrForm::Enarx {
                evidence: parsed.evidence,
                crls: parsed.crls,
            }
        }
        (Some(ext), None) => {
            let cbor = parse_octet_string(ext.value).ok_or_else(|| {
                bad(
                    "evidence-malformed",
                    "the evidence extension's value is not an OCTET STRING",
                )
            })?;
            let evidence = Evidence::from_cbor(cbor)
                .map_err(|e| bad("evidence-malformed", e.to_string()))?;
            let ctx_ext = find(crate::CONTEXT_OID_STR)?.ok_or_else(|| {
                bad(
                    "context-missing",
                    format!(
                        "a Ward CSR needs the context extension {} (time, random, workload): it is the nonce of the report data",
                        crate::CONTEXT_OID_STR
                    ),
                )
            })?;
            let context_cbor = parse_octet_string(ctx_ext.value)
                .ok_or_else(|| {
                    bad(
                        "context-malformed",
                        "the context extension's value is not an OCTET STRING",
                    )
                })?
                .to_vec();
            let context = CsrContext::from_cbor(&context_cbor)
                .map_err(|e| bad("context-malformed", format!("CSR context: {e}")))?;
            CsrForm::Ward {
                evidence,
                context_cbor,
                context,
            }
        }
    };
    Ok(ParsedCsr {
        spki_der,
        sans,
        form,
    })
}

fn sans_of(ext: &X509Extension<'_>) -> Result<Vec<San>, Rejection> {
    let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() else {
        return Err(bad(
            "san-invalid",
            "the subjectAltName extension does not parse",
        ));
    };
    if san.general_names.len() > MAX_SANS {
        return Err(bad(
            "san-invalid",
            format!("more than {MAX_SANS} subject alternative names"),
        ));
    }
    san.general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) if valid_dns(d) => Ok(San::Dns(d.to_ascii_lowercase())),
            GeneralName::DNSName(d) => Err(bad("san-invalid", format!("{d:?} is not a DNS name"))),
            GeneralName::IPAddress(b) => match b.len() {
                4 => Ok(San::Ip(IpAddr::from(
                    <[u8; 4]>::try_from(*b).unwrap_or_default(),
                ))),
                16 => Ok(San::Ip(IpAddr::from(
                    <[u8; 16]>::try_from(*b).unwrap_or_default(),
                ))),
                n => Err(bad(
                    "san-invalid",
                    format!("an IP address SAN of {n} bytes"),
                )),
            },
            other => Err(bad(
                "san-invalid",
                format!("only DNS and IP subject alternative names are certified, not {other:?}"),
            )),
        })
        .collect()
}

/// A DNS name (optionally with a leading `*.` label): letters, digits, hyphens,
/// dot-separated labels of 1 to 63 bytes, at most 253 bytes.
fn valid_dns(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Builds a Ward CSR (DER) signed with `key`, for `sans`, carrying `evidence` and
/// `context`. The evidence must bind [`binding`]`(key's SPKI, context.to_cbor())`.
pub fn build(
    key: &rcgen::KeyPair,
    sans: &[String],
    context: &CsrContext,
    evidence: &Evidence,
) -> Result<Vec<u8>, rcgen::Error> {
    build_raw(key, sans, &context.to_cbor(), evidence)
}

/// Like [`build`], with the context's bytes given as they are (tests use this to
/// send malformed contexts).
pub fn build_raw(
    key: &rcgen::KeyPair,
    sans: &[String],
    context_cbor: &[u8],
    evidence: &Evidence,
) -> Result<Vec<u8>, rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(sans.to_vec())?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CommonName,
        sans.first().map(String::as_str).unwrap_or("ward-keep"),
    );
    params.distinguished_name = dn;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            ward_attest::ratls::EVIDENCE_OID,
            octet_string(&evidence.to_cbor()),
        ));
    params
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            crate::CONTEXT_OID,
            octet_string(context_cbor),
        ));
    Ok(params.serialize_request(key)?.der().to_vec())
}

/// A fresh P-256 key and a Ward CSR for it with software (`none`) evidence that
/// binds it: what a process or kvm Keep sends. Returns (CSR DER, key).
pub fn software_csr(
    sans: &[String],
    measurement: Vec<u8>,
    context: &CsrContext,
) -> Result<(Vec<u8>, rcgen::KeyPair), rcgen::Error> {
    use rcgen::PublicKeyData;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let evidence = Evidence::software(
        measurement,
        binding(&key.subject_public_key_info(), &context.to_cbor()),
    );
    let csr = build(&key, sans, context, &evidence)?;
    Ok((csr, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_bounds() {
        let ok = CsrContext::new(SystemTime::now(), vec![1; 32]);
        assert_eq!(CsrContext::from_cbor(&ok.to_cbor()).unwrap(), ok);
        let short = CsrContext {
            random: vec![0; 8],
            ..ok.clone()
        };
        assert!(CsrContext::from_cbor(&short.to_cbor()).is_err());
        let mut trailing = ok.to_cbor();
        trailing.push(0);
        assert!(CsrContext::from_cbor(&trailing).is_err());
        assert!(CsrContext::from_cbor(&[0xff; 300]).is_err());
    }

    #[test]
    fn dns_names() {
        assert!(valid_dns("keep.example.com"));
        assert!(valid_dns("*.example.com"));
        assert!(!valid_dns("bad_name"));
        assert!(!valid_dns("-a.b"));
        assert!(!valid_dns(""));
        assert!(!valid_dns("a..b"));
    }

    #[test]
    fn software_csr_parses_and_binds() {
        let ctx = CsrContext::new(SystemTime::now(), vec![9; 32]);
        let (der, _) =
            software_csr(&["keep.test".into(), "127.0.0.1".into()], vec![1; 48], &ctx).unwrap();
        let parsed = parse(&der).unwrap();
        assert_eq!(
            parsed.sans,
            vec![
                San::Dns("keep.test".into()),
                San::Ip("127.0.0.1".parse().unwrap())
            ]
        );
        let CsrForm::Ward {
            context_cbor,
            context,
            ..
        } = parsed.form
        else {
            panic!("not a Ward CSR")
        };
        assert_eq!(context, ctx);
        assert_eq!(context_cbor, ctx.to_cbor());
    }
}
