//! Keeps on this machine, whichever backend started them: a sandboxed process or a
//! kvm micro-VM. Both speak the same CBOR frames on their channel.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use ward_proto::{FileKind, WorkloadConfig};
use ward_vmm::{GuestExit, HostDir, HostResources, KvmKeep, KvmKeepConfig};

use crate::ProcessKeep;

/// Memory a kvm Keep needs besides the workload's linear memory: ward-keep, the
/// wasmtime engine and compiled code, stacks, and the workload's own allocations.
pub const KVM_KEEP_OVERHEAD: u64 = 256 << 20;

/// Guest memory is mapped in 2 MiB pages.
const GUEST_PAGE: u64 = 2 << 20;

/// Largest guest ward-vmm accepts.
const MAX_GUEST_MEMORY: u64 = 16 << 30;

/// Extra time a kvm Keep gets past its workload's wall-time limit before the VMM stops
/// it: the limit starts when the workload starts, the VMM's clock at launch, so
/// compiling the module happens inside this window.
pub const KVM_DEADLINE_SLACK: Duration = Duration::from_secs(2);

/// The guest memory size of a kvm Keep whose workload may use `workload_memory` bytes
/// of linear memory.
pub fn kvm_guest_memory(workload_memory: u64) -> u64 {
    let want = workload_memory.saturating_add(KVM_KEEP_OVERHEAD);
    want.div_ceil(GUEST_PAGE)
        .saturating_mul(GUEST_PAGE)
        .min(MAX_GUEST_MEMORY)
}

/// The configuration of a kvm Keep: the same `ward-keep` binary, its argv and the guest
/// memory size, all of which are part of the launch measurement. `tls` selects
/// remote-deployment mode (RA-TLS inside the Keep). The wall-time bound, if any, is
/// enforced by the VMM, since the guest has no preemption.
pub fn kvm_keep_config(
    keep_bin: &Path,
    workload_memory: u64,
    wall_time: Option<Duration>,
    tls: bool,
) -> Result<KvmKeepConfig, ward_vmm::VmmError> {
    let mut args = vec!["ward-keep", "--channel-fd", "3", "--backend", "kvm"];
    if tls {
        args.push("--tls");
    }
    let mut cfg = KvmKeepConfig::from_path(keep_bin, kvm_guest_memory(workload_memory))?.args(args);
    if let Some(t) = wall_time {
        cfg = cfg.timeout(t + KVM_DEADLINE_SLACK);
    }
    Ok(cfg)
}

/// The host resources a kvm Keep may use for a workload: its preopened directories
/// (read-only unless `writable`) and its socket addresses. The VMM enforces them; they
/// are not part of the launch measurement. A host name that does not resolve is an
/// error here, as it would be when a process Keep opens the socket.
pub fn kvm_host_resources(cfg: &WorkloadConfig) -> io::Result<HostResources> {
    use std::net::ToSocketAddrs;
    let mut r = HostResources {
        dirs: cfg
            .preopens
            .iter()
            .map(|p| HostDir {
                path: p.host.clone().into(),
                writable: p.writable,
            })
            .collect(),
        // ward-keep makes a short-lived placeholder directory when there are sockets.
        scratch: !cfg.sockets.is_empty(),
        ..HostResources::default()
    };
    for s in &cfg.sockets {
        let addr = s.addr();
        let addrs = addr.to_socket_addrs().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot resolve {addr} for file {:?}: {e}", s.name),
            )
        })?;
        match s.kind {
            FileKind::Listen => r.listen.extend(addrs),
            FileKind::Connect => r.connect.extend(addrs),
        }
    }
    // The Keep asks its Steward for a certificate (prot = "tls" sockets).
    if let Some(steward) = &cfg.steward {
        let (host, port) = ward_proto::config::steward_authority(&steward.url)
            .map_err(|m| io::Error::new(io::ErrorKind::InvalidInput, m))?;
        let addrs = (host.as_str(), port).to_socket_addrs().map_err(|e| {
            io::Error::new(e.kind(), format!("cannot resolve the Steward {host}: {e}"))
        })?;
        r.connect.extend(addrs);
    }
    Ok(r)
}

/// A Keep on this machine.
pub enum LocalKeep {
    /// A sandboxed child process.
    Process(ProcessKeep),
    /// A micro-VM.
    Kvm(KvmKeep),
}

impl LocalKeep {
    /// Starts a kvm Keep; says why when `/dev/kvm` cannot be used.
    pub fn launch_kvm(cfg: &KvmKeepConfig) -> io::Result<Self> {
        launch_vm(cfg).map(Self::Kvm)
    }

    /// Takes the host end of the channel (once).
    pub fn take_channel(&mut self) -> Option<UnixStream> {
        match self {
            Self::Process(p) => p.take_channel(),
            Self::Kvm(k) => k.take_channel(),
        }
    }

    /// The process id of a process Keep (for watchdogs); `None` for a VM, whose VMM
    /// enforces its own deadline.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Self::Process(p) => Some(p.id()),
            Self::Kvm(_) => None,
        }
    }

    /// Stops the Keep now.
    pub fn kill(&mut self) -> io::Result<()> {
        match self {
            Self::Process(p) => p.kill(),
            Self::Kvm(k) => {
                k.kill();
                Ok(())
            }
        }
    }

    /// Waits for the Keep to end.
    pub fn finish(self) -> io::Result<KeepEnd> {
        match self {
            Self::Process(mut p) => p.wait().map(KeepEnd::of_process),
            Self::Kvm(k) => Ok(KeepEnd::of_guest(k.wait())),
        }
    }
}

/// Starts a kvm micro-VM; says why when `/dev/kvm` cannot be used.
pub fn launch_vm(cfg: &KvmKeepConfig) -> io::Result<KvmKeep> {
    ward_vmm::kvm_available().map_err(|why| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the kvm backend needs KVM: {why}"),
        )
    })?;
    ward_vmm::launch(cfg).map_err(|e| io::Error::other(format!("cannot start the kvm Keep: {e}")))
}

/// How a Keep ended, as its loader saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepEnd {
    /// It exited with status 0.
    pub success: bool,
    /// It did not exit by itself: killed by a signal, or a guest fault.
    pub crashed: bool,
    /// The VMM stopped it at its deadline (a kvm guest cannot interrupt a CPU-bound
    /// workload itself).
    pub timed_out: bool,
    /// One line: the exit status, or the guest's fault with its registers.
    pub how: String,
}

impl KeepEnd {
    /// How a process Keep ended.
    pub fn of_process(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        Self {
            success: status.success(),
            crashed: status.signal().is_some(),
            timed_out: false,
            how: status.to_string(),
        }
    }

    /// How a kvm Keep ended.
    pub fn of_guest(exit: Result<GuestExit, ward_vmm::VmmError>) -> Self {
        match exit {
            Ok(GuestExit::Exited(code)) => Self {
                success: code == 0,
                crashed: false,
                timed_out: false,
                how: GuestExit::Exited(code).to_string(),
            },
            Ok(other) => Self {
                success: false,
                crashed: true,
                timed_out: other == GuestExit::Timeout,
                how: other.to_string(),
            },
            Err(e) => Self {
                success: false,
                crashed: true,
                timed_out: false,
                how: format!("VMM error: {e}"),
            },
        }
    }
}
