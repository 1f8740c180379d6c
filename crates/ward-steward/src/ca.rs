//! The CA: an ECDSA P-256 key and a self-signed CA certificate, created in the CA
//! directory on first start and loaded from it afterwards.
//!
//! Files (the directory is created mode 0700, an existing empty one is made 0700, and
//! a non-empty one must not be accessible to group or others):
//! - `ca-key.pem`: the PKCS#8 private key, mode 0600;
//! - `ca-cert.pem`: the CA certificate, mode 0600;
//! - `issued.jsonl`: the issued-certificate record ([`crate::record`]).
//!
//! Both CA files are written to a temporary name, synced and renamed, then the
//! directory is synced, so a crash leaves either nothing or a whole file.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData,
};

use crate::error::StewardError;

/// File name of the CA private key in the CA directory.
pub const KEY_FILE: &str = "ca-key.pem";
/// File name of the CA certificate in the CA directory.
pub const CERT_FILE: &str = "ca-cert.pem";
/// Validity of a newly created CA certificate.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A loaded CA: its signing key and certificate.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_der: Vec<u8>,
    cert_pem: String,
    dir: PathBuf,
    created: bool,
}

impl std::fmt::Debug for Ca {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

fn ca_err(dir: &Path, why: impl Into<String>) -> StewardError {
    StewardError::CaDir {
        dir: dir.display().to_string(),
        why: why.into(),
    }
}

/// Writes `bytes` to `dir/name` atomically with mode 0600: a temporary file, fsync,
/// rename, fsync of the directory.
pub(crate) fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StewardError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(StewardError::io(format!("cannot create {}", tmp.display())))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(StewardError::io(format!("cannot write {}", tmp.display())))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(StewardError::io(format!(
        "cannot rename {} to {}",
        tmp.display(),
        path.display()
    )))?;
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StewardError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StewardError::io(format!("cannot sync {}", dir.display())))
}

