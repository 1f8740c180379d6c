//! The Steward's decision: [`Steward::attest`] takes a CSR (DER) and returns a
//! certificate or a [`Rejection`]. No network here; [`crate::server`] wraps it.
//!
//! The checks, in order (the first that fails decides the reason code):
//! 1. the body is at most [`crate::MAX_CSR_LEN`] bytes and is one DER PKCS#10 CSR;
//! 2. its signature algorithm is acceptable and its self-signature verifies;
//! 3. it carries exactly one kind of evidence (Ward or Enarx SNP), and SANs the
//!    Steward can certify (DNS names, IP addresses);
//! 4. Ward CSRs: the context's `time` is within the freshness window of the
//!    Steward's clock;
//! 5. the replay key was never accepted before (Ward: SHA-256 of the context's
//!    `random`; Enarx: SHA-256 of the CSR's public key, since Enarx CSRs carry no
//!    nonce: one certificate per key);
//! 6. the evidence verifies against the built-in roots and the policy, at the
//!    Steward's clock;
//! 7. the evidence binds the CSR's key: Ward, report data =
//!    SHA-512(SPKI ‖ context bytes); Enarx, report data starts with SHA-384(SPKI);
//! 8. Enarx CSRs: the bundled CRLs are current (a note, or a rejection with
//!    `require_current_crls`).
//!
//! Then a certificate valid for `validity` from now, with the claims, is signed, its
//! entry appended to the record and synced, and only then returned. The replay
//! check is repeated under the record's lock, so two copies of one CSR sent at once
//! get one certificate.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    SanType, SerialNumber,
};
use sha2::{Digest, Sha256, Sha384};
use ward_attest::verify::{self, ChainCache, Policy, VerifiedClaims};
use ward_attest::TeeKind;

use crate::ca::Ca;
use crate::claims::IssuedClaims;
use crate::error::{verify_error_code, Rejection, StewardError};
use crate::record::{IssuedEntry, Record};
use crate::request::{self, CsrForm, San};

/// Default validity of an issued certificate.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(3600);
/// Default freshness window of a Ward CSR's context time (either side of now).
pub const DEFAULT_FRESHNESS: Duration = Duration::from_secs(300);
/// Longest validity the Steward will issue.
pub const MAX_VALIDITY: Duration = Duration::from_secs(31 * 24 * 3600);

/// Where "now" comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The system clock.
    System,
    /// A fixed time: verify recorded evidence as of the moment it was valid
    /// (tests, replaying an incident). Certificates are dated from it too.
    Fixed(SystemTime),
}

impl Clock {
    /// The current time by this clock.
    pub fn now(&self) -> SystemTime {
        match self {
            Clock::System => SystemTime::now(),
            Clock::Fixed(t) => *t,
        }
    }
}

/// How the Steward issues.
#[derive(Debug, Clone)]
pub struct StewardConfig {
    /// Validity of issued certificates (at most [`MAX_VALIDITY`]).
    pub validity: Duration,
    /// How far a Ward CSR's context time may be from now, either way.
    pub freshness: Duration,
    /// Refuse Enarx CSRs whose bundled CRLs are out of date (default: a note).
    pub require_current_crls: bool,
    /// The clock.
    pub clock: Clock,
}

impl Default for StewardConfig {
    fn default() -> Self {
        Self {
            validity: DEFAULT_VALIDITY,
            freshness: DEFAULT_FRESHNESS,
            require_current_crls: false,
            clock: Clock::System,
        }
    }
}

/// A certificate the Steward issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate (DER).
    pub cert_der: Vec<u8>,
    /// The CA certificate it chains to (DER).
    pub ca_der: Vec<u8>,
    /// Serial number, hex.
    pub serial: String,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: u64,
    /// The claims in the certificate.
    pub claims: IssuedClaims,
    /// Things the requester should know (e.g. stale CRLs).
    pub notes: Vec<String>,
}

/// The attestation CA: a CA, a policy and the issued-certificate record.
pub struct Steward {
    ca: Ca,
    policy: Policy,
    config: StewardConfig,
    record: Mutex<Record>,
    cache: ChainCache,
}

impl std::fmt::Debug for Steward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Steward")
            .field("ca", &self.ca)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A random, positive, 16-byte certificate serial number.
