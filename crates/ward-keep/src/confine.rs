//! What a remote tenant's Ward.toml may reach on the host. `ward run` trusts its own
//! user's config; `ward host serve` does not: the config travels inside TLS the host
//! cannot read, so the loader tells a process Keep what the operator allows
//! (`--allow-dir`, `--allow-dir-rw`, `--allow-sockets`), and the Keep refuses anything
//! else before it opens a single host resource. (A kvm Keep is confined by its VMM.)

use std::path::{Path, PathBuf};

use ward_proto::WorkloadConfig;

/// The host resources the operator allows remote workloads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HostAllowList {
    /// Directories (and everything beneath them) a workload may preopen; `true`:
    /// writable too.
    pub dirs: Vec<(PathBuf, bool)>,
    /// Whether workloads may listen on or connect to TCP addresses (and reach a Steward).
    pub sockets: bool,
}

impl HostAllowList {
    /// Refuses a config that asks for more than this allows, naming what and why.
    pub fn check(&self, cfg: &WorkloadConfig) -> Result<(), String> {
        for p in &cfg.preopens {
            // Resolved, so `..` and symlinks cannot step outside an allowed directory.
            let real =
                std::fs::canonicalize(&p.host).map_err(|e| format!("preopen {}: {e}", p.host))?;
            let allowed = self
                .dirs
                .iter()
                .filter(|(dir, _)| real.starts_with(dir))
                .map(|(_, rw)| *rw)
                .max();
            match allowed {
                None => {
                    return Err(format!(
                    "this host does not let remote workloads preopen {} (its operator allows: {})",
                    p.host,
                    self.describe_dirs()
                ))
                }
                Some(false) if p.writable => {
                    return Err(format!(
                        "this host allows {} read-only; the config asks for writable = true",
                        p.host
                    ))
                }
                Some(_) => {}
            }
        }
        if !self.sockets {
            if let Some(s) = cfg.sockets.first() {
                return Err(format!(
                    "this host does not let remote workloads use sockets (file {:?}); its operator allows them with `ward host serve --allow-sockets`",
                    s.name
                ));
            }
            if cfg.steward.is_some() {
                return Err("this host does not let remote workloads reach a Steward; its operator allows sockets with `ward host serve --allow-sockets`".into());
            }
        }
        Ok(())
    }

    fn describe_dirs(&self) -> String {
        if self.dirs.is_empty() {
            return "no directories".into();
        }
        self.dirs
            .iter()
            .map(|(d, rw)| format!("{}{}", d.display(), if *rw { " (rw)" } else { "" }))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Adds an allowed directory given on the command line (resolved now).
    pub fn allow_dir(&mut self, dir: &Path, writable: bool) -> Result<(), String> {
        let real = std::fs::canonicalize(dir)
            .map_err(|e| format!("--allow-dir {}: {e}", dir.display()))?;
        self.dirs.push((real, writable));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_proto::{PreopenDir, WorkloadConfig};

    fn with_preopen(host: &Path, writable: bool) -> WorkloadConfig {
        let mut cfg = WorkloadConfig::default();
        cfg.preopens.push(PreopenDir {
            host: host.to_string_lossy().into_owned(),
            guest: "/data".into(),
            writable,
        });
        cfg
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let d = tempfile::tempdir().unwrap();
        let err = HostAllowList::default()
            .check(&with_preopen(d.path(), false))
            .unwrap_err();
        assert!(
            err.contains("does not let remote workloads preopen"),
            "{err}"
        );
        assert!(err.contains("no directories"), "{err}");
        assert!(HostAllowList::default()
            .check(&WorkloadConfig::default())
            .is_ok());
    }

    #[test]
    fn beneath_an_allowed_dir_read_only_unless_rw() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let mut allow = HostAllowList::default();
        allow.allow_dir(d.path(), false).unwrap();
        assert!(allow.check(&with_preopen(&sub, false)).is_ok());
        let err = allow.check(&with_preopen(&sub, true)).unwrap_err();
        assert!(err.contains("read-only"), "{err}");
        allow.allow_dir(&sub, true).unwrap();
        assert!(allow.check(&with_preopen(&sub, true)).is_ok());
    }

    #[test]
    fn dot_dot_and_symlinks_are_resolved_first() {
        let d = tempfile::tempdir().unwrap();
        let allowed = d.path().join("allowed");
        let outside = d.path().join("outside");
        std::fs::create_dir(&allowed).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, allowed.join("link")).unwrap();
        let mut allow = HostAllowList::default();
        allow.allow_dir(&allowed, true).unwrap();
        for escape in [allowed.join("../outside"), allowed.join("link")] {
            let err = allow.check(&with_preopen(&escape, false)).unwrap_err();
            assert!(err.contains("does not let"), "{}: {err}", escape.display());
        }
    }

    #[test]
    fn sockets_need_allow_sockets() {
        let mut cfg = WorkloadConfig::default();
        cfg.sockets.push(ward_proto::WorkloadSocket {
            kind: ward_proto::FileKind::Listen,
            name: "ingest".into(),
            prot: ward_proto::SocketProtocol::Tcp,
            host: "127.0.0.1".into(),
            port: 0,
        });
        let err = HostAllowList::default().check(&cfg).unwrap_err();
        assert!(err.contains("sockets (file \"ingest\")"), "{err}");
        let allow = HostAllowList {
            sockets: true,
            ..HostAllowList::default()
        };
        assert!(allow.check(&cfg).is_ok());
    }

    #[test]
    fn a_steward_needs_allow_sockets() {
        let cfg = WorkloadConfig {
            steward: Some(ward_proto::StewardRef {
                url: "https://127.0.0.1:1".into(),
                ca_der: vec![1],
            }),
            ..WorkloadConfig::default()
        };
        let err = HostAllowList::default().check(&cfg).unwrap_err();
        assert!(err.contains("Steward"), "{err}");
        let allow = HostAllowList {
            sockets: true,
            ..HostAllowList::default()
        };
        assert!(allow.check(&cfg).is_ok());
    }
}
