//! `none` evidence: accepted only with the policy's explicit, visible consent.

use super::{Policy, VerifiedClaims, VerifyError};
use crate::{SoftwareReport, TeeKind};

pub(super) fn verify(bytes: &[u8], policy: &Policy) -> Result<VerifiedClaims, VerifyError> {
    let report = SoftwareReport::from_cbor(bytes).map_err(|e| VerifyError::Malformed {
        what: "software report",
        why: e.to_string(),
    })?;
    if !policy.insecure_allow_software {
        return Err(VerifyError::SoftwareNotAllowed);
    }
    Ok(VerifiedClaims {
        kind: TeeKind::None,
        measurement: report.measurement,
        report_data: report.report_data,
        tcb: Vec::new(),
        debug: false,
        platform_id: Vec::new(),
        signers: Vec::new(),
        details: vec![(
            "protection".into(),
            "none: the host can read and change this Keep".into(),
        )],
        pcrs: Vec::new(),
        insecure_software: true,
    })
}
