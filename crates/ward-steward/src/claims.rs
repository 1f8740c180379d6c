//! The claims the Steward puts in each certificate it issues: a non-critical
//! extension, OID [`crate::CLAIMS_OID`], whose value is an OCTET STRING of this CBOR
//! map. A relying party that trusts the Steward's CA can read what was attested
//! without understanding attestation.

use serde::{Deserialize, Serialize};
use ward_attest::verify::VerifiedClaims;
use x509_parser::prelude::FromDer;

/// What the Steward verified before issuing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IssuedClaims {
    /// CSR format: `ward` or `enarx`.
    pub format: String,
    /// TEE kind: `snp`, `tdx`, `sgx`, `nitro` or `none`.
    pub kind: String,
    /// Launch measurement.
    #[serde(with = "serde_bytes")]
    pub measurement: Vec<u8>,
    /// Workload digest from the CSR context (empty when none was given, and for
    /// Enarx CSRs).
    #[serde(with = "serde_bytes")]
    pub workload: Vec<u8>,
    /// True for `none` evidence accepted by an insecure policy: no hardware
    /// protection.
    pub insecure_software: bool,
    /// Whether the TEE runs in debug mode (only with `allow_debug`).
    pub debug: bool,
    /// TCB security version numbers, by name.
    pub tcb: Vec<(String, u64)>,
}

impl IssuedClaims {
    /// Claims from verified evidence.
    pub fn new(format: &str, claims: &VerifiedClaims, workload: Vec<u8>) -> Self {
        Self {
            format: format.into(),
            kind: claims.kind.to_string(),
            measurement: claims.measurement.clone(),
            workload,
            insecure_software: claims.insecure_software,
            debug: claims.debug,
            tcb: claims.tcb.clone(),
        }
    }

    /// CBOR encoding.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = ciborium::into_writer(self, &mut out);
        out
    }

    /// The claims in a certificate (DER) issued by a Steward: `Ok(None)` when the
    /// certificate has no claims extension. The certificate's signature is not
    /// checked here: check the chain first.
    pub fn from_cert_der(der: &[u8]) -> Result<Option<Self>, String> {
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
            .map_err(|e| format!("not a certificate: {e}"))?;
        let mut found = cert
            .extensions()
            .iter()
            .filter(|e| e.oid.to_id_string() == crate::CLAIMS_OID_STR);
        let ext = match (found.next(), found.next()) {
            (None, _) => return Ok(None),
            (Some(_), Some(_)) => return Err("more than one claims extension".into()),
            (Some(e), None) => e,
        };
        let cbor = crate::der::parse_octet_string(ext.value)
            .ok_or("the claims extension is not an OCTET STRING")?;
        if cbor.len() > 64 << 10 {
            return Err("claims larger than 64 KiB".into());
        }
        let mut cursor = std::io::Cursor::new(cbor);
        let claims: Self = ciborium::from_reader(&mut cursor).map_err(|e| e.to_string())?;
        if cursor.position() as usize != cbor.len() {
            return Err("trailing bytes after the claims".into());
        }
        Ok(Some(claims))
    }
}
