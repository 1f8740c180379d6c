//! Verifying evidence against vendor roots and a policy, at an explicit time.
//!
//! Every rejection is a distinct [`VerifyError`] that says what was wrong in words a
//! person can act on. Nothing here reads the clock: callers pass `now`, so that tests
//! can pin time and evidence can be checked as of a given moment.

mod claims;
pub mod dcap;
pub mod enarx;
mod error;
pub mod nitro;
mod policy;
pub mod snp;
mod software;
mod x509;

pub use claims::VerifiedClaims;
pub use error::VerifyError;
pub use policy::{DcapPolicy, Hex, NitroPolicy, Policy, SnpPolicy, SnpTcb, POLICY_TEMPLATE};

use std::time::SystemTime;

use crate::{Evidence, TeeKind};

/// Verifies `evidence` against the built-in roots and `policy`, as of `now`.
pub fn verify(
    evidence: &Evidence,
    policy: &Policy,
    now: SystemTime,
) -> Result<VerifiedClaims, VerifyError> {
    let claims = match evidence.kind {
        TeeKind::Snp => snp::verify(&evidence.evidence, &evidence.collateral, policy, now)?,
        TeeKind::Tdx | TeeKind::Sgx => dcap::verify(
            evidence.kind,
            &evidence.evidence,
            &evidence.collateral,
            policy,
            now,
        )?,
        TeeKind::Nitro => nitro::verify(&evidence.evidence, policy, now)?,
        TeeKind::None => software::verify(&evidence.evidence, policy)?,
    };
    check_policy(&claims, policy)?;
    Ok(claims)
}

/// The policy checks common to every kind (debug, measurement allow-list, report
/// data), on claims already verified.
pub fn check_policy(claims: &VerifiedClaims, policy: &Policy) -> Result<(), VerifyError> {
    policy.check_common(claims)
}
