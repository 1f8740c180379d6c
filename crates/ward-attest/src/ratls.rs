//! RA-TLS: a Keep's self-signed TLS certificate carries its evidence, and the
//! evidence's report data binds the certificate's key and the client's nonce.
//!
//! The evidence travels in a non-critical X.509 extension, OID [`EVIDENCE_OID`],
//! whose value is the DER OCTET STRING of the CBOR [`Evidence`] envelope. See
//! `docs/ra-tls.md`.

use crate::{report_data_for, Evidence};

/// OID of the evidence extension (under the arc Ward uses for its own objects).
pub const EVIDENCE_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 59_999, 77, 1];

/// Dotted form of [`EVIDENCE_OID`].
pub fn evidence_oid_string() -> String {
    EVIDENCE_OID
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// DER OCTET STRING around `content`.
fn octet_string(content: &[u8]) -> Vec<u8> {
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
                octet_string(&evidence.to_cbor()),
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

    /// The evidence in a certificate, and the certificate's SPKI (DER).
    pub fn evidence_from_cert(cert_der: &[u8]) -> Result<(Evidence, Vec<u8>), VerifyError> {
        let bad = |why: String| VerifyError::Malformed {
            what: "RA-TLS certificate",
            why,
        };
        let cert = x509_cert::Certificate::from_der(cert_der).map_err(|e| bad(e.to_string()))?;
        let oid = ObjectIdentifier::new(&evidence_oid_string()).map_err(|e| bad(e.to_string()))?;
        let ext = cert
            .tbs_certificate
            .extensions
            .as_ref()
            .and_then(|exts| exts.iter().find(|e| e.extn_id == oid))
            .ok_or_else(|| bad(format!("no evidence extension ({oid})")))?;
        let inner = x509_cert::der::asn1::OctetString::from_der(ext.extn_value.as_bytes())
            .map_err(|e| bad(format!("evidence extension: {e}")))?;
        let evidence = Evidence::from_cbor(inner.as_bytes()).map_err(|e| bad(e.to_string()))?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| bad(e.to_string()))?;
        Ok((evidence, spki))
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
