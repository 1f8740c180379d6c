//! AWS Nitro Enclaves attestation documents: a COSE_Sign1 (ES384) over a CBOR
//! payload, signed by a leaf certificate that chains through the document's
//! `cabundle` to the AWS Nitro root G1, which is built in.

use std::time::SystemTime;

use ciborium::Value;
use coset::{CborSerializable, CoseSign1, TaggedCborSerializable};
use p384::ecdsa::{signature::Verifier, Signature, VerifyingKey};
use x509_cert::der::{Decode, Encode};
use x509_cert::Certificate;

use super::{x509, ChainCache, Policy, VerifiedClaims, VerifyError};
use crate::TeeKind;

/// The AWS Nitro Enclaves root certificate (G1), as AWS publishes it. Its SHA-256
/// fingerprint is 641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b.
pub const AWS_NITRO_ROOT_G1: &[u8] = include_bytes!("roots/aws-nitro-root-g1.pem");

/// Largest document accepted.
const MAX_DOC_LEN: usize = 64 << 10;
/// Most certificates in a cabundle.
const MAX_BUNDLE: usize = 8;

fn malformed(why: impl Into<String>) -> VerifyError {
    VerifyError::Malformed {
        what: "Nitro attestation document",
        why: why.into(),
    }
}

/// The fields of the document payload Ward uses.
pub struct NitroDocument {
    /// Module id.
    pub module_id: String,
    /// PCRs by index.
    pub pcrs: Vec<(u32, Vec<u8>)>,
    /// Leaf certificate (DER).
    pub certificate: Vec<u8>,
    /// CA bundle, root first (DER).
    pub cabundle: Vec<Vec<u8>>,
    /// Optional fields.
    pub public_key: Option<Vec<u8>>,
    /// Optional user data.
    pub user_data: Option<Vec<u8>>,
    /// Optional nonce.
    pub nonce: Option<Vec<u8>>,
    /// Milliseconds since the epoch.
    pub timestamp: u64,
}

