//! The evidence envelope and software evidence.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};

/// Largest encoded envelope accepted, in bytes.
pub const MAX_ENVELOPE_LEN: usize = 1 << 20;

/// Which kind of TEE produced the evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TeeKind {
    /// AMD SEV-SNP attestation report.
    Snp,
    /// Intel TDX quote.
    Tdx,
    /// Intel SGX DCAP quote.
    Sgx,
    /// AWS Nitro Enclaves attestation document.
    Nitro,
    /// No hardware protection (process and kvm Keeps): [`SoftwareReport`].
    None,
}

impl std::fmt::Display for TeeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TeeKind::Snp => "snp",
            TeeKind::Tdx => "tdx",
            TeeKind::Sgx => "sgx",
            TeeKind::Nitro => "nitro",
            TeeKind::None => "none",
        })
    }
}

/// Material that helps verify evidence but is not signed by the TEE itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Collateral {
    /// SNP: the VCEK or VLEK certificate (DER).
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Vec::is_empty")]
    pub vek: Vec<u8>,
    /// Intermediate certificates (DER), e.g. an SNP ASK or ASVK. Roots are never
    /// taken from collateral: they are built in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<serde_bytes::ByteBuf>,
    /// TDX/SGX: the DCAP quote collateral (TCB info, QE identity, CRLs and their
    /// chains), as the JSON that PCCS tools produce.
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Vec::is_empty")]
    pub quote_collateral: Vec<u8>,
}

/// The evidence envelope, as carried in CBOR (in RA-TLS certificates, CSRs and on
/// the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// Which TEE produced `evidence`.
    pub kind: TeeKind,
    /// The raw report, quote or document, exactly as the hardware produced it.
    #[serde(with = "serde_bytes")]
    pub evidence: Vec<u8>,
    /// Verification material.
    #[serde(default)]
    pub collateral: Collateral,
}

/// Why an envelope could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// Larger than [`MAX_ENVELOPE_LEN`].
    #[error("evidence envelope of {0} bytes exceeds the {MAX_ENVELOPE_LEN}-byte limit")]
    TooLarge(usize),
    /// Not a valid envelope.
    #[error("malformed evidence envelope: {0}")]
    Malformed(String),
}

impl Evidence {
    /// Software evidence for a Keep without hardware protection.
    pub fn software(measurement: Vec<u8>, report_data: [u8; 64]) -> Self {
        let report = SoftwareReport {
            measurement,
            report_data: report_data.to_vec(),
        };
        let mut bytes = Vec::new();
        // Serializing a struct of two byte strings into a Vec cannot fail.
        let _ = ciborium::into_writer(&report, &mut bytes);
        Self {
            kind: TeeKind::None,
            evidence: bytes,
            collateral: Collateral::default(),
        }
    }

    /// Encodes the envelope as CBOR.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = ciborium::into_writer(self, &mut out);
        out
    }

    /// Decodes an envelope, bounded in size, rejecting unknown fields and trailing
    /// bytes.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, EvidenceError> {
        decode_exact(bytes)
    }
}

pub(crate) fn decode_exact<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, EvidenceError> {
    if bytes.len() > MAX_ENVELOPE_LEN {
        return Err(EvidenceError::TooLarge(bytes.len()));
    }
    let mut cursor = std::io::Cursor::new(bytes);
    let value =
        ciborium::from_reader(&mut cursor).map_err(|e| EvidenceError::Malformed(e.to_string()))?;
    if cursor.position() as usize != bytes.len() {
        return Err(EvidenceError::Malformed(
            "trailing bytes after the envelope".into(),
        ));
    }
    Ok(value)
}

/// What a Keep without hardware protection reports about itself. Nothing signs it:
/// it is only as trustworthy as the host that ran the Keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftwareReport {
    /// The launch measurement (SHA-384 of the Keep image, for kvm Keeps).
    #[serde(with = "serde_bytes")]
    pub measurement: Vec<u8>,
    /// 64 bytes binding the Keep's key and the client's nonce.
    #[serde(with = "serde_bytes")]
    pub report_data: Vec<u8>,
}

impl SoftwareReport {
    /// Decodes the `evidence` bytes of a `none` envelope.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, EvidenceError> {
        let r: Self = decode_exact(bytes)?;
        if r.report_data.len() != 64 {
            return Err(EvidenceError::Malformed(format!(
                "software report data is {} bytes, not 64",
                r.report_data.len()
            )));
        }
        if r.measurement.len() > 64 {
            return Err(EvidenceError::Malformed(
                "software measurement longer than 64 bytes".into(),
            ));
        }
        Ok(r)
    }
}

/// The 64 bytes of report data that bind a Keep's key (and the client's nonce) to its
/// evidence: SHA-512(SubjectPublicKeyInfo DER ‖ nonce).
pub fn report_data_for(spki_der: &[u8], nonce: Option<&[u8]>) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(spki_der);
    if let Some(n) = nonce {
        h.update(n);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip() {
        let e = Evidence::software(vec![7; 48], [1; 64]);
        assert_eq!(Evidence::from_cbor(&e.to_cbor()).unwrap(), e);
    }

    #[test]
    fn envelope_rejects_truncation_and_trailing_bytes() {
        let bytes = Evidence::software(vec![7; 48], [1; 64]).to_cbor();
        for cut in 0..bytes.len() {
            assert!(Evidence::from_cbor(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut more = bytes.clone();
        more.push(0);
        assert!(Evidence::from_cbor(&more).is_err());
    }

    #[test]
    fn envelope_rejects_unknown_fields() {
        #[derive(Serialize)]
        struct Extra {
            kind: TeeKind,
            #[serde(with = "serde_bytes")]
            evidence: Vec<u8>,
            surprise: u8,
        }
        let mut bytes = Vec::new();
        ciborium::into_writer(
            &Extra {
                kind: TeeKind::Snp,
                evidence: vec![],
                surprise: 1,
            },
            &mut bytes,
        )
        .unwrap();
        let err = Evidence::from_cbor(&bytes).unwrap_err().to_string();
        assert!(err.contains("surprise"), "{err}");
    }

    #[test]
    fn envelope_size_bounded() {
        assert!(matches!(
            Evidence::from_cbor(&vec![0; MAX_ENVELOPE_LEN + 1]),
            Err(EvidenceError::TooLarge(_))
        ));
    }

    #[test]
    fn report_data_binds_key_and_nonce() {
        let a = report_data_for(b"key", Some(b"nonce"));
        assert_ne!(a, report_data_for(b"key", Some(b"other")));
        assert_ne!(a, report_data_for(b"kez", Some(b"nonce")));
        assert_ne!(a, report_data_for(b"key", None));
    }
}
