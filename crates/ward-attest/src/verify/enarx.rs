//! Enarx-format CSRs: a PKCS#10 request whose extension request carries SNP evidence
//! under OID 1.3.6.1.4.1.58270.1.3 as DER
//! `SEQUENCE { SEQUENCE { vcek Certificate, crls SEQUENCE { SEQUENCE { SEQUENCE { url UTF8String, crl CertificateList }... } } }, report OCTET STRING }`.
//! (Enarx uses .1.1 for SGX and .1.2 for KVM evidence; only SNP is read here.)

use std::time::SystemTime;

use sha2::{Digest, Sha384};
use x509_cert::crl::CertificateList;
use x509_cert::der::{asn1::ObjectIdentifier, Decode, Encode};
use x509_cert::request::CertReq;

use super::VerifyError;
use crate::{Collateral, Evidence, TeeKind};

/// Enarx's OID for SNP evidence in a CSR.
pub const ENARX_SNP_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.58270.1.3");
const EXTENSION_REQUEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.14");

fn malformed(why: impl Into<String>) -> VerifyError {
    VerifyError::Malformed {
        what: "Enarx CSR",
        why: why.into(),
    }
}

/// What an Enarx CSR carries.
pub struct EnarxCsr {
    /// The SNP evidence (report + VCEK).
    pub evidence: Evidence,
    /// The CRLs bundled with it: (distribution URL, DER).
    pub crls: Vec<(String, Vec<u8>)>,
    /// The CSR's SubjectPublicKeyInfo (DER).
    pub spki_der: Vec<u8>,
}

impl EnarxCsr {
    /// SHA-384 of the CSR's SubjectPublicKeyInfo (DER), which Enarx puts in the
    /// first 48 bytes of the report data.
    pub fn key_digest(&self) -> [u8; 48] {
        Sha384::digest(&self.spki_der).into()
    }
}

/// One DER TLV: (tag, contents, rest). Definite lengths only, bounded by the input.
fn tlv(b: &[u8]) -> Result<(u8, &[u8], &[u8]), VerifyError> {
    let bad = || malformed("truncated DER");
    let tag = *b.first().ok_or_else(bad)?;
    let first = *b.get(1).ok_or_else(bad)?;
    let (len, hdr) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return Err(malformed("unsupported DER length"));
        }
        let bytes = b.get(2..2 + n).ok_or_else(bad)?;
        (
            bytes.iter().fold(0usize, |a, x| (a << 8) | *x as usize),
            2 + n,
        )
    };
    let end = hdr.checked_add(len).ok_or_else(bad)?;
    let contents = b.get(hdr..end).ok_or_else(bad)?;
    Ok((tag, contents, &b[end..]))
}

/// A DER element: (tag, contents, the whole encoding).
type Element<'a> = (u8, &'a [u8], &'a [u8]);

/// The children of a constructed value's contents.
fn children(mut b: &[u8]) -> Result<Vec<Element<'_>>, VerifyError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let whole = b;
        let (tag, c, rest) = tlv(b)?;
        out.push((tag, c, &whole[..whole.len() - rest.len()]));
        b = rest;
        if out.len() > 64 {
            return Err(malformed("too many elements"));
        }
    }
    Ok(out)
}

/// Collects `SEQUENCE { UTF8String url, CRL }` pairs anywhere below `b`.
fn collect_crls(
    b: &[u8],
    depth: usize,
    out: &mut Vec<(String, Vec<u8>)>,
) -> Result<(), VerifyError> {
    if depth > 6 {
        return Ok(());
    }
    let kids = children(b)?;
    if kids.len() == 2 && kids[0].0 == 0x0c && kids[1].0 == 0x30 {
        let url = String::from_utf8_lossy(kids[0].1).into_owned();
        out.push((url, kids[1].2.to_vec()));
        return Ok(());
    }
    for (tag, contents, _) in kids {
        if tag == 0x30 {
            collect_crls(contents, depth + 1, out)?;
        }
    }
    Ok(())
}

/// Reads the SNP evidence out of an Enarx CSR (DER).
pub fn parse_csr(der: &[u8]) -> Result<EnarxCsr, VerifyError> {
    if der.len() > 64 << 10 {
        return Err(malformed("larger than 64 KiB"));
    }
    let req = CertReq::from_der(der).map_err(|e| malformed(e.to_string()))?;
    let spki = &req.info.public_key;
    let spki_der = spki.to_der().map_err(|e| malformed(e.to_string()))?;
    let mut ext_value = None;
    for attr in req.info.attributes.iter() {
        if attr.oid != EXTENSION_REQUEST {
            continue;
        }
        for v in attr.values.iter() {
            let exts: Vec<x509_cert::ext::Extension> =
                v.decode_as().map_err(|e| malformed(e.to_string()))?;
            if let Some(e) = exts.into_iter().find(|e| e.extn_id == ENARX_SNP_OID) {
                ext_value = Some(e.extn_value.as_bytes().to_vec());
            }
        }
    }
    let value = ext_value
        .ok_or_else(|| malformed(format!("no {ENARX_SNP_OID} (SNP evidence) extension")))?;
    let (tag, outer, _) = tlv(&value)?;
    let top = children(outer)?;
    if tag != 0x30 || top.len() != 2 || top[0].0 != 0x30 || top[1].0 != 0x04 {
        return Err(malformed(
            "evidence is not SEQUENCE { SEQUENCE, OCTET STRING }",
        ));
    }
    let report = top[1].1.to_vec();
    let certs = children(top[0].1)?;
    let vcek = certs
        .first()
        .filter(|c| c.0 == 0x30)
        .ok_or_else(|| malformed("no VCEK"))?
        .2
        .to_vec();
    let mut crls = Vec::new();
    for c in certs.iter().skip(1) {
        if c.0 == 0x30 {
            collect_crls(c.1, 0, &mut crls)?;
        }
    }
    Ok(EnarxCsr {
        evidence: Evidence {
            kind: TeeKind::Snp,
            evidence: report,
            collateral: Collateral {
                vek: vcek,
                ..Collateral::default()
            },
        },
        crls,
        spki_der,
    })
}

/// Checks each bundled CRL is current at `now` (its nextUpdate has not passed).
/// Signatures on the CRLs are not checked here.
pub fn check_crls_current(crls: &[(String, Vec<u8>)], now: SystemTime) -> Result<(), VerifyError> {
    for (url, der) in crls {
        let crl = CertificateList::from_der(der).map_err(|e| VerifyError::Malformed {
            what: "CRL",
            why: format!("{url}: {e}"),
        })?;
        if let Some(next) = crl.tbs_cert_list.next_update {
            if now > next.to_system_time() {
                return Err(VerifyError::CrlExpired {
                    url: url.clone(),
                    next_update: next.to_date_time().to_string(),
                });
            }
        }
    }
    Ok(())
}