/// Parses the COSE envelope (tagged or not) and its payload, without verifying.
pub fn parse(bytes: &[u8]) -> Result<(CoseSign1, NitroDocument), VerifyError> {
    if bytes.len() > MAX_DOC_LEN {
        return Err(malformed(format!(
            "{} bytes; the limit is {MAX_DOC_LEN}",
            bytes.len()
        )));
    }
    let sign1 = CoseSign1::from_slice(bytes)
        .or_else(|_| CoseSign1::from_tagged_slice(bytes))
        .map_err(|e| malformed(format!("not a COSE_Sign1: {e}")))?;
    let payload = sign1
        .payload
        .as_deref()
        .ok_or_else(|| malformed("no payload"))?;
    let value: Value =
        ciborium::from_reader(payload).map_err(|e| malformed(format!("payload: {e}")))?;
    let map = value
        .as_map()
        .ok_or_else(|| malformed("payload is not a map"))?;
    let get = |k: &str| {
        map.iter()
            .find(|(key, _)| key.as_text() == Some(k))
            .map(|(_, v)| v)
    };
    let bytes_of = |k: &str| -> Result<Option<Vec<u8>>, VerifyError> {
        match get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bytes(b)) => Ok(Some(b.clone())),
            Some(_) => Err(malformed(format!("{k} is not a byte string"))),
        }
    };
    let module_id = get("module_id")
        .and_then(|v| v.as_text())
        .ok_or_else(|| malformed("no module_id"))?
        .to_string();
    if get("digest").and_then(|v| v.as_text()) != Some("SHA384") {
        return Err(malformed("digest is not SHA384"));
    }
    let timestamp = get("timestamp")
        .and_then(|v| v.as_integer())
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| malformed("no timestamp"))?;
    let mut pcrs = Vec::new();
    for (k, v) in get("pcrs")
        .and_then(|v| v.as_map())
        .ok_or_else(|| malformed("no pcrs"))?
    {
        let index = k
            .as_integer()
            .and_then(|i| u32::try_from(i).ok())
            .filter(|i| *i < 32)
            .ok_or_else(|| malformed("bad PCR index"))?;
        let value = v
            .as_bytes()
            .filter(|b| matches!(b.len(), 32 | 48 | 64))
            .ok_or_else(|| malformed("bad PCR value"))?;
        pcrs.push((index, value.clone()));
    }
    pcrs.sort();
    let certificate = bytes_of("certificate")?.ok_or_else(|| malformed("no certificate"))?;
    let cabundle = get("cabundle")
        .and_then(|v| v.as_array())
        .ok_or_else(|| malformed("no cabundle"))?
        .iter()
        .map(|c| {
            c.as_bytes()
                .cloned()
                .ok_or_else(|| malformed("cabundle entry is not bytes"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if cabundle.is_empty() || cabundle.len() > MAX_BUNDLE {
        return Err(malformed(format!(
            "cabundle has {} certificates (1..={MAX_BUNDLE})",
            cabundle.len()
        )));
    }
    Ok((
        sign1,
        NitroDocument {
            module_id,
            pcrs,
            certificate,
            cabundle,
            public_key: bytes_of("public_key")?,
            user_data: bytes_of("user_data")?,
            nonce: bytes_of("nonce")?,
            timestamp,
        },
    ))
}

fn key_of(cert: &Certificate, which: &str) -> Result<VerifyingKey, VerifyError> {
    VerifyingKey::from_sec1_bytes(
        cert.tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes(),
    )
    .map_err(|e| VerifyError::Malformed {
        what: "certificate",
        why: format!("{which}: not a P-384 key: {e}"),
    })
}

fn check_signed_by(
    subject: &Certificate,
    issuer: &Certificate,
    subject_name: &str,
    issuer_name: &str,
) -> Result<(), VerifyError> {
    let broken = |why: String| VerifyError::ChainInvalid {
        issuer: issuer_name.into(),
        subject: subject_name.into(),
        why,
    };
    let tbs = subject
        .tbs_certificate
        .to_der()
        .map_err(|e| broken(e.to_string()))?;
    let sig = Signature::from_der(subject.signature.raw_bytes())
        .map_err(|e| broken(format!("bad signature encoding: {e}")))?;
    key_of(issuer, issuer_name)?
        .verify(&tbs, &sig)
        .map_err(|_| broken("signature mismatch".into()))
}

/// Verifies a Nitro attestation document as of `now`.
pub fn verify(
    bytes: &[u8],
    policy: &Policy,
    now: SystemTime,
) -> Result<VerifiedClaims, VerifyError> {
    verify_cached(bytes, policy, now, &ChainCache::new())
}

/// [`verify`], reusing chain checks recorded in `cache`.
pub fn verify_cached(
    bytes: &[u8],
    policy: &Policy,
    now: SystemTime,
    cache: &ChainCache,
) -> Result<VerifiedClaims, VerifyError> {
    verify_with_root(bytes, AWS_NITRO_ROOT_G1, policy, now, cache)
}

/// [`verify`] against another root certificate (PEM or DER), for tests that make
/// their own CA.
pub fn verify_with_root(
    bytes: &[u8],
    root_cert: &[u8],
    policy: &Policy,
    now: SystemTime,
    cache: &ChainCache,
) -> Result<VerifiedClaims, VerifyError> {
    let (sign1, doc) = parse(bytes)?;
    if sign1.protected.header.alg
        != Some(coset::RegisteredLabelWithPrivate::Assigned(
            coset::iana::Algorithm::ES384,
        ))
    {
        return Err(malformed("the COSE algorithm is not ES384"));
    }
    // The chain: built-in root == cabundle[0] → ... → leaf.
    let root = x509::parse(root_cert, "AWS Nitro root G1")?;
    let first = Certificate::from_der(&doc.cabundle[0]).map_err(|e| VerifyError::Malformed {
        what: "certificate",
        why: format!("cabundle[0]: {e}"),
    })?;
    if first != root {
        return Err(VerifyError::UnknownRoot {
            subject: "cabundle[0]".into(),
            tried: "AWS Nitro root G1".into(),
        });
    }
    x509::check_dates(&root, "AWS Nitro root G1", now)?;
    let mut parts: Vec<&[u8]> = vec![root_cert];
    parts.extend(doc.cabundle.iter().map(|c| c.as_slice()));
    parts.push(&doc.certificate);
    let key = ChainCache::key(&parts);
    let cached = cache.contains(&key);
    let mut issuer = root;
    let mut issuer_name = "AWS Nitro root G1".to_string();
    let chain = doc.cabundle[1..]
        .iter()
        .map(|c| (c.as_slice(), false))
        .chain(std::iter::once((doc.certificate.as_slice(), true)));
    for (i, (der, is_leaf)) in chain.enumerate() {
        let name = if is_leaf {
            "leaf certificate".to_string()
        } else {
            format!("cabundle[{}]", i + 1)
        };
        let cert = Certificate::from_der(der).map_err(|e| VerifyError::Malformed {
            what: "certificate",
            why: format!("{name}: {e}"),
        })?;
        if !cached {
            check_signed_by(&cert, &issuer, &name, &issuer_name)?;
        }
        x509::check_dates(&cert, &name, now)?;
        issuer = cert;
        issuer_name = name;
    }
    cache.insert(key);
    // The document signature, by the leaf.
    let leaf_key = key_of(&issuer, "leaf certificate")?;
    sign1
        .verify_signature(b"", |sig, data| {
            let sig = Signature::from_slice(sig).map_err(|_| ())?;
            leaf_key.verify(data, &sig).map_err(|_| ())
        })
        .map_err(|()| VerifyError::SignatureInvalid {
            signer: "Nitro leaf certificate",
            what: "attestation document",
        })?;

    for (index, allowed) in &policy.nitro.pcrs {
        let index: u32 = index.parse().map_err(|_| {
            VerifyError::Policy(format!("nitro.pcrs key {index:?} is not a number"))
        })?;
        let got = doc
            .pcrs
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        if !allowed.allows(&got) {
            return Err(VerifyError::PcrMismatch {
                index,
                got: hex::encode(&got),
                want: allowed
                    .0
                    .iter()
                    .map(|h| hex::encode(&h.0))
                    .collect::<Vec<_>>()
                    .join(" or "),
            });
        }
    }
    let pcr0 = doc
        .pcrs
        .iter()
        .find(|(i, _)| *i == 0)
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    // Enclaves started in debug mode report all-zero PCRs.
    let debug = doc
        .pcrs
        .iter()
        .filter(|(i, _)| *i <= 2)
        .all(|(_, v)| v.iter().all(|b| *b == 0));
    let mut details = vec![
        ("module_id".to_string(), doc.module_id.clone()),
        ("timestamp_ms".into(), doc.timestamp.to_string()),
    ];
    if let Some(pk) = &doc.public_key {
        details.push(("public_key".into(), hex::encode(pk)));
    }
    if let Some(n) = &doc.nonce {
        details.push(("nonce".into(), hex::encode(n)));
    }
    Ok(VerifiedClaims {
        kind: TeeKind::Nitro,
        measurement: pcr0,
        report_data: doc.user_data.clone().unwrap_or_default(),
        tcb: Vec::new(),
        debug,
        platform_id: Vec::new(),
        signers: Vec::new(),
        pcrs: doc.pcrs,
        details,
        insecure_software: false,
    })
}