/// Creates the CA directory (0700) or checks that an existing one is private.
pub(crate) fn prepare_dir(dir: &Path) -> Result<(), StewardError> {
    match fs::metadata(dir) {
        Ok(m) => {
            if !m.is_dir() {
                return Err(ca_err(dir, "not a directory"));
            }
            let mode = m.permissions().mode() & 0o777;
            let empty = fs::read_dir(dir)
                .map_err(StewardError::io(format!("cannot read {}", dir.display())))?
                .next()
                .is_none();
            if mode & 0o077 != 0 && empty {
                // A fresh, empty directory (e.g. made by mktemp or a test): make it
                // private before anything secret goes in.
                return fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                    .map_err(StewardError::io(format!("cannot chmod {}", dir.display())));
            }
            if mode & 0o077 != 0 {
                return Err(ca_err(
                    dir,
                    format!(
                        "mode {mode:03o} lets other users read the CA key; run `chmod 700 {}`",
                        dir.display()
                    ),
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(StewardError::io(format!("cannot create {}", dir.display())))?;
            // The umask may have removed bits, never added them; make it exact.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(StewardError::io(format!("cannot chmod {}", dir.display())))
        }
        Err(e) => Err(StewardError::io(format!("cannot read {}", dir.display()))(
            e,
        )),
    }
}

fn ca_params(now: SystemTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Ward");
    dn.push(DnType::CommonName, "Ward Steward CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = (now - Duration::from_secs(60)).into();
    params.not_after = (now + CA_VALIDITY).into();
    params.serial_number = Some(crate::steward::random_serial());
    params
}

impl Ca {
    /// Loads the CA from `dir`, or creates it there if the directory holds neither
    /// file. A directory with only one of the two files is an error (a CA half
    /// written, or a key removed): the Steward never silently replaces a CA.
    pub fn load_or_create(dir: &Path) -> Result<Self, StewardError> {
        prepare_dir(dir)?;
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        match (key_path.exists(), cert_path.exists()) {
            (true, true) => Self::load(dir),
            (false, false) => Self::create(dir),
            (k, _) => Err(ca_err(
                dir,
                format!(
                    "{} exists but {} does not; restore it, or remove the directory to start a new CA",
                    if k { KEY_FILE } else { CERT_FILE },
                    if k { CERT_FILE } else { KEY_FILE },
                ),
            )),
        }
    }

    /// Loads an existing CA from `dir` (no creation).
    pub fn load(dir: &Path) -> Result<Self, StewardError> {
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        for p in [&key_path, &cert_path] {
            let mode = fs::metadata(p)
                .map_err(StewardError::io(format!("cannot read {}", p.display())))?
                .permissions()
                .mode();
            if p == &key_path && mode & 0o077 != 0 {
                return Err(ca_err(
                    dir,
                    format!(
                        "{KEY_FILE} has mode {:03o}; run `chmod 600 {}`",
                        mode & 0o777,
                        p.display()
                    ),
                ));
            }
        }
        let key_pem = fs::read_to_string(&key_path).map_err(StewardError::io(format!(
            "cannot read {}",
            key_path.display()
        )))?;
        let cert_pem = fs::read_to_string(&cert_path).map_err(StewardError::io(format!(
            "cannot read {}",
            cert_path.display()
        )))?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| ca_err(dir, format!("{KEY_FILE} is not a usable key: {e}")))?;
        let cert_der = pem_to_der(&cert_pem)
            .ok_or_else(|| ca_err(dir, format!("{CERT_FILE} is not a PEM certificate")))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| ca_err(dir, format!("{CERT_FILE}: {e}")))?;
        if parsed.tbs_certificate.subject_pki.raw != key.subject_public_key_info().as_slice() {
            return Err(ca_err(
                dir,
                format!("{KEY_FILE} is not the key of {CERT_FILE}"),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der.clone().into(), key)
            .map_err(|e| ca_err(dir, format!("{CERT_FILE}: {e}")))?;
        Ok(Self {
            issuer,
            cert_der,
            cert_pem,
            dir: dir.to_path_buf(),
            created: false,
        })
    }

    fn create(dir: &Path) -> Result<Self, StewardError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| StewardError::Cert(e.to_string()))?;
        let params = ca_params(SystemTime::now());
        let cert = params
            .self_signed(&key)
            .map_err(|e| StewardError::Cert(e.to_string()))?;
        // The key first: a crash in between leaves a key without a certificate,
        // which load_or_create reports instead of replacing.
        write_private(dir, KEY_FILE, key.serialize_pem().as_bytes())?;
        write_private(dir, CERT_FILE, cert.pem().as_bytes())?;
        tracing::info!(dir = %dir.display(), fingerprint = %crate::fingerprint(cert.der()), "created a new Steward CA");
        Ok(Self {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            dir: dir.to_path_buf(),
            created: true,
        })
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 fingerprint of the CA certificate, hex.
    pub fn fingerprint(&self) -> String {
        crate::fingerprint(&self.cert_der)
    }

    /// The CA directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this CA was created by this call (first start) rather than loaded.
    pub fn created(&self) -> bool {
        self.created
    }

    /// The issuer that signs certificates.
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// A TLS server identity for the Steward itself, signed by the CA: (certificate
    /// chain DER, PKCS#8 key DER). The key is fresh and lives only in memory.
    pub fn server_identity(
        &self,
        names: &[String],
        now: SystemTime,
    ) -> Result<(Vec<Vec<u8>>, Vec<u8>), StewardError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| StewardError::Cert(e.to_string()))?;
        let mut params = CertificateParams::new(names.to_vec())
            .map_err(|e| StewardError::Cert(e.to_string()))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Ward Steward");
        params.distinguished_name = dn;
        params.not_before = (now - Duration::from_secs(60)).into();
        params.not_after = (now + Duration::from_secs(90 * 24 * 3600)).into();
        params.serial_number = Some(crate::steward::random_serial());
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| StewardError::Cert(e.to_string()))?;
        Ok((
            vec![cert.der().to_vec(), self.cert_der.clone()],
            key.serialize_der(),
        ))
    }
}

/// The DER of the first certificate in a PEM text.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|c| c.to_vec())
}
