//! The issued-certificate record: one JSON line per certificate, in
//! `<ca-dir>/issued.jsonl`, appended and fsynced *before* the certificate is
//! returned. It is also the Steward's replay memory: the replay key of every
//! accepted request is in it, so a restart does not forget which nonces (and Enarx
//! keys) were used.
//!
//! A crash while appending can leave a last line without its newline; that request
//! was never answered, so the partial line is cut off when the record is opened. A
//! complete line that does not parse is corruption: the Steward refuses to start.
//! The file is locked (exclusive advisory lock) while a Steward uses it.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::StewardError;

/// File name of the record in the CA directory.
pub const RECORD_FILE: &str = "issued.jsonl";

/// One issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedEntry {
    /// Serial number, hex.
    pub serial: String,
    /// Issue time, seconds since the Unix epoch.
    pub issued_at: u64,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: u64,
    /// CSR format: `ward` or `enarx`.
    pub format: String,
    /// TEE kind of the evidence (`snp`, `tdx`, `sgx`, `nitro`, `none`).
    pub kind: String,
    /// Measurement, hex.
    pub measurement: String,
    /// Workload digest, hex (empty when the CSR named none).
    pub workload: String,
    /// SHA-256 of the certified SubjectPublicKeyInfo, hex.
    pub key_sha256: String,
    /// The replay key: `nonce:<sha256 of the context's random>` or
    /// `enarx-key:<sha256 of the SPKI>`.
    pub replay_key: String,
    /// Subject alternative names.
    pub sans: Vec<String>,
    /// SHA-256 of the issued certificate (DER), hex.
    pub cert_sha256: String,
}

/// The open record.
#[derive(Debug)]
pub struct Record {
    file: File,
    path: PathBuf,
    serials: HashSet<String>,
    replay_keys: HashSet<String>,
    count: usize,
}

impl Record {
    /// Opens (or creates, mode 0600) the record in `dir`, reads every entry, cuts off
    /// a torn last line, and takes the lock.
    pub fn open(dir: &Path) -> Result<Self, StewardError> {
        let path = dir.join(RECORD_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(StewardError::io(format!("cannot open {}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StewardError::CaDir {
                    dir: dir.display().to_string(),
                    why: format!(
                        "{RECORD_FILE} is locked: another Steward is using this CA directory"
                    ),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StewardError::io(format!("cannot lock {}", path.display()))(
                    e,
                ))
            }
        }
        crate::ca::sync_dir(dir)?;
        let mut text = Vec::new();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_end(&mut text))
            .map_err(StewardError::io(format!("cannot read {}", path.display())))?;
        let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            tracing::warn!(
                path = %path.display(),
                bytes = text.len() - complete,
                "cutting off a partial last record line (a crash while issuing; that request was never answered)"
            );
            file.set_len(complete as u64)
                .and_then(|_| file.sync_all())
                .map_err(StewardError::io(format!(
                    "cannot truncate {}",
                    path.display()
                )))?;
        }
        let mut record = Self {
            file,
            path: path.clone(),
            serials: HashSet::new(),
            replay_keys: HashSet::new(),
            count: 0,
        };
        for (i, line) in text[..complete].split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let entry: IssuedEntry =
                serde_json::from_slice(line).map_err(|e| StewardError::Record {
                    path: path.display().to_string(),
                    line: i + 1,
                    why: e.to_string(),
                })?;
            record.remember(&entry);
        }
        Ok(record)
    }

    fn remember(&mut self, entry: &IssuedEntry) {
        self.serials.insert(entry.serial.clone());
        self.replay_keys.insert(entry.replay_key.clone());
        self.count += 1;
    }

    /// Appends an entry and syncs it to disk. Only after this returns may the
    /// certificate be handed out.
    pub fn append(&mut self, entry: &IssuedEntry) -> Result<(), StewardError> {
        let mut line = serde_json::to_vec(entry).map_err(|e| StewardError::Record {
            path: self.path.display().to_string(),
            line: self.count + 1,
            why: e.to_string(),
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|_| self.file.sync_data())
            .map_err(StewardError::io(format!(
                "cannot append to {}",
                self.path.display()
            )))?;
        self.remember(entry);
        Ok(())
    }

    /// Whether a certificate with this serial (hex) was issued.
    pub fn has_serial(&self, serial: &str) -> bool {
        self.serials.contains(serial)
    }

    /// Whether a request with this replay key was accepted before.
    pub fn has_replay_key(&self, key: &str) -> bool {
        self.replay_keys.contains(key)
    }

    /// How many certificates the record holds.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the record is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Reads every entry of the record in `dir` (without locking it), e.g. for
    /// `ward steward ca`.
    pub fn read_entries(dir: &Path) -> Result<Vec<IssuedEntry>, StewardError> {
        let path = dir.join(RECORD_FILE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(StewardError::io(format!("cannot read {}", path.display()))(
                    e,
                ))
            }
        };
        let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        text[..complete]
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
            .map(|(i, l)| {
                serde_json::from_slice(l).map_err(|e| StewardError::Record {
                    path: path.display().to_string(),
                    line: i + 1,
                    why: e.to_string(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8) -> IssuedEntry {
        IssuedEntry {
            serial: format!("{n:02x}"),
            issued_at: 1,
            not_after: 2,
            format: "ward".into(),
            kind: "none".into(),
            measurement: String::new(),
            workload: String::new(),
            key_sha256: String::new(),
            replay_key: format!("nonce:{n}"),
            sans: vec![],
            cert_sha256: String::new(),
        }
    }

    #[test]
    fn survives_reopen_and_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut r = Record::open(dir.path()).unwrap();
            r.append(&entry(1)).unwrap();
            r.append(&entry(2)).unwrap();
        }
        // A crash mid-append.
        {
            let mut f = OpenOptions::new()
                .append(true)
                .open(dir.path().join(RECORD_FILE))
                .unwrap();
            f.write_all(b"{\"serial\":\"03\",").unwrap();
        }
        let mut r = Record::open(dir.path()).unwrap();
        assert_eq!(r.len(), 2);
        assert!(r.has_serial("01") && r.has_replay_key("nonce:2"));
        r.append(&entry(3)).unwrap();
        drop(r);
        assert_eq!(Record::read_entries(dir.path()).unwrap().len(), 3);
    }

    #[test]
    fn corrupt_line_refused_and_lock_held() {
        let dir = tempfile::tempdir().unwrap();
        let r = Record::open(dir.path()).unwrap();
        let err = Record::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("another Steward"), "{err}");
        drop(r);
        std::fs::write(dir.path().join(RECORD_FILE), b"not json\n").unwrap();
        let err = Record::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
