//! VM creation and the vCPU loop: doorbell requests, exceptions, shutdown, timeouts.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kvm_bindings::{
    kvm_msr_entry, kvm_segment, kvm_userspace_memory_region, Msrs, KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use ward_shim::abi::*;

use crate::hostio::HostIo;
use crate::image::Image;
use crate::{GuestExit, Registers, Timings, VmmError};

/// The real-time signal used to interrupt `KVM_RUN`.
pub(crate) fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN() + 3
}

/// The launch measurement, filled in by a background thread.
#[derive(Default)]
pub(crate) struct Measurement {
    value: Mutex<Option<[u8; 48]>>,
    ready: Condvar,
}

impl Measurement {
    pub(crate) fn set(&self, v: [u8; 48]) {
        *self.value.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
        self.ready.notify_all();
    }

    pub(crate) fn get(&self) -> [u8; 48] {
        let mut g = self.value.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(v) = *g {
                return v;
            }
            g = self.ready.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

const STOP_NONE: u8 = 0;
const STOP_TIMEOUT: u8 = 1;
const STOP_KILL: u8 = 2;

/// Stop requests for a vCPU thread (timeout or kill), and the kick that delivers them.
#[derive(Default)]
pub(crate) struct Stop {
    why: AtomicU8,
    done: AtomicBool,
    pthread: Mutex<Option<libc::pthread_t>>,
    finished: Mutex<bool>,
    finished_cv: Condvar,
}

impl Stop {
    /// Records the vCPU thread and starts the watchdog for `timeout`.
    pub(crate) fn arm(
        self: &std::sync::Arc<Self>,
        t: std::thread::Thread,
        timeout: Option<Duration>,
    ) {
        let _ = t;
        if let Some(timeout) = timeout {
            let me = self.clone();
            let _ = std::thread::Builder::new()
                .name("ward-vmm-watchdog".into())
                .spawn(move || {
                    let g = me.finished.lock().unwrap_or_else(|e| e.into_inner());
                    let (g, r) = me
                        .finished_cv
                        .wait_timeout_while(g, timeout, |f| !*f)
                        .unwrap_or_else(|e| e.into_inner());
                    drop(g);
                    if r.timed_out() {
                        me.request(true);
                    }
                });
        }
    }

    pub(crate) fn set_pthread(&self) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        *self.pthread.lock().unwrap_or_else(|e| e.into_inner()) = Some(me);
    }

    /// Asks the vCPU to stop, and kicks it out of KVM_RUN or a blocking read until it has.
    pub(crate) fn request(&self, timeout: bool) {
        let _ = self.why.compare_exchange(
            STOP_NONE,
            if timeout { STOP_TIMEOUT } else { STOP_KILL },
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        crate::ensure_kick_signal();
        for _ in 0..2000 {
            {
                let p = self.pthread.lock().unwrap_or_else(|e| e.into_inner());
                if self.done.load(Ordering::SeqCst) {
                    return;
                }
                if let Some(p) = *p {
                    // SAFETY: the vCPU thread is joinable and not yet joined (done is
                    // false and is set under this lock before it returns), so `p` is valid.
                    unsafe { libc::pthread_kill(p, kick_signal()) };
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub(crate) fn pending(&self) -> Option<GuestExit> {
        match self.why.load(Ordering::SeqCst) {
            STOP_TIMEOUT => Some(GuestExit::Timeout),
            STOP_KILL => Some(GuestExit::Killed),
            _ => None,
        }
    }

    fn finish(&self) {
        let _p = self.pthread.lock().unwrap_or_else(|e| e.into_inner());
        self.done.store(true, Ordering::SeqCst);
        *self.finished.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.finished_cv.notify_all();
    }
}

/// A created VM with its one vCPU, ready to run.
pub(crate) struct Vm {
    _kvm: Kvm,
    _vm: VmFd,
    vcpu: VcpuFd,
    mem: GuestMemoryMmap,
}

fn kvm_err(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> VmmError {
    move |e| VmmError::Kvm(what, e.to_string())
}

impl Vm {
    pub(crate) fn create(img: Image) -> Result<Self, VmmError> {
        let kvm = Kvm::new().map_err(|e| VmmError::KvmUnavailable(format!("/dev/kvm: {e}")))?;
        let vm = kvm.create_vm().map_err(kvm_err("CREATE_VM"))?;
        let size = img.mem.last_addr().0 + 1;
        let host = img
            .mem
            .get_host_address(GuestAddress(0))
            .map_err(|e| VmmError::Memory(e.to_string()))?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: size,
            userspace_addr: host as u64,
        };
        // SAFETY: the region is one live mmap of `size` bytes owned by `img.mem`, which
        // this Vm keeps alive for as long as the VM exists.
        unsafe { vm.set_user_memory_region(region) }.map_err(kvm_err("SET_USER_MEMORY_REGION"))?;
        let vcpu = vm.create_vcpu(0).map_err(kvm_err("CREATE_VCPU"))?;

        // CPUID as KVM supports it, minus XSAVE: the guest keeps to x87/SSE state, which
        // the shim saves with fxsave.
        let mut cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("GET_SUPPORTED_CPUID"))?;
        for e in cpuid.as_mut_slice() {
            if e.function == 1 {
                e.ecx &= !((1 << 26) | (1 << 27) | (1 << 28)); // XSAVE, OSXSAVE, AVX
            }
            if e.function == 7 && e.index == 0 {
                e.ebx &= !((1 << 5) | (1 << 16) | (1 << 17) | (1 << 28) | (1 << 30) | (1 << 31));
                // AVX2, AVX-512
            }
        }
        vcpu.set_cpuid2(&cpuid).map_err(kvm_err("SET_CPUID2"))?;

        let cpu = img.cpu;
        let mut sregs = vcpu.get_sregs().map_err(kvm_err("GET_SREGS"))?;
        let code = kvm_segment {
            base: 0,
            limit: 0xffff_ffff,
            selector: USER_CS,
            type_: 11,
            present: 1,
            dpl: 3,
            db: 0,
            s: 1,
            l: 1,
            g: 1,
            avl: 0,
            unusable: 0,
            padding: 0,
        };
        let data = kvm_segment {
            selector: USER_DS,
            type_: 3,
            db: 1,
            l: 0,
            ..code
        };
        sregs.cs = code;
        sregs.ds = data;
        sregs.es = data;
        sregs.fs = data;
        sregs.gs = data;
        sregs.ss = data;
        sregs.tr = kvm_segment {
            base: TSS,
            limit: (TSS_IOMAP_OFFSET + 8192) as u32,
            selector: TSS_SEL,
            type_: 11,
            present: 1,
            dpl: 0,
            db: 0,
            s: 0,
            l: 0,
            g: 0,
            avl: 0,
            unusable: 0,
            padding: 0,
        };
        sregs.gdt.base = GDT;
        sregs.gdt.limit = 7 * 8 - 1;
        sregs.idt.base = IDT;
        sregs.idt.limit = (EXCEPTION_VECTORS * 16 - 1) as u16;
        sregs.cr0 = cpu.cr0;
        sregs.cr3 = cpu.cr3;
        sregs.cr4 = cpu.cr4;
        sregs.efer = cpu.efer;
        vcpu.set_sregs(&sregs).map_err(kvm_err("SET_SREGS"))?;

        let msrs = Msrs::from_entries(&[
            kvm_msr_entry {
                index: 0xc000_0081,
                data: cpu.star,
                ..Default::default()
            },
            kvm_msr_entry {
                index: 0xc000_0082,
                data: cpu.lstar,
                ..Default::default()
            },
            kvm_msr_entry {
                index: 0xc000_0084,
                data: cpu.sfmask,
                ..Default::default()
            },
        ])
        .map_err(|e| VmmError::Kvm("MSR list", e.to_string()))?;
        let n = vcpu.set_msrs(&msrs).map_err(kvm_err("SET_MSRS"))?;
        if n != 3 {
            return Err(VmmError::Kvm("SET_MSRS", format!("only {n} of 3 MSRs set")));
        }
        let mut fpu = vcpu.get_fpu().map_err(kvm_err("GET_FPU"))?;
        fpu.fcw = 0x37f;
        fpu.mxcsr = 0x1f80;
        vcpu.set_fpu(&fpu).map_err(kvm_err("SET_FPU"))?;
        let mut regs = vcpu.get_regs().map_err(kvm_err("GET_REGS"))?;
        regs = kvm_bindings::kvm_regs {
            rip: cpu.rip,
            rflags: cpu.rflags,
            ..regs
        };
        regs.rsp = 0;
        vcpu.set_regs(&regs).map_err(kvm_err("SET_REGS"))?;

        // Unmeasured launch info: the TSC frequency (the shim range-checks it).
        let tsc_khz = match vcpu.get_tsc_khz() {
            Ok(k) if k > 0 => k as u64,
            _ => host_tsc_khz(),
        };
        let mut li = Vec::new();
        li.extend_from_slice(&LAUNCH_MAGIC.to_le_bytes());
        li.extend_from_slice(&tsc_khz.to_le_bytes());
        img.mem
            .write_slice(&li, GuestAddress(LAUNCH_INFO))
            .map_err(|e| VmmError::Memory(e.to_string()))?;
        Ok(Self {
            _kvm: kvm,
            _vm: vm,
            vcpu,
            mem: img.mem,
        })
    }

    /// Runs the guest to its end.
    pub(crate) fn run(
        mut self,
        mut channel: UnixStream,
        mut host: HostIo,
        stop: &Stop,
        start: Instant,
        timings: &Mutex<Timings>,
        measurement: &crate::vcpu::Measurement,
    ) -> Result<GuestExit, VmmError> {
        stop.set_pthread();
        crate::ensure_kick_signal();
        let r = self.run_loop(&mut channel, &mut host, stop, start, timings, measurement);
        stop.finish();
        r
    }

    fn run_loop(
        &mut self,
        channel: &mut UnixStream,
        host: &mut HostIo,
        stop: &Stop,
        start: Instant,
        timings: &Mutex<Timings>,
        measurement: &Measurement,
    ) -> Result<GuestExit, VmmError> {
        let mono0 = Instant::now();
        loop {
            if let Some(exit) = stop.pending() {
                return Ok(exit);
            }
            let port = match self.vcpu.run() {
                Ok(VcpuExit::IoOut(port, _)) => port,
                Ok(VcpuExit::Shutdown) => {
                    return Ok(GuestExit::TripleFault {
                        regs: self.registers(),
                    })
                }
                Ok(VcpuExit::Hlt) => return Ok(self.crashed("the guest halted")),
                Ok(VcpuExit::InternalError) => {
                    let sub = self.vcpu.get_kvm_run().__bindgen_anon_1;
                    // SAFETY: on KVM_EXIT_INTERNAL_ERROR the union holds `internal`.
                    let suberror = unsafe { sub.internal.suberror };
                    let what = if suberror == 1 {
                        " (emulation failure)"
                    } else {
                        ""
                    };
                    return Ok(
                        self.crashed(&format!("KVM internal error, suberror {suberror}{what}"))
                    );
                }
                Ok(other) => {
                    let s = format!("unexpected KVM exit {other:?}");
                    return Ok(self.crashed(&s));
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
                Err(e) => return Err(VmmError::Kvm("RUN", e.to_string())),
            };
            match port {
                BOOT_PORT => {
                    let mut t = timings.lock().unwrap_or_else(|e| e.into_inner());
                    t.first_user_instruction.get_or_insert(start.elapsed());
                }
                DOORBELL_PORT => {
                    if let Some(exit) = self.doorbell(channel, host, stop, mono0, measurement)? {
                        return Ok(exit);
                    }
                }
                p if (EXCEPTION_PORT_BASE..EXCEPTION_PORT_BASE + EXCEPTION_VECTORS as u16)
                    .contains(&p) =>
                {
                    return Ok(self.fault((p - EXCEPTION_PORT_BASE) as u8));
                }
                p => return Ok(self.crashed(&format!("write to unexpected I/O port {p:#x}"))),
            }
        }
    }

    fn registers(&self) -> Registers {
        let r = self.vcpu.get_regs().unwrap_or_default();
        let s = self.vcpu.get_sregs().unwrap_or_default();
        Registers {
            rip: r.rip,
            rsp: r.rsp,
            rflags: r.rflags,
            gpr: [
                r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12,
                r.r13, r.r14, r.r15,
            ],
            cs: s.cs.selector as u64,
            cr2: s.cr2,
        }
    }

    fn crashed(&self, reason: &str) -> GuestExit {
        GuestExit::Crashed {
            reason: reason.to_string(),
            regs: self.registers(),
        }
    }

    fn read_u64(&self, gpa: u64) -> u64 {
        self.mem.read_obj::<u64>(GuestAddress(gpa)).unwrap_or(0)
    }

    /// An exception stub ran: the CPU pushed the interrupted context on the IST1 stack.
    fn fault(&self, vector: u8) -> GuestExit {
        let mut regs = self.registers();
        let has_code = matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30);
        let mut sp = regs.rsp;
        let error_code = if has_code {
            sp += 8;
            self.read_u64(sp - 8)
        } else {
            0
        };
        regs.rip = self.read_u64(sp);
        regs.cs = self.read_u64(sp + 8);
        regs.rflags = self.read_u64(sp + 16);
        regs.rsp = self.read_u64(sp + 24);
        GuestExit::Fault {
            vector,
            error_code,
            regs,
        }
    }

    fn doorbell(
        &mut self,
        channel: &mut UnixStream,
        host: &mut HostIo,
        stop: &Stop,
        mono0: Instant,
        measurement: &Measurement,
    ) -> Result<Option<GuestExit>, VmmError> {
        let mem = &self.mem;
        let mut hdr = [0u8; 40];
        mem.read_slice(&mut hdr, GuestAddress(SHARED))
            .map_err(|e| VmmError::Memory(e.to_string()))?;
        let w = |i: usize| u64::from_le_bytes(hdr[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        let req = Request {
            op: w(0),
            a0: w(1),
            a1: w(2),
            a2: w(3),
            ret: 0,
        };
        let data = GuestAddress(SHARED_DATA);
        let ret: i64 = match req.op {
            OP_WRITE => {
                let len = req.a1.min(SHARED_DATA_LEN) as usize;
                let mut buf = vec![0u8; len];
                mem.read_slice(&mut buf, data)
                    .map_err(|e| VmmError::Memory(e.to_string()))?;
                match req.a0 {
                    1 | 2 => {
                        let _ = std::io::stderr().write_all(&buf);
                        len as i64
                    }
                    3 => match channel.write_all(&buf) {
                        Ok(()) => len as i64,
                        Err(_) => -EPIPE,
                    },
                    _ => -EBADF,
                }
            }
            OP_READ => {
                if req.a0 != 3 {
                    -EBADF
                } else {
                    let max = req.a1.min(SHARED_DATA_LEN) as usize;
                    match wait_readable(channel, req.a2, stop) {
                        Readable::Yes => {
                            let mut buf = vec![0u8; max];
                            match channel.read(&mut buf) {
                                Ok(n) => {
                                    mem.write_slice(&buf[..n], data)
                                        .map_err(|e| VmmError::Memory(e.to_string()))?;
                                    n as i64
                                }
                                Err(_) => -EIO,
                            }
                        }
                        Readable::TimedOut => -EAGAIN,
                        Readable::Stopped => return Ok(stop.pending()),
                    }
                }
            }
            OP_EXIT => return Ok(Some(GuestExit::Exited(req.a0 as i32))),
            OP_FATAL => {
                return Ok(Some(match req.a0 {
                    FATAL_UNSUPPORTED_SYSCALL => GuestExit::UnsupportedSyscall { nr: req.a1 },
                    FATAL_OUT_OF_MEMORY => GuestExit::OutOfMemory { requested: req.a1 },
                    FATAL_ABORT => GuestExit::Aborted { signal: req.a1 },
                    FATAL_DEADLOCK => GuestExit::Deadlock,
                    _ => {
                        let len = req.a1.min(SHARED_DATA_LEN) as usize;
                        let mut buf = vec![0u8; len];
                        let _ = mem.read_slice(&mut buf, data);
                        let msg = if len == 0 {
                            format!("shim error {}", req.a2)
                        } else {
                            String::from_utf8_lossy(&buf).into_owned()
                        };
                        self.crashed(&msg)
                    }
                }));
            }
            OP_TIME => {
                let real = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                let mono = mono0.elapsed().as_nanos() as u64 + 1_000_000_000;
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&real.to_le_bytes());
                b[8..].copy_from_slice(&mono.to_le_bytes());
                mem.write_slice(&b, data)
                    .map_err(|e| VmmError::Memory(e.to_string()))?;
                16
            }
            OP_MEASUREMENT => {
                mem.write_slice(&measurement.get(), data)
                    .map_err(|e| VmmError::Memory(e.to_string()))?;
                48
            }
            OP_IDLE => match wait_readable(channel, req.a0, stop) {
                Readable::Stopped => return Ok(stop.pending()),
                _ => 0,
            },
            OP_HOST => host.call(mem, req.a0),
            OP_POLL => match host.poll(mem, req.a0, req.a1, channel, stop) {
                Ok(r) => r,
                Err(()) => return Ok(stop.pending()),
            },
            _ => -EINVAL,
        };
        mem.write_obj(ret, GuestAddress(SHARED + 32))
            .map_err(|e| VmmError::Memory(e.to_string()))?;
        Ok(None)
    }
}

enum Readable {
    Yes,
    TimedOut,
    Stopped,
}

/// Waits up to `timeout_ns` (`u64::MAX`: forever) for the channel to be readable (or
/// closed), waking for stop requests.
fn wait_readable(channel: &UnixStream, timeout_ns: u64, stop: &Stop) -> Readable {
    let deadline = Instant::now().checked_add(Duration::from_nanos(timeout_ns));
    loop {
        if stop.pending().is_some() {
            return Readable::Stopped;
        }
        let left = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => Duration::from_millis(100),
        };
        let ms = left.as_millis().min(100) as i32;
        let ms = if ms == 0 && !left.is_zero() { 1 } else { ms };
        let mut pfd = libc::pollfd {
            fd: channel.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r > 0 {
            return Readable::Yes;
        }
        if r == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
            return Readable::TimedOut;
        }
    }
}

/// The host TSC frequency, measured once against the monotonic clock (for hosts where
/// KVM_GET_TSC_KHZ is unavailable; guest and host TSCs tick at the same rate).
fn host_tsc_khz() -> u64 {
    static KHZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *KHZ.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: rdtsc has no preconditions.
            let t0 = unsafe { core::arch::x86_64::_rdtsc() };
            let i0 = Instant::now();
            std::thread::sleep(Duration::from_millis(10));
            // SAFETY: as above.
            let t1 = unsafe { core::arch::x86_64::_rdtsc() };
            let ns = i0.elapsed().as_nanos() as u64;
            (t1.wrapping_sub(t0)).saturating_mul(1_000_000) / ns.max(1)
        }
        #[cfg(not(target_arch = "x86_64"))]
        0
    })
}
