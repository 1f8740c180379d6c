//! `ward-vmm`: the KVM micro-VM loader of Ward's `kvm` Keeps.
//!
//! It builds the initial guest image (identity page tables, GDT, IDT, TSS, boot info,
//! the `ward-shim` guest kernel and the static `ward-keep` executable), measures it
//! (SHA-384, see `docs/kvm.md`), and runs one vCPU that starts directly in user mode.
//! The guest's fd 3 is the host end of a [`UnixStream`] pair; its fd 1/2 go to the host's
//! stderr.
//!
//! ```no_run
//! let cfg = ward_vmm::KvmKeepConfig::new(std::fs::read("ward-keep")?, 512 << 20)
//!     .args(["ward-keep", "--channel-fd", "3", "--backend", "kvm"]);
//! let mut keep = ward_vmm::launch(&cfg)?;
//! let channel = keep.take_channel().expect("first call");
//! // ... exchange CBOR frames on `channel` ...
//! drop(channel);
//! println!("{}", keep.wait()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod hostio;
mod image;
mod vcpu;

use std::fmt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use hostio::{HostDir, HostResources};
pub use image::MIN_MEMORY;

/// Errors of the VMM itself (the guest's own failures are [`GuestExit`] values).
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// `/dev/kvm` is missing or unusable.
    #[error("KVM is not available: {0}")]
    KvmUnavailable(String),
    /// A KVM ioctl failed.
    #[error("KVM {0} failed: {1}")]
    Kvm(&'static str, String),
    /// Guest memory could not be set up or accessed.
    #[error("guest memory: {0}")]
    Memory(String),
    /// The `ward-keep` executable is not a loadable static x86_64 ELF.
    #[error("ward-keep ELF: {0}")]
    BadKeepElf(String),
    /// The configuration is invalid (memory size, arguments...).
    #[error("configuration: {0}")]
    Config(String),
    /// A host I/O error.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The vCPU thread panicked.
    #[error("the vCPU thread panicked")]
    Panicked,
}

/// How to start a kvm Keep.
#[derive(Clone, Debug)]
pub struct KvmKeepConfig {
    /// The static `ward-keep` executable (ELF bytes).
    pub keep_elf: Arc<Vec<u8>>,
    /// Guest memory in bytes (a multiple of 2 MiB, at least [`MIN_MEMORY`]).
    pub memory_bytes: u64,
    /// argv of `ward-keep`, including argv\[0\]. Part of the measurement.
    pub args: Vec<String>,
    /// Environment of `ward-keep` (`KEY=value`). Part of the measurement.
    pub env: Vec<String>,
    /// Stop the guest after this long (reported as [`GuestExit::Timeout`]).
    pub timeout: Option<Duration>,
    /// Host directories and socket addresses the guest may use. Not measured: the
    /// host's policy, enforced by the VMM (see `docs/kvm.md`).
    pub resources: HostResources,
}

impl KvmKeepConfig {
    /// A configuration with no arguments, no environment and no timeout.
    pub fn new(keep_elf: Vec<u8>, memory_bytes: u64) -> Self {
        Self {
            keep_elf: Arc::new(keep_elf),
            memory_bytes,
            args: Vec::new(),
            env: Vec::new(),
            timeout: None,
            resources: HostResources::default(),
        }
    }

    /// Reads `ward-keep` from a file.
    pub fn from_path(keep: &Path, memory_bytes: u64) -> Result<Self, VmmError> {
        Ok(Self::new(std::fs::read(keep)?, memory_bytes))
    }

    /// Sets argv.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the environment.
    pub fn env<I: IntoIterator<Item = S>, S: Into<String>>(mut self, env: I) -> Self {
        self.env = env.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the host resources the guest may use.
    pub fn resources(mut self, r: HostResources) -> Self {
        self.resources = r;
        self
    }

    /// Sets the wall-clock timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }
}

/// General-purpose and control registers of the vCPU when the guest stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Registers {
    /// Instruction pointer (of the faulting instruction, for faults).
    pub rip: u64,
    /// Stack pointer (the faulting code's, for faults).
    pub rsp: u64,
    /// Flags.
    pub rflags: u64,
    /// rax, rbx, rcx, rdx, rsi, rdi, rbp, r8..r15.
    pub gpr: [u64; 15],
    /// Code segment selector (its low two bits are the privilege level).
    pub cs: u64,
    /// Page-fault address.
    pub cr2: u64,
}

