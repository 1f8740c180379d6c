/// Why evidence was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The evidence bytes cannot be parsed.
    #[error("malformed {what}: {why}")]
    Malformed {
        /// What was being parsed.
        what: &'static str,
        /// Why it failed.
        why: String,
    },
    /// Verification needs something that was not supplied.
    #[error("missing collateral: {0}")]
    MissingCollateral(&'static str),
    /// A certificate in the chain is not signed by its issuer.
    #[error("certificate chain broken: {issuer} did not sign {subject} ({why})")]
    ChainInvalid {
        /// The issuing certificate, e.g. "ARK (milan)".
        issuer: String,
        /// The issued certificate.
        subject: String,
        /// Detail from the signature check.
        why: String,
    },
    /// No built-in root vouches for the evidence's certificate.
    #[error("the {subject} certificate does not chain to the AMD roots of {tried}")]
    UnknownRoot {
        /// The certificate.
        subject: String,
        /// The product roots tried.
        tried: String,
    },
    /// A certificate has expired (or `now` is after its validity).
    #[error("the {which} certificate expired at {not_after} (checked at {now})")]
    CertificateExpired {
        /// Which certificate.
        which: String,
        /// Its notAfter, RFC 3339.
        not_after: String,
        /// The time checked against, RFC 3339.
        now: String,
    },
    /// A certificate is not valid yet.
    #[error("the {which} certificate is not valid before {not_before} (checked at {now})")]
    CertificateNotYetValid {
        /// Which certificate.
        which: String,
        /// Its notBefore, RFC 3339.
        not_before: String,
        /// The time checked against, RFC 3339.
        now: String,
    },
    /// The report's signature does not verify with the endorsement key.
    #[error("signature invalid: the {signer} did not sign this {what} (it was changed after signing, or was signed by another key)")]
    SignatureInvalid {
        /// The key that should have signed.
        signer: &'static str,
        /// What was signed.
        what: &'static str,
    },
    /// The endorsement key certificate is for another chip.
    #[error("the VCEK is for chip {cert}, but the report comes from chip {report}")]
    ChipIdMismatch {
        /// Chip id in the certificate (hex).
        cert: String,
        /// Chip id in the report (hex).
        report: String,
    },
    /// The endorsement key certificate was issued for a different TCB than the report claims.
    #[error("TCB mismatch: the report's reported {component} SVN is {report}, but its VCEK certifies {cert}")]
    TcbMismatch {
        /// The TCB component.
        component: &'static str,
        /// Value in the report.
        report: u8,
        /// Value in the certificate.
        cert: u8,
    },
    /// A TCB component is below the policy's minimum.
    #[error("TCB too old: {component} SVN {got} is below the policy minimum {min}")]
    TcbTooLow {
        /// The TCB component.
        component: &'static str,
        /// Its value.
        got: u8,
        /// The minimum.
        min: u8,
    },
    /// The TEE runs in debug mode, so the host can read its memory.
    #[error("debug mode is enabled: the host can read and change this TEE's memory (set allow_debug = true to accept it)")]
    DebugNotAllowed,
    /// The measurement is not on the policy's allow-list.
    #[error("measurement {got} is not in the policy's allow-list")]
    MeasurementNotAllowed {
        /// The measurement (hex).
        got: String,
    },
    /// The report data does not bind what the verifier expected.
    #[error("report data mismatch: expected {expected}, evidence has {got}")]
    ReportDataMismatch {
        /// Expected (hex).
        expected: String,
        /// Found (hex).
        got: String,
    },
    /// The guest policy has bits set that the verifier's policy does not allow.
    #[error("guest policy {policy:#x} sets bits {bits:#x} outside the allowed mask")]
    GuestPolicyNotAllowed {
        /// The guest policy from the report.
        policy: u64,
        /// The offending bits.
        bits: u64,
    },
    /// Software evidence (no hardware protection) without the policy's consent.
    #[error("this Keep has no hardware protection (evidence kind `none`); accept it only for testing, with insecure_allow_software = true / --insecure")]
    SoftwareNotAllowed,
    /// The DCAP quote or its collateral failed verification.
    #[error("quote verification failed: {0}")]
    QuoteInvalid(String),
    /// The DCAP collateral is outside its validity window at `now`.
    #[error("collateral not valid at the verification time: {0}")]
    CollateralExpired(String),
    /// A signature over DCAP collateral (TCB info, QE identity) does not verify.
    #[error("collateral signature invalid: the {what} is not signed by Intel's TCB signing key")]
    CollateralSignatureInvalid {
        /// Which collateral.
        what: &'static str,
    },
    /// The platform's TCB (SVNs) is not covered by any level of the TCB info.
    #[error("the platform's TCB matches no level in Intel's TCB info (older than every known level): {0}")]
    TcbLevelNotFound(String),
    /// The platform's TCB status is not accepted by the policy.
    #[error("TCB status {status} is not accepted (only UpToDate by default; allow it by name in [dcap] allow_statuses)")]
    TcbStatusNotAllowed {
        /// The status, e.g. "OutOfDate".
        status: String,
    },
    /// The platform is affected by an advisory the policy does not accept.
    #[error(
        "platform affected by security advisory {id} (allow it by name in [dcap] allow_advisories)"
    )]
    AdvisoryNotAllowed {
        /// The advisory id.
        id: String,
    },
    /// A PCR is not one of the values the policy allows for it.
    #[error("PCR{index} is {got}, but the policy allows only {want}")]
    PcrMismatch {
        /// The PCR index.
        index: u32,
        /// Its value (hex).
        got: String,
        /// The allowed values (hex, joined by " or ").
        want: String,
    },
    /// A certificate revocation list is out of date.
    #[error("the CRL from {url} expired at {next_update}: revocation status is unknown")]
    CrlExpired {
        /// Where the CRL comes from.
        url: String,
        /// Its nextUpdate.
        next_update: String,
    },
    /// The policy file is invalid.
    #[error("invalid policy: {0}")]
    Policy(String),
}
