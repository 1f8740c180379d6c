//! Certificate parsing and validity dates (the `sev` crate does not check dates).

use std::time::SystemTime;

use x509_cert::der::{asn1::ObjectIdentifier, Decode};
use x509_cert::Certificate;

use super::VerifyError;

/// Parses a DER or PEM certificate.
pub(super) fn parse(bytes: &[u8], which: &str) -> Result<Certificate, VerifyError> {
    use x509_cert::der::DecodePem;
    let r = if bytes.starts_with(b"-----BEGIN") {
        Certificate::from_pem(bytes)
    } else {
        Certificate::from_der(bytes)
    };
    r.map_err(|e| VerifyError::Malformed {
        what: "certificate",
        why: format!("{which}: {e}"),
    })
}

fn rfc3339(t: SystemTime) -> String {
    x509_cert::der::DateTime::from_system_time(t)
        .map(|d| d.to_string())
        .unwrap_or_else(|_| format!("{t:?}"))
}

/// Checks `now` is inside the certificate's validity period.
pub(super) fn check_dates(
    cert: &Certificate,
    which: &str,
    now: SystemTime,
) -> Result<(), VerifyError> {
    let v = &cert.tbs_certificate.validity;
    let not_before = v.not_before.to_system_time();
    let not_after = v.not_after.to_system_time();
    if now < not_before {
        return Err(VerifyError::CertificateNotYetValid {
            which: which.to_string(),
            not_before: rfc3339(not_before),
            now: rfc3339(now),
        });
    }
    if now > not_after {
        return Err(VerifyError::CertificateExpired {
            which: which.to_string(),
            not_after: rfc3339(not_after),
            now: rfc3339(now),
        });
    }
    Ok(())
}

/// The raw value of the extension `oid`, if present.
pub(super) fn extension<'a>(cert: &'a Certificate, oid: &ObjectIdentifier) -> Option<&'a [u8]> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| &e.extn_id == oid)
        .map(|e| e.extn_value.as_bytes())
}
