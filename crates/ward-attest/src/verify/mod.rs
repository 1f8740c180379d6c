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
pub use policy::{
    AllowedValues, DcapPolicy, Hex, NitroPolicy, Policy, SnpPolicy, SnpTcb, POLICY_TEMPLATE,
};

use std::time::SystemTime;

use crate::{Evidence, TeeKind};

/// Certificate chains whose signatures have already been checked, so that a
/// long-lived verifier (a Steward, a client deploying many times) does the RSA and
/// ECDSA chain work once per chain. Validity dates are still checked every time.
#[derive(Debug, Default)]
pub struct ChainCache(std::sync::Mutex<std::collections::HashSet<[u8; 32]>>);

impl ChainCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn key(parts: &[&[u8]]) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        h.finalize().into()
    }

    pub(crate) fn contains(&self, key: &[u8; 32]) -> bool {
        self.0.lock().map(|s| s.contains(key)).unwrap_or(false)
    }

    pub(crate) fn insert(&self, key: [u8; 32]) {
        if let Ok(mut s) = self.0.lock() {
            // Bounded: a verifier fed endless distinct chains just stops caching.
            if s.len() < 4096 {
                s.insert(key);
            }
        }
    }
}

/// Verifies `evidence` against the built-in roots and `policy`, as of `now`.
pub fn verify(
    evidence: &Evidence,
    policy: &Policy,
    now: SystemTime,
) -> Result<VerifiedClaims, VerifyError> {
    verify_with_cache(evidence, policy, now, &ChainCache::new())
}

/// Like [`verify`], reusing chain signature checks recorded in `cache`.
pub fn verify_with_cache(
    evidence: &Evidence,
    policy: &Policy,
    now: SystemTime,
    cache: &ChainCache,
) -> Result<VerifiedClaims, VerifyError> {
    let claims = match evidence.kind {
        TeeKind::Snp => {
            snp::verify_cached(&evidence.evidence, &evidence.collateral, policy, now, cache)?
        }
        TeeKind::Tdx | TeeKind::Sgx => dcap::verify(
            evidence.kind,
            &evidence.evidence,
            &evidence.collateral,
            policy,
            now,
        )?,
        TeeKind::Nitro => nitro::verify_cached(&evidence.evidence, policy, now, cache)?,
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
