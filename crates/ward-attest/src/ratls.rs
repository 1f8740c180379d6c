//! RA-TLS: a Keep's self-signed TLS certificate carries its evidence, and the
//! evidence's report data binds the certificate's key and the client's nonce.
//!
//! The evidence travels in a non-critical X.509 extension, OID [`EVIDENCE_OID`],
//! whose value is the DER OCTET STRING of the CBOR [`Evidence`] envelope. See
//! `docs/ra-tls.md`.

use crate::report_data_for;
#[cfg(any(feature = "verify", feature = "ratls-issue"))]
use crate::Evidence;

/// OID of the evidence extension, as arcs (see `docs/ra-tls.md` for the arc).
pub const EVIDENCE_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 59_999, 77, 1];

/// Dotted form of the evidence extension's OID ([`EVIDENCE_OID`]).
pub const EVIDENCE_EXTENSION_OID: &str = "1.3.6.1.4.1.59999.77.1";

/// Dotted form of [`EVIDENCE_OID`], computed (equal to [`EVIDENCE_EXTENSION_OID`]).
pub fn evidence_oid_string() -> String {
    EVIDENCE_OID
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// DER OCTET STRING around `content`: the value of Ward's X.509 extensions (RA-TLS
/// evidence, the Steward's context and claims), which wrap CBOR bytes.
pub fn der_octet_string(content: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The report data a Keep must put in its evidence for a key and nonce.
pub fn binding(spki_der: &[u8], nonce: &[u8]) -> [u8; 64] {
    report_data_for(spki_der, Some(nonce))
}

/// Issuing side (inside the Keep).
#[cfg(feature = "ratls-issue")]
pub mod issue {
    use super::*;

    /// A fresh key pair and a self-signed certificate carrying `evidence_for(report_data)`.
    pub struct RaTlsIdentity {
        /// The certificate (DER).
        pub cert_der: Vec<u8>,
        /// The private key (PKCS#8 DER). Never leaves the Keep.
        pub key_der: Vec<u8>,
    }

    /// Errors while issuing.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot issue the RA-TLS certificate: {0}")]
    pub struct IssueError(String);

    /// Generates a P-256 key, asks `evidence_for` for evidence over
    /// SHA-512(SPKI ‖ nonce), and self-signs a certificate carrying it.
    pub fn identity(
        nonce: &[u8],
        evidence_for: impl FnOnce([u8; 64]) -> Evidence,
    ) -> Result<RaTlsIdentity, IssueError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| IssueError(e.to_string()))?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let evidence = evidence_for(binding(&spki, nonce));
        let mut params = rcgen::CertificateParams::new(vec!["ward-keep".to_string()])
            .map_err(|e| IssueError(e.to_string()))?;
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                EVIDENCE_OID,
                der_octet_string(&evidence.to_cbor()),
            ));
        let cert = params
            .self_signed(&key)
            .map_err(|e| IssueError(e.to_string()))?;
        Ok(RaTlsIdentity {
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        })
    }
}

/// Verifying side (the client, the Steward).
#[cfg(feature = "verify")]
pub mod check {
    use std::time::SystemTime;

    use x509_cert::der::{asn1::ObjectIdentifier, Decode, Encode};

    use super::*;
    use crate::verify::{verify_with_cache, ChainCache, Policy, VerifiedClaims, VerifyError};

    fn bad(why: String) -> VerifyError {
        VerifyError::Malformed {
            what: "RA-TLS certificate",
            why,
        }
    }

    /// Parses a certificate (DER) and returns its evidence and its SPKI (DER), or
    /// `None` for the evidence when the certificate has no evidence extension.
    fn parse_cert(cert_der: &[u8]) -> Result<(Option<Evidence>, Vec<u8>), VerifyError> {
        if cert_der.len() > crate::evidence::MAX_ENVELOPE_LEN + (64 << 10) {
            return Err(bad(format!("{} bytes is too large", cert_der.len())));
        }
        let cert = x509_cert::Certificate::from_der(cert_der).map_err(|e| bad(e.to_string()))?;
        let oid = ObjectIdentifier::new(EVIDENCE_EXTENSION_OID).map_err(|e| bad(e.to_string()))?;
        let mut found = cert
            .tbs_certificate
            .extensions
            .as_ref()
            .into_iter()
            .flatten()
            .filter(|e| e.extn_id == oid);
        let evidence = match (found.next(), found.next()) {
            (None, _) => None,
            (Some(_), Some(_)) => return Err(bad(format!("more than one {oid} extension"))),
            (Some(ext), None) => {
                let inner = x509_cert::der::asn1::OctetString::from_der(ext.extn_value.as_bytes())
                    .map_err(|e| bad(format!("evidence extension: {e}")))?;
                Some(Evidence::from_cbor(inner.as_bytes()).map_err(|e| bad(e.to_string()))?)
            }
        };
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| bad(e.to_string()))?;
        Ok((evidence, spki))
    }

    /// The evidence carried in a certificate (DER): `Ok(None)` if the certificate
    /// has no evidence extension ([`EVIDENCE_EXTENSION_OID`]), an error if the
    /// certificate or the envelope in it is malformed (or the extension repeats).
    /// Nothing is verified: pass the result to [`crate::verify::verify`].
    pub fn evidence_from_cert_der(cert_der: &[u8]) -> Result<Option<Evidence>, VerifyError> {
        parse_cert(cert_der).map(|(e, _)| e)
    }

    /// The evidence in a certificate, and the certificate's SPKI (DER). Unlike
    /// [`evidence_from_cert_der`], a certificate without evidence is an error.
    pub fn evidence_from_cert(cert_der: &[u8]) -> Result<(Evidence, Vec<u8>), VerifyError> {
        match parse_cert(cert_der)? {
            (Some(e), spki) => Ok((e, spki)),
            (None, _) => Err(bad(format!(
                "no evidence extension ({EVIDENCE_EXTENSION_OID})"
            ))),
        }
    }

    /// Verifies an RA-TLS certificate: its evidence against `policy` at `now`, and
    /// that the evidence binds this certificate's key and `nonce`.
    pub fn verify_cert(
        cert_der: &[u8],
        nonce: &[u8],
        policy: &Policy,
        now: SystemTime,
        cache: &ChainCache,
    ) -> Result<VerifiedClaims, VerifyError> {
        let (evidence, spki) = evidence_from_cert(cert_der)?;
        let mut bound = policy.clone();
        bound.report_data = Some(crate::verify::Hex(binding(&spki, nonce).to_vec()));
        verify_with_cache(&evidence, &bound, now, cache)
    }
}
