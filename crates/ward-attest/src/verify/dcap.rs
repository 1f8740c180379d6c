//! Intel TDX and SGX quotes (DCAP), verified by `dcap-qvl` against supplied
//! collateral at an explicit time, then judged by the policy's TCB-status and
//! advisory allow-lists.

use std::time::{SystemTime, UNIX_EPOCH};

use dcap_qvl::quote::Report;
use dcap_qvl::QuoteCollateralV3;

use super::{Policy, VerifiedClaims, VerifyError};
use crate::{Collateral, TeeKind};

/// Largest quote accepted.
const MAX_QUOTE_LEN: usize = 64 << 10;
/// TD attributes bits 7:0 (TUD, "TD under debug": debug and profiling): any set bit
/// means the TD is not protected from the host.
const TD_ATTR_TUD: u8 = 0xff;
/// SGX attributes flag bit 1: the enclave is debuggable.
const SGX_ATTR_DEBUG: u8 = 1 << 1;

fn error_chain(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// Checks the quote's own length fields against its size: dcap-qvl tolerates a
/// truncated tail after the signed part, and evidence should not.
fn check_quote_length(q: &[u8]) -> Result<(), VerifyError> {
    let bad = |why: String| VerifyError::Malformed { what: "quote", why };
    let u16_at = |o: usize| {
        q.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |o: usize| {
        q.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let version = u16_at(0)
        .ok_or_else(|| bad(format!("{} bytes is shorter than a quote header", q.len())))?;
    let tee_type = u32_at(4).ok_or_else(|| bad("truncated header".into()))?;
    let body_end = match version {
        3 | 4 => 48 + if tee_type == 0x81 { 584 } else { 384 },
        5 => {
            let size = u32_at(50).ok_or_else(|| bad("truncated v5 body header".into()))?;
            54 + size
        }
        v => {
            return Err(bad(format!(
                "quote version {v} is not supported (3, 4 or 5)"
            )))
        }
    };
    let sig_len =
        u32_at(body_end).ok_or_else(|| bad("truncated before the signature data".into()))?;
    let want = body_end + 4 + sig_len;
    if want > q.len() {
        return Err(bad(format!(
            "truncated: the quote's length fields say {want} bytes, but it has {}",
            q.len()
        )));
    }
    // Quotes read from fixed-size buffers carry zero padding; anything else is not
    // part of the quote.
    if q[want..].iter().any(|&b| b != 0) {
        return Err(bad(format!(
            "{} bytes after the end of the quote are not zero padding",
            q.len() - want
        )));
    }
    Ok(())
}

/// Maps a dcap-qvl failure (an error chain, as text) to a precise reason.
fn classify(msg: &str) -> VerifyError {
    let has = |needle: &str| msg.contains(needle);
    if has("expired")
        || has("Expired")
        || has("in the future")
        || has("not yet valid")
        || has("NotValidYet")
    {
        VerifyError::CollateralExpired(msg.to_string())
    } else if has("ISV enclave report signature is invalid") {
        VerifyError::SignatureInvalid {
            signer: "quoting enclave's attestation key",
            what: "quote",
        }
    } else if has("Signature is invalid for qe_report") || has("QE report hash mismatch") {
        VerifyError::SignatureInvalid {
            signer: "PCK certificate",
            what: "quoting enclave report",
        }
    } else if has("Signature is invalid for tcb_info") {
        VerifyError::CollateralSignatureInvalid { what: "TCB info" }
    } else if has("Signature is invalid for qe_identity") {
        VerifyError::CollateralSignatureInvalid {
            what: "QE identity",
        }
    } else if has("root CA CRL") || has("PCK CRL") {
        VerifyError::ChainInvalid {
            issuer: "Intel SGX root CA".into(),
            subject: "the certificate revocation lists".into(),
            why: msg.to_string(),
        }
    } else if has("certificate chain") || has("Failed to decode certificate") {
        VerifyError::ChainInvalid {
            issuer: "Intel SGX root CA".into(),
            subject: "the PCK or TCB signing certificate".into(),
            why: msg.to_string(),
        }
    } else if has("No matching TCB level") {
        VerifyError::TcbLevelNotFound(msg.to_string())
    } else if has("Revoked") {
        VerifyError::TcbStatusNotAllowed {
            status: "Revoked".into(),
        }
    } else {
        VerifyError::QuoteInvalid(msg.to_string())
    }
}

/// The policy's judgement of a DCAP TCB status and its advisories: only `UpToDate`
/// passes by default; other statuses and every advisory must be allowed by name.
/// `Revoked` is never accepted.
pub fn check_tcb_status(
    status: &str,
    advisories: &[String],
    policy: &Policy,
) -> Result<(), VerifyError> {
    if status == "Revoked"
        || (status != "UpToDate" && !policy.dcap.allow_statuses.iter().any(|s| s == status))
    {
        return Err(VerifyError::TcbStatusNotAllowed {
            status: status.to_string(),
        });
    }
    if let Some(id) = advisories
        .iter()
        .find(|id| !policy.dcap.allow_advisories.contains(id))
    {
        return Err(VerifyError::AdvisoryNotAllowed { id: id.clone() });
    }
    Ok(())
}

/// Parses a quote without verifying it (length check, then dcap-qvl's parser).
pub fn parse_quote(quote: &[u8]) -> Result<dcap_qvl::quote::Quote, VerifyError> {
    check_quote_length(quote)?;
    dcap_qvl::quote::Quote::parse(quote).map_err(|e| VerifyError::Malformed {
        what: "quote",
        why: error_chain(&e),
    })
}

/// Verifies a TDX or SGX quote against its collateral, as of `now`, under Intel's
/// SGX root CA (built into dcap-qvl).
pub fn verify(
    kind: TeeKind,
    quote: &[u8],
    collateral: &Collateral,
    policy: &Policy,
    now: SystemTime,
) -> Result<VerifiedClaims, VerifyError> {
    verify_inner(kind, quote, collateral, policy, now, None)
}

/// [`verify`] under another root CA (DER), for tests that build their own
/// Intel-style PKI (root → PCK CA → PCK certificate, root → TCB signer).
pub fn verify_with_root(
    kind: TeeKind,
    quote: &[u8],
    collateral: &Collateral,
    policy: &Policy,
    now: SystemTime,
    root_ca_der: &[u8],
) -> Result<VerifiedClaims, VerifyError> {
    verify_inner(kind, quote, collateral, policy, now, Some(root_ca_der))
}

fn verify_inner(
    kind: TeeKind,
    quote: &[u8],
    collateral: &Collateral,
    policy: &Policy,
    now: SystemTime,
    root_ca_der: Option<&[u8]>,
) -> Result<VerifiedClaims, VerifyError> {
    if quote.len() > MAX_QUOTE_LEN {
        return Err(VerifyError::Malformed {
            what: "quote",
            why: format!("{} bytes; the limit is {MAX_QUOTE_LEN}", quote.len()),
        });
    }
    check_quote_length(quote)?;
    if collateral.quote_collateral.is_empty() {
        return Err(VerifyError::MissingCollateral(
            "the DCAP quote collateral (--collateral)",
        ));
    }
    let coll: QuoteCollateralV3 =
        serde_json::from_slice(&collateral.quote_collateral).map_err(|e| {
            VerifyError::Malformed {
                what: "DCAP collateral",
                why: e.to_string(),
            }
        })?;
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Debug is the policy's call (`allow_debug`), reported as `DebugNotAllowed` by
    // the common check; dcap-qvl checks it last, after every signature, so letting
    // it through here skips nothing else.
    let verifier = match root_ca_der {
        None => dcap_qvl::verify::QuoteVerifier::new_prod(),
        Some(root) => dcap_qvl::verify::QuoteVerifier::new(root.to_vec()),
    };
    let report = verifier
        .allow_debug(true)
        .verify(quote, &coll, now_secs)
        .map_err(|e| classify(&error_chain(&e)))?;

    let is_sgx = report.report.is_sgx();
    match (kind, is_sgx) {
        (TeeKind::Sgx, false) => {
            return Err(VerifyError::Malformed {
                what: "quote",
                why: "this is a TDX quote, not SGX".into(),
            })
        }
        (TeeKind::Tdx, true) => {
            return Err(VerifyError::Malformed {
                what: "quote",
                why: "this is an SGX quote, not TDX".into(),
            })
        }
        _ => {}
    }
    check_tcb_status(&report.status, &report.advisory_ids, policy)?;
    let mut claims = match &report.report {
        Report::SgxEnclave(r) => VerifiedClaims {
            kind: TeeKind::Sgx,
            measurement: r.mr_enclave.to_vec(),
            report_data: r.report_data.to_vec(),
            tcb: vec![
                ("isv_svn".into(), r.isv_svn as u64),
                ("isv_prod_id".into(), r.isv_prod_id as u64),
            ],
            debug: r.attributes[0] & SGX_ATTR_DEBUG != 0,
            platform_id: report.ppid.clone(),
            signers: vec![("mr_signer".into(), r.mr_signer.to_vec())],
            details: vec![("cpu_svn".into(), hex::encode(r.cpu_svn))],
            pcrs: Vec::new(),
            insecure_software: false,
        },
        other => {
            let td = match other {
                Report::TD10(t) => t,
                Report::TD15(t) => &t.base,
                Report::TD15Ex(t) => &t.base.base,
                Report::SgxEnclave(_) => {
                    return Err(VerifyError::Malformed {
                        what: "quote",
                        why: "SGX report in a TDX quote".into(),
                    })
                }
            };
            VerifiedClaims {
                kind: TeeKind::Tdx,
                measurement: td.mr_td.to_vec(),
                report_data: td.report_data.to_vec(),
                tcb: td
                    .tee_tcb_svn
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("tee_tcb_svn[{i}]"), *v as u64))
                    .collect(),
                // Any TUD bit (debug, profiling) means the host can look inside.
                debug: td.td_attributes[0] & TD_ATTR_TUD != 0,
                platform_id: report.ppid.clone(),
                signers: vec![
                    ("mr_seam".into(), td.mr_seam.to_vec()),
                    ("mr_signer_seam".into(), td.mr_signer_seam.to_vec()),
                ],
                details: vec![
                    ("rtmr0".into(), hex::encode(td.rt_mr0)),
                    ("rtmr1".into(), hex::encode(td.rt_mr1)),
                    ("rtmr2".into(), hex::encode(td.rt_mr2)),
                    ("rtmr3".into(), hex::encode(td.rt_mr3)),
                    ("mr_config_id".into(), hex::encode(td.mr_config_id)),
                    ("mr_owner".into(), hex::encode(td.mr_owner)),
                ],
                pcrs: Vec::new(),
                insecure_software: false,
            }
        }
    };
    claims
        .details
        .push(("tcb_status".into(), report.status.clone()));
    if !report.advisory_ids.is_empty() {
        claims
            .details
            .push(("advisories".into(), report.advisory_ids.join(",")));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(toml: &str) -> Policy {
        Policy::from_toml(toml).unwrap()
    }

    #[test]
    fn only_up_to_date_by_default() {
        let p = Policy::default();
        check_tcb_status("UpToDate", &[], &p).unwrap();
        for s in [
            "OutOfDate",
            "SWHardeningNeeded",
            "ConfigurationNeeded",
            "ConfigurationAndSWHardeningNeeded",
            "OutOfDateConfigurationNeeded",
        ] {
            assert_eq!(
                check_tcb_status(s, &[], &p),
                Err(VerifyError::TcbStatusNotAllowed { status: s.into() })
            );
        }
    }

    #[test]
    fn statuses_and_advisories_allowed_by_name_only() {
        let p = policy("[dcap]\nallow_statuses = [\"SWHardeningNeeded\"]\nallow_advisories = [\"INTEL-SA-00615\"]");
        check_tcb_status("SWHardeningNeeded", &["INTEL-SA-00615".into()], &p).unwrap();
        assert_eq!(
            check_tcb_status("OutOfDate", &[], &p),
            Err(VerifyError::TcbStatusNotAllowed {
                status: "OutOfDate".into()
            })
        );
        assert_eq!(
            check_tcb_status(
                "SWHardeningNeeded",
                &["INTEL-SA-00615".into(), "INTEL-SA-00289".into()],
                &p
            ),
            Err(VerifyError::AdvisoryNotAllowed {
                id: "INTEL-SA-00289".into()
            })
        );
        // Advisories matter even on an UpToDate platform.
        assert!(check_tcb_status("UpToDate", &["INTEL-SA-00001".into()], &p).is_err());
    }

    #[test]
    fn revoked_is_never_accepted() {
        let p = policy("[dcap]\nallow_statuses = [\"Revoked\"]");
        assert!(check_tcb_status("Revoked", &[], &p).is_err());
    }

    #[test]
    fn dcap_failures_are_classified() {
        assert!(matches!(
            classify("TCBInfo expired"),
            VerifyError::CollateralExpired(_)
        ));
        assert!(matches!(
            classify("ISV enclave report signature is invalid"),
            VerifyError::SignatureInvalid { .. }
        ));
        assert!(matches!(
            classify("Signature is invalid for tcb_info in quote_collateral"),
            VerifyError::CollateralSignatureInvalid { what: "TCB info" }
        ));
        assert!(matches!(
            classify("Failed to verify certificate chain: UnknownIssuer"),
            VerifyError::ChainInvalid { .. }
        ));
        assert!(matches!(
            classify("No matching TCB level found"),
            VerifyError::TcbLevelNotFound(_)
        ));
        assert!(matches!(
            classify("Fmspc mismatch"),
            VerifyError::QuoteInvalid(_)
        ));
    }

    #[test]
    fn quote_length_fields_are_enforced() {
        // v4 TDX header claiming a signature longer than the data.
        let mut q = vec![0u8; 48 + 584 + 4];
        q[0] = 4;
        q[4] = 0x81;
        q[48 + 584..].copy_from_slice(&100u32.to_le_bytes());
        assert!(matches!(
            check_quote_length(&q),
            Err(VerifyError::Malformed { .. })
        ));
        // Non-zero bytes after the quote.
        let mut q = vec![0u8; 48 + 584 + 4 + 2];
        q[0] = 4;
        q[4] = 0x81;
        *q.last_mut().unwrap() = 1;
        assert!(matches!(
            check_quote_length(&q),
            Err(VerifyError::Malformed { .. })
        ));
        q.pop();
        q.push(0);
        check_quote_length(&q).unwrap();
        // Unknown version.
        let mut q = vec![0u8; 700];
        q[0] = 9;
        assert!(check_quote_length(&q).is_err());
    }
}
