//! Errors: [`StewardError`] when the Steward itself cannot work (files, keys, the
//! network), and [`Rejection`] when it refuses a request.

use serde::{Deserialize, Serialize};

/// Why the Steward cannot start or keep working.
#[derive(Debug, thiserror::Error)]
pub enum StewardError {
    /// A file or directory operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The CA directory is unusable (permissions, a half-written CA, a mismatch).
    #[error("CA directory {dir}: {why}")]
    CaDir {
        /// The directory.
        dir: String,
        /// What is wrong and what to do about it.
        why: String,
    },
    /// The issued-certificate record is corrupt.
    #[error("issued-certificate record {path}, line {line}: {why}")]
    Record {
        /// The record file.
        path: String,
        /// The 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// Generating a key or a certificate failed.
    #[error("certificate generation failed: {0}")]
    Cert(String),
    /// TLS setup failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The policy is unusable for a Steward.
    #[error("policy: {0}")]
    Policy(String),
}

impl StewardError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| StewardError::Io { what, source }
    }
}

/// A refused request: the HTTP status, a stable machine-readable reason code, and a
/// sentence for people. Sent as the CBOR map [`RejectionBody`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    /// HTTP status (4xx; 500 only when the Steward itself failed).
    pub status: u16,
    /// Stable reason code, e.g. `csr-signature-invalid` (see `docs/steward.md`).
    pub code: String,
    /// What was wrong, for a person.
    pub message: String,
}

impl Rejection {
    /// A rejection with this status, code and message.
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// The wire form.
    pub fn body(&self) -> RejectionBody {
        RejectionBody {
            reason_code: self.code.clone(),
            message: self.message.clone(),
        }
    }
}

/// The CBOR body of every 4xx/5xx answer: `{"reason-code": text, "message": text}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectionBody {
    /// Stable reason code.
    #[serde(rename = "reason-code")]
    pub reason_code: String,
    /// Explanation.
    pub message: String,
}

/// Reason code for an evidence verification failure: `evidence-` + the
/// `ward-attest` error variant in kebab case.
pub(crate) fn verify_error_code(e: &ward_attest::verify::VerifyError) -> &'static str {
    use ward_attest::verify::VerifyError as E;
    match e {
        E::Malformed { .. } => "evidence-malformed",
        E::MissingCollateral(_) => "evidence-missing-collateral",
        E::ChainInvalid { .. } => "evidence-chain-invalid",
        E::UnknownRoot { .. } => "evidence-unknown-root",
        E::CertificateExpired { .. } => "evidence-certificate-expired",
        E::CertificateNotYetValid { .. } => "evidence-certificate-not-yet-valid",
        E::SignatureInvalid { .. } => "evidence-signature-invalid",
        E::ChipIdMismatch { .. } => "evidence-chip-id-mismatch",
        E::TcbMismatch { .. } => "evidence-tcb-mismatch",
        E::TcbTooLow { .. } => "evidence-tcb-too-low",
        E::DebugNotAllowed => "evidence-debug-not-allowed",
        E::MeasurementNotAllowed { .. } => "evidence-measurement-not-allowed",
        E::ReportDataMismatch { .. } => "evidence-report-data-mismatch",
        E::GuestPolicyNotAllowed { .. } => "evidence-guest-policy-not-allowed",
        E::SoftwareNotAllowed => "evidence-software-not-allowed",
        E::QuoteInvalid(_) => "evidence-quote-invalid",
        E::CollateralExpired(_) => "evidence-collateral-expired",
        E::CollateralSignatureInvalid { .. } => "evidence-collateral-signature-invalid",
        E::TcbLevelNotFound(_) => "evidence-tcb-level-not-found",
        E::TcbStatusNotAllowed { .. } => "evidence-tcb-status-not-allowed",
        E::AdvisoryNotAllowed { .. } => "evidence-advisory-not-allowed",
        E::PcrMismatch { .. } => "evidence-pcr-mismatch",
        E::CrlExpired { .. } => "evidence-crl-expired",
        E::Policy(_) => "evidence-policy",
    }
}