pub(crate) fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    // Positive and without a leading zero byte, so the DER INTEGER is 16 bytes.
    b[0] = (b[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&b)
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn forbidden(code: &str, message: impl Into<String>) -> Rejection {
    Rejection::new(403, code, message)
}

fn internal(message: impl Into<String>) -> Rejection {
    Rejection::new(500, "internal", message)
}

impl Steward {
    /// Opens the Steward: loads or creates the CA in `ca_dir`, opens the record
    /// there. A policy that pins `report_data` makes no sense for a CA (each CSR
    /// has its own) and is refused.
    pub fn open(
        ca_dir: &Path,
        policy: Policy,
        config: StewardConfig,
    ) -> Result<Self, StewardError> {
        if policy.report_data.is_some() {
            return Err(StewardError::Policy(
                "report_data is set, but the Steward derives the report data from each CSR; remove it".into(),
            ));
        }
        if config.validity.is_zero() || config.validity > MAX_VALIDITY {
            return Err(StewardError::Policy(format!(
                "validity must be between 1 second and {} days",
                MAX_VALIDITY.as_secs() / 86400
            )));
        }
        let ca = Ca::load_or_create(ca_dir)?;
        let record = Record::open(ca_dir)?;
        Ok(Self {
            ca,
            policy,
            config,
            record: Mutex::new(record),
            cache: ChainCache::new(),
        })
    }

    /// The CA.
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// The configuration.
    pub fn config(&self) -> &StewardConfig {
        &self.config
    }

    /// How many certificates the record holds.
    pub fn issued_count(&self) -> usize {
        self.record.lock().map(|r| r.len()).unwrap_or(0)
    }

    fn verify(
        &self,
        evidence: &ward_attest::Evidence,
        now: SystemTime,
    ) -> Result<VerifiedClaims, Rejection> {
        verify::verify_with_cache(evidence, &self.policy, now, &self.cache)
            .map_err(|e| forbidden(verify_error_code(&e), e.to_string()))
    }

    fn replayed(&self, key: &str) -> Result<bool, Rejection> {
        self.record
            .lock()
            .map(|r| r.has_replay_key(key))
            .map_err(|_| internal("the record lock is poisoned"))
    }

    /// Checks a CSR (DER) and issues a certificate for its key, or says why not.
    pub fn attest(&self, csr_der: &[u8]) -> Result<Issued, Rejection> {
        let result = self.attest_inner(csr_der);
        match &result {
            Ok(i) => tracing::info!(
                serial = %i.serial,
                format = %i.claims.format,
                kind = %i.claims.kind,
                measurement = %hex::encode(&i.claims.measurement),
                "issued a certificate"
            ),
            Err(r) => tracing::info!(code = %r.code, "rejected a CSR: {}", r.message),
        }
        result
    }

    fn attest_inner(&self, csr_der: &[u8]) -> Result<Issued, Rejection> {
        let csr = request::parse(csr_der)?;
        let now = self.config.clock.now();
        let mut notes = Vec::new();
        let (format, claims, workload, replay_key) = match &csr.form {
            CsrForm::Ward {
                evidence,
                context_cbor,
                context,
            } => {
                let now_s = unix(now);
                let skew = now_s.abs_diff(context.time);
                if skew > self.config.freshness.as_secs() {
                    return Err(forbidden(
                        "context-stale",
                        format!(
                            "the CSR context is dated {} but the Steward's clock says {now_s} ({skew} s apart; at most {} s): make a fresh CSR",
                            context.time,
                            self.config.freshness.as_secs()
                        ),
                    ));
                }
                let replay_key = format!("nonce:{}", hex::encode(Sha256::digest(&context.random)));
                if self.replayed(&replay_key)? {
                    return Err(replay());
                }
                let claims = self.verify(evidence, now)?;
                let expected = request::binding(&csr.spki_der, context_cbor);
                if claims.report_data != expected {
                    return Err(forbidden(
                        "key-binding-mismatch",
                        format!(
                            "the evidence's report data {} is not SHA-512(CSR public key ‖ CSR context) = {}: the evidence was made for another key or context",
                            hex::encode(&claims.report_data),
                            hex::encode(expected)
                        ),
                    ));
                }
                ("ward", claims, context.workload.clone(), replay_key)
            }
            CsrForm::Enarx { evidence, crls } => {
                let replay_key =
                    format!("enarx-key:{}", hex::encode(Sha256::digest(&csr.spki_der)));
                if self.replayed(&replay_key)? {
                    return Err(replay());
                }
                if evidence.kind != TeeKind::Snp {
                    return Err(Rejection::new(
                        400,
                        "evidence-unsupported",
                        "Enarx CSRs carry SNP evidence only",
                    ));
                }
                let claims = self.verify(evidence, now)?;
                let digest = Sha384::digest(&csr.spki_der);
                if claims.report_data.get(..48) != Some(&digest[..]) {
                    return Err(forbidden(
                        "key-binding-mismatch",
                        format!(
                            "the SNP report data does not start with SHA-384 of the CSR's public key ({}): the evidence was made for another key",
                            hex::encode(digest)
                        ),
                    ));
                }
                if let Err(e) = verify::enarx::check_crls_current(crls, now) {
                    if self.config.require_current_crls {
                        return Err(forbidden("crl-expired", e.to_string()));
                    }
                    notes.push(format!(
                        "{e} (CRLs are not applied to SNP verification; the Steward runs without require_current_crls)"
                    ));
                }
                ("enarx", claims, Vec::new(), replay_key)
            }
        };
        let issued_claims = IssuedClaims::new(format, &claims, workload);
        self.issue(
            &csr.spki_der,
            &csr.sans,
            issued_claims,
            replay_key,
            now,
            notes,
        )
    }

    fn issue(
        &self,
        spki_der: &[u8],
        sans: &[San],
        claims: IssuedClaims,
        replay_key: String,
        now: SystemTime,
        notes: Vec<String>,
    ) -> Result<Issued, Rejection> {
        let subject_key = rcgen::SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| {
            Rejection::new(
                400,
                "unsupported-key",
                format!("the CSR's key type cannot be certified ({e}); use ECDSA P-256/P-384, Ed25519 or RSA"),
            )
        })?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            match sans.first() {
                Some(San::Dns(d)) => d.clone(),
                Some(San::Ip(i)) => i.to_string(),
                None => "ward-keep".to_string(),
            },
        );
        params.distinguished_name = dn;
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s {
                San::Dns(d) => d
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|e| Rejection::new(400, "san-invalid", format!("{d:?}: {e}"))),
                San::Ip(i) => Ok(SanType::IpAddress(*i)),
            })
            .collect::<Result<_, _>>()?;
        let not_after = now + self.config.validity;
        params.not_before = (now - Duration::from_secs(60)).into();
        params.not_after = not_after.into();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                crate::CLAIMS_OID,
                crate::der::octet_string(&claims.to_cbor()),
            ));

        let mut record = self
            .record
            .lock()
            .map_err(|_| internal("the record lock is poisoned"))?;
        if record.has_replay_key(&replay_key) {
            return Err(replay());
        }
        let serial = loop {
            let s = random_serial();
            if !record.has_serial(&hex::encode(s.to_bytes())) {
                break s;
            }
        };
        let serial_hex = hex::encode(serial.to_bytes());
        params.serial_number = Some(serial);
        let cert = params
            .signed_by(&subject_key, self.ca.issuer())
            .map_err(|e| internal(format!("signing failed: {e}")))?;
        let cert_der = cert.der().to_vec();
        // The certified key must be the CSR's key, byte for byte.
        let same_key = x509_parser::parse_x509_certificate(&cert_der)
            .map(|(_, c)| c.tbs_certificate.subject_pki.raw == spki_der)
            .unwrap_or(false);
        if !same_key {
            return Err(internal(
                "the issued certificate's key differs from the CSR's key; not issued",
            ));
        }
        let entry = IssuedEntry {
            serial: serial_hex.clone(),
            issued_at: unix(now),
            not_after: unix(not_after),
            format: claims.format.clone(),
            kind: claims.kind.clone(),
            measurement: hex::encode(&claims.measurement),
            workload: hex::encode(&claims.workload),
            key_sha256: hex::encode(Sha256::digest(spki_der)),
            replay_key,
            sans: sans.iter().map(|s| s.to_string()).collect(),
            cert_sha256: hex::encode(Sha256::digest(&cert_der)),
        };
        record.append(&entry).map_err(|e| {
            tracing::error!("cannot record an issued certificate: {e}");
            internal("the Steward cannot record the certificate; nothing was issued")
        })?;
        drop(record);
        Ok(Issued {
            cert_der,
            ca_der: self.ca.cert_der().to_vec(),
            serial: serial_hex,
            not_after: unix(not_after),
            claims,
            notes,
        })
    }
}

fn replay() -> Rejection {
    Rejection::new(
        409,
        "replay",
        "this CSR's nonce (or, for Enarx CSRs, its key) was already used for a certificate: make a new CSR with a fresh context",
    )
}