impl fmt::Display for Registers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const N: [&str; 15] = [
            "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12",
            "r13", "r14", "r15",
        ];
        write!(
            f,
            "rip={:#x} rsp={:#x} rflags={:#x} cs={:#x} cr2={:#x}",
            self.rip, self.rsp, self.rflags, self.cs, self.cr2
        )?;
        for (n, v) in N.iter().zip(self.gpr) {
            write!(f, " {n}={v:#x}")?;
        }
        Ok(())
    }
}

/// How a guest ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestExit {
    /// `exit_group(code)`.
    Exited(i32),
    /// A CPU exception (page fault, general protection, invalid opcode...).
    Fault {
        /// Exception vector (14 = page fault, 13 = #GP, 6 = #UD...).
        vector: u8,
        /// The exception's error code (0 if it has none).
        error_code: u64,
        /// Registers at the fault.
        regs: Registers,
    },
    /// The vCPU shut down (triple fault).
    TripleFault {
        /// Registers at shutdown.
        regs: Registers,
    },
    /// The guest made a system call the shim does not implement.
    UnsupportedSyscall {
        /// Linux x86_64 system call number.
        nr: u64,
    },
    /// The guest ran out of memory (a request of `requested` bytes failed, then it aborted).
    OutOfMemory {
        /// Bytes of the failed request.
        requested: u64,
    },
    /// The program killed itself with a signal (e.g. 6 = SIGABRT).
    Aborted {
        /// The signal number.
        signal: u64,
    },
    /// Every guest thread was blocked with nothing to wake it.
    Deadlock,
    /// The configured timeout expired.
    Timeout,
    /// [`KvmKeep::kill`] was called.
    Killed,
    /// The guest stopped in a way the VMM did not expect (KVM exit reason, shim error).
    Crashed {
        /// What happened.
        reason: String,
        /// Registers at that point.
        regs: Registers,
    },
}

impl fmt::Display for GuestExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(c) => write!(f, "exited with status {c}"),
            Self::Fault { vector, error_code, regs } => write!(
                f,
                "guest fault: {} (vector {vector}, error code {error_code:#x}) at {}; {regs}",
                vector_name(*vector),
                if regs.cs & 3 == 3 { "user mode" } else { "ring 0" },
            ),
            Self::TripleFault { regs } => write!(f, "guest triple fault (shutdown); {regs}"),
            Self::UnsupportedSyscall { nr } => write!(f, "unsupported syscall {nr}"),
            Self::OutOfMemory { requested } => write!(
                f,
                "out of guest memory: a request for {requested} bytes failed (raise the Keep's memory limit)"
            ),
            Self::Aborted { signal } => write!(f, "the Keep aborted (signal {signal})"),
            Self::Deadlock => write!(f, "every guest thread is blocked forever"),
            Self::Timeout => write!(f, "the Keep exceeded its time limit and was stopped"),
            Self::Killed => write!(f, "the Keep was stopped"),
            Self::Crashed { reason, regs } => write!(f, "guest crashed: {reason}; {regs}"),
        }
    }
}

fn vector_name(v: u8) -> &'static str {
    match v {
        0 => "divide error",
        1 => "debug",
        3 => "breakpoint",
        6 => "invalid opcode",
        8 => "double fault",
        13 => "general protection fault",
        14 => "page fault",
        16 => "x87 floating-point error",
        17 => "alignment check",
        19 => "SIMD floating-point exception",
        _ => "exception",
    }
}

/// Launch timings.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    /// From the start of [`launch`] to the VM's first user-mode instruction.
    pub first_user_instruction: Option<Duration>,
}

/// A running kvm Keep.
pub struct KvmKeep {
    channel: Option<UnixStream>,
    thread: Option<JoinHandle<Result<GuestExit, VmmError>>>,
    stop: Arc<vcpu::Stop>,
    timings: Arc<Mutex<Timings>>,
    measurement: Arc<vcpu::Measurement>,
}

/// Stops a kvm Keep from another thread, e.g. while a reaper owns the [`KvmKeep`] in
/// [`KvmKeep::wait`]. It may block briefly until the vCPU has left the guest.
#[derive(Clone)]
pub struct KeepStopper(Arc<vcpu::Stop>);

impl KeepStopper {
    /// Stops the guest; its `wait` then returns [`GuestExit::Killed`] (unless it had
    /// already ended).
    pub fn stop(&self) {
        self.0.request(false);
    }
}

