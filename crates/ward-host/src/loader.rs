//! Keep loaders for `ward host serve`: one per Keep, a sandboxed `ward-keep` process or
//! a kvm micro-VM, both in remote-deployment (`--tls`) mode. The daemon only needs to
//! poll whether a Keep has ended and to stop it.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ward_vmm::KeepStopper;

/// Backends this build can offer.
pub const BACKENDS: &[&str] = &["process", "kvm"];

/// The host resources the operator lets remote workloads reach (`ward host serve
/// --allow-dir/--allow-dir-rw/--allow-sockets`). Nothing by default: a remote tenant's
/// Ward.toml travels inside TLS, so the host cannot vet it and confines the Keep instead.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RemoteAllow {
    /// Directories (and what is beneath them) workloads may preopen; `true`: writable.
    pub dirs: Vec<(std::path::PathBuf, bool)>,
    /// Whether workloads may use TCP sockets (and reach a Steward). Process Keeps only:
    /// a kvm Keep's VMM needs the addresses, which the host does not see.
    pub sockets: bool,
}

impl RemoteAllow {
    /// `ward-keep` arguments that confine a process Keep to this.
    fn keep_args(&self) -> Vec<String> {
        let mut args = vec!["--confine".to_string()];
        for (dir, rw) in &self.dirs {
            args.push(if *rw { "--allow-dir-rw" } else { "--allow-dir" }.into());
            args.push(dir.to_string_lossy().into_owned());
        }
        if self.sockets {
            args.push("--allow-sockets".into());
        }
        args
    }

    /// What the VMM lets a kvm Keep reach: the allowed directories, no sockets.
    fn kvm_resources(&self) -> ward_vmm::HostResources {
        ward_vmm::HostResources {
            dirs: self
                .dirs
                .iter()
                .map(|(path, writable)| ward_vmm::HostDir {
                    path: path.clone(),
                    writable: *writable,
                })
                .collect(),
            ..ward_vmm::HostResources::default()
        }
    }
}

pub use crate::local::KeepEnd;

/// A Keep the daemon started. Dropping it stops the Keep.
pub struct RunningKeep(Inner);

enum Inner {
    Process(tokio::process::Child),
    Kvm {
        stopper: KeepStopper,
        /// Filled in by the thread that waits for the guest.
        ended: Arc<Mutex<Option<KeepEnd>>>,
    },
}

/// Starts a Keep of `backend` running `keep_bin`, and returns it with the host end of
/// its channel. `workload_memory` sizes a kvm guest (see
/// [`kvm_guest_memory`](crate::local::kvm_guest_memory)). Needs a tokio runtime.
pub fn start(
    backend: &str,
    keep_bin: &Path,
    workload_memory: u64,
    allow: &RemoteAllow,
) -> io::Result<(RunningKeep, UnixStream)> {
    match backend {
        "process" => {
            let measurement = crate::process::keep_binary_measurement(keep_bin)?;
            let (ours, theirs) = UnixStream::pair()?;
            let child = tokio::process::Command::new(keep_bin)
                .args([
                    "--channel-fd",
                    "0",
                    "--sandbox",
                    "--tls",
                    "--backend",
                    "process",
                    "--measurement",
                    &hex::encode(measurement),
                ])
                .args(allow.keep_args())
                .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
                    theirs,
                )))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit())
                .env_clear()
                .kill_on_drop(true)
                .spawn()?;
            Ok((RunningKeep(Inner::Process(child)), ours))
        }
        "kvm" => {
            let cfg = crate::local::kvm_keep_config(keep_bin, workload_memory, None, true)
                .map_err(|e| io::Error::other(e.to_string()))?
                .resources(allow.kvm_resources());
            let mut keep = crate::local::launch_vm(&cfg)?;
            let channel = keep
                .take_channel()
                .ok_or_else(|| io::Error::other("the kvm Keep has no channel"))?;
            let stopper = keep.stopper();
            let ended = Arc::new(Mutex::new(None));
            let slot = ended.clone();
            std::thread::Builder::new()
                .name("ward-kvm-reaper".into())
                .spawn(move || {
                    let end = KeepEnd::of_guest(keep.wait());
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(end);
                })?;
            Ok((RunningKeep(Inner::Kvm { stopper, ended }), channel))
        }
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown backend {other:?} (known: {})", BACKENDS.join(",")),
        )),
    }
}

impl RunningKeep {
    /// `Some` once the Keep has ended.
    pub fn try_wait(&mut self) -> io::Result<Option<KeepEnd>> {
        match &mut self.0 {
            Inner::Process(child) => Ok(child.try_wait()?.map(KeepEnd::of_process)),
            Inner::Kvm { ended, .. } => Ok(ended.lock().unwrap_or_else(|e| e.into_inner()).clone()),
        }
    }

    /// Waits for the Keep to end.
    pub async fn wait(&mut self) -> io::Result<KeepEnd> {
        match &mut self.0 {
            Inner::Process(child) => child.wait().await.map(KeepEnd::of_process),
            Inner::Kvm { ended, .. } => loop {
                if let Some(end) = ended.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                    return Ok(end);
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            },
        }
    }

    /// Stops the Keep (a no-op if it has ended).
    pub async fn kill(&mut self) {
        match &mut self.0 {
            Inner::Process(child) => {
                let _ = child.kill().await;
            }
            Inner::Kvm { stopper, .. } => {
                let s = stopper.clone();
                let _ = tokio::task::spawn_blocking(move || s.stop()).await;
            }
        }
    }
}

impl Drop for RunningKeep {
    fn drop(&mut self) {
        // A process Keep is killed by `kill_on_drop`; a VM is stopped here.
        if let Inner::Kvm { stopper, ended } = &self.0 {
            if ended.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
                stopper.stop();
            }
        }
    }
}