impl KvmKeep {
    /// A handle that can stop this guest after [`KvmKeep::wait`] has taken it.
    pub fn stopper(&self) -> KeepStopper {
        KeepStopper(self.stop.clone())
    }

    /// The host end of the guest's fd 3 (the Keep channel). `Some` once.
    pub fn take_channel(&mut self) -> Option<UnixStream> {
        self.channel.take()
    }

    /// Stops the guest; [`KvmKeep::wait`] then returns [`GuestExit::Killed`].
    pub fn kill(&self) {
        self.stop.request(false);
    }

    /// Launch timings recorded so far.
    pub fn timings(&self) -> Timings {
        *self.timings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The launch measurement (waits for it to be computed).
    pub fn measurement(&self) -> [u8; 48] {
        self.measurement.get()
    }

    /// Waits for the guest to end.
    pub fn wait(self) -> Result<GuestExit, VmmError> {
        self.wait_with_timings().map(|(e, _)| e)
    }

    /// Waits for the guest to end, and returns its launch timings too.
    pub fn wait_with_timings(mut self) -> Result<(GuestExit, Timings), VmmError> {
        let t = self.thread.take().ok_or(VmmError::Panicked)?;
        let exit = t.join().map_err(|_| VmmError::Panicked)??;
        Ok((exit, self.timings()))
    }
}

impl Drop for KvmKeep {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.request(false);
            let _ = t.join();
        }
    }
}

/// Whether `/dev/kvm` can be used here; `Err` says why not.
pub fn kvm_available() -> Result<(), String> {
    kvm_ioctls::Kvm::new()
        .map(|_| ())
        .map_err(|e| format!("/dev/kvm: {e}"))
}

/// The launch measurement of a configuration: SHA-384 over the initial guest image,
/// computed offline exactly as [`launch`] does (see `docs/kvm.md`).
pub fn measure(cfg: &KvmKeepConfig) -> Result<[u8; 48], VmmError> {
    let img = image::build(&cfg.keep_elf, cfg.memory_bytes, &cfg.args, &cfg.env)?;
    let snap = image::snapshot(&img)?;
    Ok(image::measure(cfg.memory_bytes, &snap, &img.cpu))
}

/// The shim guest image embedded in this build (for inspection and size reports).
pub fn shim_image() -> &'static [u8] {
    image::SHIM_ELF
}

/// Starts a kvm Keep: builds and measures the image, creates the VM, and runs the vCPU
/// on its own thread.
pub fn launch(cfg: &KvmKeepConfig) -> Result<KvmKeep, VmmError> {
    let start = Instant::now();
    let img = image::build(&cfg.keep_elf, cfg.memory_bytes, &cfg.args, &cfg.env)?;
    let snap = image::snapshot(&img)?;
    let measurement = Arc::new(vcpu::Measurement::default());
    {
        let m = measurement.clone();
        let (mem_size, cpu) = (cfg.memory_bytes, img.cpu);
        std::thread::Builder::new()
            .name("ward-vmm-measure".into())
            .spawn(move || m.set(image::measure(mem_size, &snap, &cpu)))?;
    }
    let vm = vcpu::Vm::create(img)?;
    let (host, guest) = UnixStream::pair()?;
    let host_io = hostio::HostIo::new(cfg.resources.clone());
    let stop = Arc::new(vcpu::Stop::default());
    let timings = Arc::new(Mutex::new(Timings::default()));
    let thread = {
        let (stop, timings, measurement) = (stop.clone(), timings.clone(), measurement.clone());
        std::thread::Builder::new()
            .name("ward-vmm-vcpu".into())
            .spawn(move || vm.run(guest, host_io, &stop, start, &timings, &measurement))?
    };
    stop.arm(thread.thread().clone(), cfg.timeout);
    Ok(KvmKeep {
        channel: Some(host),
        thread: Some(thread),
        stop,
        timings,
        measurement,
    })
}

static SIGNAL_SET: AtomicBool = AtomicBool::new(false);

/// Installs the no-op signal handler used to kick a vCPU out of `KVM_RUN`.
fn ensure_kick_signal() {
    if SIGNAL_SET.swap(true, Ordering::SeqCst) {
        return;
    }
    extern "C" fn noop(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}
    // Failure only means a timeout cannot interrupt a running guest; it is reported then.
    let _ = vmm_sys_util::signal::register_signal_handler(vcpu::kick_signal(), noop);
}
