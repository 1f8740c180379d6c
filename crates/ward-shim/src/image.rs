//! The guest image: ring-0 trampolines, the CPL-3 system-call layer, threads.
//!
//! Why CPL 3: on this project's reference host, guest ring-0 code is emulated one
//! instruction at a time, so the ring-0 part is only the `syscall` trampoline (4
//! instructions, no FPU/SSE state instructions) and one `out` per exception vector. The
//! trampoline returns with `sysret` to [`ward_user_syscall`], which saves the caller's
//! registers and x87/SSE state (`fxsave64`, natively at CPL 3) on a per-thread shim
//! stack and serves the call in Rust. Both the shim and `ward-keep` are in the measured
//! TCB, so running the syscall layer at CPL 3 moves no trust boundary.

use core::arch::{asm, global_asm};
use core::ptr::{read_volatile, write_volatile};

use crate::abi::*;
use crate::mm::Ranges;

#[path = "hostio.rs"]
mod hostio;

/// Shim stack bytes per thread.
const STACK: usize = 32 * 1024;
/// Most guest threads alive at once.
const MAX_THREADS: usize = 32;

#[repr(C, align(16))]
struct Stacks([[u8; STACK]; MAX_THREADS]);

static mut STACKS: Stacks = Stacks([[0; STACK]; MAX_THREADS]);
/// Top of the running thread's shim stack; read by `ward_user_syscall`.
#[no_mangle]
static mut WARD_SHIM_STACK_TOP: u64 = 0;

global_asm!(
    r#"
    .section .text.ring0, "ax"
    .global ward_syscall_entry
ward_syscall_entry:
    lea rsp, [rsp - 128]
    push rcx
    push 0x1b
    lea rcx, [rsp + 8]
    push rcx
    push r11
    push 0x23
    lea rcx, [rip + ward_user_syscall]
    push rcx
    iretq
    .balign 64, 0xf4
    .set vec, 0
    .rept 32
    .byte 0xe6, 0xc0 + vec
2:  hlt
    jmp 2b
    .balign 8, 0xf4
    .set vec, vec + 1
    .endr

    .text
    .global ward_user_syscall
ward_user_syscall:
    push r11
    mov r11, rsp
    mov rsp, [rip + WARD_SHIM_STACK_TOP]
    push r11
    push r15
    push r14
    push r13
    push r12
    push rbp
    push rbx
    push r9
    push r8
    push r10
    push rdx
    push rsi
    push rdi
    push rax
    sub rsp, 512
    fxsave64 [rsp]
    cld
    lea rdi, [rsp + 512]
    call {dispatch}
    .global ward_syscall_return
ward_syscall_return:
    fxrstor64 [rsp]
    add rsp, 512
    pop rax
    pop rdi
    pop rsi
    pop rdx
    pop r10
    pop r8
    pop r9
    pop rbx
    pop rbp
    pop r12
    pop r13
    pop r14
    pop r15
    pop rsp
    popfq
    ret 128

    .global ward_switch
ward_switch:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    mov [rdi], rsp
    mov rsp, rsi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret

    .global ward_enter_user
ward_enter_user:
    mov rsp, rsi
    mov rcx, rdi
    xor eax, eax
    xor ebx, ebx
    xor edx, edx
    xor esi, esi
    xor edi, edi
    xor ebp, ebp
    xor r8d, r8d
    xor r9d, r9d
    xor r10d, r10d
    xor r11d, r11d
    xor r12d, r12d
    xor r13d, r13d
    xor r14d, r14d
    xor r15d, r15d
    jmp rcx

    .global _start
_start:
    out 0xf5, al
    lea rsp, [rip + {stacks} + {stack}]
    call {main}
    ud2
"#,
    dispatch = sym syscall_dispatch,
    stacks = sym STACKS,
    stack = const STACK,
    main = sym shim_main,
);

extern "C" {
    fn ward_switch(save: *mut u64, to: u64);
    fn ward_enter_user(entry: u64, sp: u64) -> !;
    fn ward_syscall_return();
}

/// The caller's registers, as `ward_user_syscall` pushed them.
#[repr(C)]
#[derive(Clone, Copy)]
struct Frame {
    rax: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    r10: u64,
    r8: u64,
    r9: u64,
    rbx: u64,
    rbp: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
    /// Caller's stack pointer minus 144: [rflags][rip][128-byte red zone].
    usp: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    Runnable,
    Blocked,
}

#[derive(Clone, Copy)]
struct Thread {
    state: State,
    tid: i32,
    sp: u64,
    fsbase: u64,
    clear_tid: u64,
    wait_addr: u64,
    deadline: u64,
    timed_out: bool,
    /// Waiting for this host handle (or [`HANDLE_CHANNEL`]) when `io_events != 0`.
    io_handle: u32,
    io_events: u16,
}

const NO_THREAD: Thread = Thread {
    state: State::Free,
    tid: 0,
    sp: 0,
    fsbase: 0,
    clear_tid: 0,
    wait_addr: 0,
    deadline: u64::MAX,
    timed_out: false,
    io_handle: 0,
    io_events: 0,
};

struct Shim {
    threads: [Thread; MAX_THREADS],
    cur: usize,
    next_tid: i32,
    /// Free memory that has never been handed out: still zero, and (on this host)
    /// never touched, which matters because a first touch costs a shadow-paging fault.
    ranges: Ranges,
    /// Free memory that was handed out and returned: must be zeroed before reuse.
    dirty: Ranges,
    brk_start: u64,
    brk_cur: u64,
    brk_end: u64,
    mem_top: u64,
    tsc_khz: u64,
    tsc0: u64,
    mono0: u64,
    real0: u64,
    oom: u64,
    measurement_fd_pos: Option<usize>,
    /// What each guest fd is (`FD_*`).
    fds: [u8; MAX_FDS],
    /// The VMM handle of each `FD_HOST` fd.
    handles: [u32; MAX_FDS],
    /// Whether each `FD_HOST` fd is non-blocking (the host side always is).
    nonblock: [bool; MAX_FDS],
    /// When the scheduler last polled the host for waiting threads (monotonic ns).
    last_poll: u64,
}

static mut SHIM: Shim = Shim {
    threads: [NO_THREAD; MAX_THREADS],
    cur: 0,
    next_tid: 2,
    ranges: Ranges::new(),
    dirty: Ranges::new(),
    brk_start: 0,
    brk_cur: 0,
    brk_end: 0,
    mem_top: 0,
    tsc_khz: 0,
    tsc0: 0,
    mono0: 0,
    real0: 0,
    oom: 0,
    measurement_fd_pos: None,
    fds: {
        let mut f = [FD_FREE; MAX_FDS];
        f[0] = FD_STDIN;
        f[1] = FD_DIAG;
        f[2] = FD_DIAG;
        f[3] = FD_CHANNEL;
        f
    },
    handles: [0; MAX_FDS],
    nonblock: [false; MAX_FDS],
    last_poll: 0,
};

const MAX_FDS: usize = 256;
const FD_FREE: u8 = 0;
const FD_STDIN: u8 = 1;
const FD_DIAG: u8 = 2;
const FD_CHANNEL: u8 = 3;
const FD_MEASUREMENT: u8 = 4;
const FD_RANDOM: u8 = 5;
/// A host file or socket (see `hostio`).
const FD_HOST: u8 = 6;

/// The kind of guest fd `fd`, `FD_FREE` if not open.
fn fd_kind(fd: u64) -> u8 {
    if fd < MAX_FDS as u64 {
        shim().fds[fd as usize]
    } else {
        FD_FREE
    }
}

/// Opens the lowest free fd >= `min` as `kind`.
fn fd_alloc(min: u64, kind: u8) -> i64 {
    let s = shim();
    for i in (min as usize)..MAX_FDS {
        if s.fds[i] == FD_FREE {
            s.fds[i] = kind;
            return i as i64;
        }
    }
    -24 // EMFILE
}

fn sys_close(fd: u64) -> i64 {
    if hostio::is_host(fd) {
        return hostio::close(fd);
    }
    if fd_kind(fd) == FD_FREE {
        return -EBADF;
    }
    shim().fds[fd as usize] = FD_FREE;
    0
}

fn sys_dup(fd: u64, min: u64) -> i64 {
    if hostio::is_host(fd) {
        return hostio::dup(fd, min, None);
    }
    match fd_kind(fd) {
        FD_FREE => -EBADF,
        k => fd_alloc(min, k),
    }
}

fn sys_dup2(fd: u64, to: u64) -> i64 {
    let k = fd_kind(fd);
    if k == FD_FREE || to >= MAX_FDS as u64 {
        return -EBADF;
    }
    if fd == to {
        return to as i64;
    }
    if hostio::is_host(to) {
        hostio::close(to);
    }
    if k == FD_HOST {
        return hostio::dup(fd, 0, Some(to));
    }
    shim().fds[to as usize] = k;
    to as i64
}

fn shim() -> &'static mut Shim {
    // SAFETY: the guest has one vCPU and takes no interrupts, so exactly one flow of
    // control runs shim code at a time; callers never keep this reference across a
    // thread switch (they call `shim()` again afterwards).
    unsafe { &mut *(&raw mut SHIM) }
}

fn boot_info() -> &'static BootInfo {
    // SAFETY: the VMM wrote a BootInfo at this fixed, measured, identity-mapped address
    // before launch; nothing writes it afterwards.
    unsafe { &*(BOOT_INFO as *const BootInfo) }
}

// ---- memory primitives (no libc here) ----

#[no_mangle]
unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges are valid and do not overlap.
    unsafe {
        asm!("rep movsb", inout("rdi") dst => _, inout("rsi") src => _, inout("rcx") n => _,
             options(nostack, preserves_flags));
    }
    dst
}

#[no_mangle]
unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: forward copy is correct when dst does not start inside src.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: backwards copy with DF set, restored right after; ranges valid per caller.
    unsafe {
        asm!("std", "rep movsb", "cld",
             inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
             inout("rcx") n => _, options(nostack));
    }
    dst
}

#[no_mangle]
unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range is valid.
    unsafe {
        asm!("rep stosb", inout("rdi") dst => _, inout("rcx") n => _, in("al") c as u8,
             options(nostack, preserves_flags));
    }
    dst
}

#[no_mangle]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: the caller guarantees both ranges hold n bytes.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return x as i32 - y as i32;
        }
    }
    0
}

#[no_mangle]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// Never called: the image is built with `panic=abort`, but the precompiled `core`
/// still names the symbol.
#[no_mangle]
extern "C" fn rust_eh_personality() {}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let mut w = MsgWriter { len: 0 };
    let _ = core::fmt::write(&mut w, format_args!("shim panic: {info}"));
    fatal(FATAL_SHIM, w.len as u64, 0)
}

struct MsgWriter {
    len: usize,
}

impl core::fmt::Write for MsgWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = (SHARED_DATA_LEN as usize).saturating_sub(self.len);
        let n = s.len().min(room);
        // SAFETY: the shared data area is SHARED_DATA_LEN bytes, and len + n stays inside.
        unsafe { memcpy((SHARED_DATA as *mut u8).add(self.len), s.as_ptr(), n) };
        self.len += n;
        Ok(())
    }
}

// ---- the host channel ----

fn host_call(op: u64, a0: u64, a1: u64, a2: u64) -> i64 {
    let r = SHARED as *mut Request;
    // SAFETY: SHARED is the identity-mapped shared block; the `out` below is the only
    // point where the host reads or writes it, and asm! without `nomem` orders the
    // volatile accesses around it.
    unsafe {
        write_volatile(&raw mut (*r).op, op);
        write_volatile(&raw mut (*r).a0, a0);
        write_volatile(&raw mut (*r).a1, a1);
        write_volatile(&raw mut (*r).a2, a2);
        write_volatile(&raw mut (*r).ret, -EIO);
        asm!("out 0xf4, al", in("al") 0u8, options(nostack, preserves_flags));
        read_volatile(&raw const (*r).ret)
    }
}

/// A host result that must be a count in `0..=max` or a small negated errno.
fn host_count(ret: i64, max: u64) -> Result<u64, i64> {
    if ret < 0 {
        if ret >= -4095 {
            Err(ret)
        } else {
            Err(-EIO)
        }
    } else if ret as u64 > max {
        Err(-EIO)
    } else {
        Ok(ret as u64)
    }
}

fn fatal(kind: u64, a1: u64, a2: u64) -> ! {
    loop {
        host_call(OP_FATAL, kind, a1, a2);
    }
}

fn exit_guest(code: u64) -> ! {
    loop {
        host_call(OP_EXIT, code, 0, 0);
    }
}

// ---- time ----

fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc only reads the time-stamp counter (CR4.TSD is clear).
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    ((hi as u64) << 32) | lo as u64
}

fn host_time() -> (u64, u64) {
    let r = host_call(OP_TIME, 0, 0, 0);
    if r != 16 {
        return (0, 0);
    }
    // SAFETY: the host filled 16 bytes of the shared data area (checked by `r`).
    unsafe {
        (
            read_volatile(SHARED_DATA as *const u64),
            read_volatile((SHARED_DATA + 8) as *const u64),
        )
    }
}

/// Monotonic nanoseconds. From the TSC when the host gave a plausible frequency.
fn mono_ns() -> u64 {
    let s = shim();
    if s.tsc_khz == 0 {
        return host_time().1;
    }
    let d = rdtsc().wrapping_sub(s.tsc0) as u128;
    s.mono0 + (d * 1_000_000 / s.tsc_khz as u128) as u64
}

fn real_ns() -> u64 {
    let s = shim();
    if s.tsc_khz == 0 {
        return host_time().0;
    }
    s.real0 + (mono_ns() - s.mono0)
}

// ---- boot ----

extern "C" fn shim_main() -> ! {
    let bi = *boot_info();
    if bi.magic != BOOT_MAGIC {
        fatal(FATAL_SHIM, 0, 1);
    }
    let s = shim();
    let stacks = (&raw mut STACKS) as u64;
    s.threads[0] = Thread {
        state: State::Runnable,
        tid: 1,
        sp: 0,
        ..NO_THREAD
    };
    // SAFETY: single flow of control (see `shim`).
    unsafe { WARD_SHIM_STACK_TOP = stacks + STACK as u64 };

    // Time: the host's TSC frequency is used only if plausible (100 MHz .. 10 GHz).
    // SAFETY: LAUNCH_INFO is an identity-mapped page the VMM fills before launch.
    let li = unsafe { read_volatile(LAUNCH_INFO as *const LaunchInfo) };
    let (real, mono) = host_time();
    s.tsc0 = rdtsc();
    s.real0 = real;
    s.mono0 = mono;
    if li.magic == LAUNCH_MAGIC && (100_000..=10_000_000).contains(&li.tsc_khz) {
        s.tsc_khz = li.tsc_khz;
    }

    // Memory: [keep_end, +brk) for brk, then the mmap pool, then the main stack.
    let mem = bi.mem_size & !(PAGE - 1);
    let stack_size: u64 = if mem >= (256 << 20) { 8 << 20 } else { 1 << 20 };
    let brk_size: u64 = (mem / 16).clamp(1 << 20, 64 << 20) & !(PAGE - 1);
    s.mem_top = mem;
    s.brk_start = bi.keep_end;
    s.brk_cur = bi.keep_end;
    s.brk_end = bi.keep_end + brk_size;
    let stack_lo = mem - stack_size;
    if s.brk_end >= stack_lo {
        fatal(FATAL_OUT_OF_MEMORY, bi.keep_end + brk_size + stack_size, 0);
    }
    s.ranges.init(s.brk_end, stack_lo);
    s.dirty.init(s.brk_end, stack_lo);
    s.dirty.take_fixed(s.brk_end, stack_lo - s.brk_end);

    let sp = build_user_stack(&bi, mem);
    // SAFETY: the entry point and stack were set up above from the measured boot info.
    unsafe { ward_enter_user(bi.keep_entry, sp) }
}

fn rdrand() -> u64 {
    let mut v: u64;
    let mut ok: u8;
    for _ in 0..64 {
        // SAFETY: rdrand has no memory effects; CF reports success.
        unsafe {
            asm!("rdrand {v}", "setc {ok}", v = out(reg) v, ok = out(reg_byte) ok, options(nomem, nostack))
        };
        if ok != 0 {
            return v;
        }
    }
    fatal(FATAL_SHIM, 0, 2)
}

/// Writes argv, envp and auxv at the top of memory, Linux style. Returns the stack pointer.
fn build_user_stack(bi: &BootInfo, top: u64) -> u64 {
    let mut p = top;
    let mut push_bytes = |bytes: &[u8]| -> u64 {
        p -= bytes.len() as u64;
        // SAFETY: [p, p+len) is inside the main-thread stack at the top of guest memory.
        unsafe { memcpy(p as *mut u8, bytes.as_ptr(), bytes.len()) };
        p
    };
    let random = push_bytes(&[rdrand().to_le_bytes(), rdrand().to_le_bytes()].concat_16());
    let platform = push_bytes(b"x86_64\0");
    let n = bi.argc + bi.envc;
    let mut ptrs = [0u64; 64];
    let mut off = 0usize;
    let mut count = 0usize;
    while (count as u64) < n && count < ptrs.len() && off < BOOT_STRINGS {
        let end = bi.strings[off..]
            .iter()
            .position(|&b| b == 0)
            .map(|e| off + e);
        let Some(end) = end else { break };
        ptrs[count] = push_bytes(&bi.strings[off..=end]);
        off = end + 1;
        count += 1;
    }
    let argc = (bi.argc as usize).min(count);
    let execfn = if argc > 0 { ptrs[0] } else { platform };
    p &= !15;
    let auxv: [(u64, u64); 18] = [
        (3, bi.keep_phdr),
        (4, 56),
        (5, bi.keep_phnum),
        (6, PAGE),
        (7, 0),
        (8, 0),
        (9, bi.keep_entry),
        (11, 0),
        (12, 0),
        (13, 0),
        (14, 0),
        (15, platform),
        (16, 0),
        (17, 100),
        (23, 0),
        (25, random),
        (31, execfn),
        (0, 0),
    ];
    let words = 1 + argc + 1 + (count - argc) + 1 + auxv.len() * 2;
    p -= (words as u64) * 8;
    p &= !15;
    let mut w = p;
    let mut put = |v: u64| {
        // SAFETY: [p, p + words*8) was reserved above, inside the stack.
        unsafe { write_volatile(w as *mut u64, v) };
        w += 8;
    };
    put(argc as u64);
    for &a in &ptrs[..argc] {
        put(a);
    }
    put(0);
    for &e in &ptrs[argc..count] {
        put(e);
    }
    put(0);
    for (k, v) in auxv {
        put(k);
        put(v);
    }
    p
}

trait Concat16 {
    fn concat_16(&self) -> [u8; 16];
}
impl Concat16 for [[u8; 8]; 2] {
    fn concat_16(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self[0]);
        out[8..].copy_from_slice(&self[1]);
        out
    }
}

// ---- system calls ----

const ENOENT: i64 = 2;
const ESRCH: i64 = 3;
const EFAULT: i64 = 14;
const ENOMEM: i64 = 12;
const ENODEV: i64 = 19;
const ENOTTY: i64 = 25;
const ESPIPE: i64 = 29;
const ENOSYS: i64 = 38;
const ETIMEDOUT: i64 = 110;

/// Whether `[ptr, ptr+len)` is guest memory a user pointer may name.
fn user_ok(ptr: u64, len: u64) -> bool {
    match ptr.checked_add(len) {
        Some(end) => ptr >= PAGE && end <= shim().mem_top,
        None => false,
    }
}

fn user_slice<'a>(ptr: u64, len: u64) -> Option<&'a mut [u8]> {
    if len == 0 {
        return Some(&mut []);
    }
    if !user_ok(ptr, len) {
        return None;
    }
    // SAFETY: the range is inside identity-mapped guest memory (checked above); the
    // calling thread owns it for the duration of the call, per the syscall contract.
    Some(unsafe { core::slice::from_raw_parts_mut(ptr as *mut u8, len as usize) })
}

fn put_u64(ptr: u64, v: u64) -> bool {
    match user_slice(ptr, 8) {
        Some(s) => {
            s.copy_from_slice(&v.to_le_bytes());
            true
        }
        None => false,
    }
}

fn get_u64(ptr: u64) -> Option<u64> {
    user_slice(ptr, 8).map(|s| u64::from_le_bytes(s[..8].try_into().unwrap_or([0; 8])))
}

fn get_u32(ptr: u64) -> Option<u32> {
    user_slice(ptr, 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

extern "C" fn syscall_dispatch(f: &mut Frame) {
    let (a0, a1, a2, a3, a4) = (f.rdi, f.rsi, f.rdx, f.r10, f.r8);
    let nr = f.rax;
    let ret: i64 = match nr {
        0 => sys_read(a0, a1, a2),
        1 => sys_write(a0, a1, a2),
        2 => sys_openat(AT_FDCWD, a0, a1, a2),          // open
        3 => sys_close(a0),                             // close
        4 => sys_newfstatat(AT_FDCWD, a0, a1, 0),       // stat
        6 => sys_newfstatat(AT_FDCWD, a0, a1, 0x100),   // lstat
        21 => -ENOENT,                                  // access
        89 => hostio::readlinkat(AT_FDCWD, a0, a1, a2), // readlink
        5 => sys_fstat(a0, a1),                         // fstat
        7 => sys_poll(a0, a1, a2),                      // poll
        8 if hostio::is_host(a0) => hostio::lseek(a0, a1, a2), // lseek
        17 => sys_pread(a0, a1, a2, a3, 17),            // pread64
        18 => sys_pread(a0, a1, a2, a3, 18),            // pwrite64
        8 => -ESPIPE,                                   // lseek
        9 => sys_mmap(a0, a1, a2, a3, a4),              // mmap
        10 => mprotect(a0, a1),                         // mprotect (not enforced)
        11 => sys_munmap(a0, a1),                       // munmap
        12 => sys_brk(a0),                              // brk
        13 => sig_zero(a2, 32),                         // rt_sigaction
        14 => sig_zero(a2, 8),                          // rt_sigprocmask
        16 if hostio::is_host(a0) => hostio::ioctl(a0, a1, a2), // ioctl
        16 => -ENOTTY,                                  // ioctl
        19 => sys_readv(a0, a1, a2),                    // readv
        20 => sys_writev(a0, a1, a2),                   // writev
        24 => sched_yield(),                            // sched_yield
        25 => -ENOMEM,                                  // mremap: callers fall back to copying
        28 => sys_madvise(a0, a1, a2),                  // madvise
        35 => sys_nanosleep(a0),                        // nanosleep
        39 | 110 => 1,                                  // getpid, getppid
        56 => sys_clone(f),                             // clone
        60 => sys_exit_thread(a0),                      // exit
        62 | 200 => sys_kill(a1),                       // kill, tkill
        63 => sys_uname(a0),                            // uname
        44 if hostio::is_host(a0) => hostio::sendto(a0, a1, a2, a3, a4),
        45 if hostio::is_host(a0) => hostio::recvfrom(a0, a1, a2, a3, a4, f.r9),
        48 if hostio::is_host(a0) => hostio::shutdown(a0, a1),
        44 => sys_write(a0, a1, a2), // sendto (connected: address ignored)
        45 => sys_read(a0, a1, a2),  // recvfrom
        48 => 0,                     // shutdown
        41 => hostio::socket(a0, a1, a2), // socket
        42 | 49 => hostio::bind_connect(nr, a0, a1, a2), // connect, bind
        43 => hostio::accept(a0, a1, a2, 0), // accept
        288 => hostio::accept(a0, a1, a2, a3), // accept4
        50 => hostio::listen(a0, a1), // listen
        51 | 52 => hostio::sockname(nr, a0, a1, a2), // getsockname, getpeername
        54 | 55 => hostio::sockopt(nr, a0, a1, a2, a3, a4), // setsockopt, getsockopt
        74 | 75 => hostio::simple(a0, nr, &[]), // fsync, fdatasync
        77 => hostio::simple(a0, 77, &[a1]), // ftruncate
        221 => hostio::simple(a0, 221, &[a1, a2, a3]), // fadvise64
        217 => hostio::getdents(a0, a1, a2), // getdents64
        295 => sys_preadv(a0, a1, a2, a3, 17), // preadv
        296 => sys_preadv(a0, a1, a2, a3, 18), // pwritev
        83 => hostio::path_op(258, AT_FDCWD, a0, a1), // mkdir
        258 => hostio::path_op(258, a0, a1, a2), // mkdirat
        84 => hostio::path_op(263, AT_FDCWD, a0, 0x200), // rmdir
        87 => hostio::path_op(263, AT_FDCWD, a0, 0), // unlink
        263 => hostio::path_op(263, a0, a1, a2), // unlinkat
        82 => hostio::two_paths(316, AT_FDCWD, a0, AT_FDCWD, a1, 0), // rename
        264 => hostio::two_paths(316, a0, a1, a2, a3, 0), // renameat
        316 => hostio::two_paths(316, a0, a1, a2, a3, a4), // renameat2
        86 => hostio::two_paths(265, AT_FDCWD, a0, AT_FDCWD, a1, 0), // link
        265 if a4 == 0 => hostio::two_paths(265, a0, a1, a2, a3, 0), // linkat
        265 => -EINVAL,              // linkat with flags
        88 => hostio::symlinkat(a0, AT_FDCWD, a1), // symlink
        266 => hostio::symlinkat(a0, a1, a2), // symlinkat
        267 => hostio::readlinkat(a0, a1, a2, a3), // readlinkat
        280 => hostio::utimensat(a0, a1, a2, a3), // utimensat
        437 => sys_openat2(a0, a1, a2, a3), // openat2
        32 => sys_dup(a0, 0),        // dup
        33 | 292 => sys_dup2(a0, a1), // dup2, dup3
        72 => sys_fcntl(a0, a1, a2), // fcntl
        79 => sys_getcwd(a0, a1),    // getcwd
        96 => sys_gettimeofday(a0),  // gettimeofday
        102 | 104 | 107 | 108 => 0,  // getuid, getgid, geteuid, getegid
        131 => sys_sigaltstack(a1),  // sigaltstack
        157 => 0,                    // prctl: names, death signal: nothing to do
        158 => sys_arch_prctl(a0, a1), // arch_prctl
        186 => shim().threads[shim().cur].tid as i64, // gettid
        202 => sys_futex(a0, a1, a2, a3, f.r9), // futex
        204 => sys_sched_getaffinity(a1, a2), // sched_getaffinity
        218 => sys_set_tid_address(a0), // set_tid_address
        228 => sys_clock_gettime(a0, a1), // clock_gettime
        229 => sys_clock_getres(a1), // clock_getres
        230 => sys_clock_nanosleep(a0, a1, a2), // clock_nanosleep
        231 => exit_guest(a0 & 0xff), // exit_group
        234 => sys_kill(a2),         // tgkill
        257 => sys_openat(a0, a1, a2, a3), // openat
        262 => sys_newfstatat(a0, a1, a2, a3), // newfstatat
        273 => 0,                    // set_robust_list
        302 => sys_prlimit(a1, a2, a3), // prlimit64
        318 => sys_getrandom(a0, a1), // getrandom
        332 => sys_statx(a0, a1, a2, a3, a4), // statx
        334 | 435 | 319 => -ENOSYS,  // rseq, clone3, memfd_create: callers fall back
        _ => fatal(FATAL_UNSUPPORTED_SYSCALL, nr, 0),
    };
    f.rax = ret as u64;
}

fn sig_zero(old: u64, len: u64) -> i64 {
    if old != 0 {
        match user_slice(old, len) {
            Some(s) => s.fill(0),
            None => return -EFAULT,
        }
    }
    0
}

const CHANNEL_FD: u64 = 3;

fn sys_read(fd: u64, buf: u64, len: u64) -> i64 {
    let Some(dst) = user_slice(buf, len) else {
        return -EFAULT;
    };
    match fd_kind(fd) {
        FD_STDIN => 0,
        FD_CHANNEL => channel_read(dst),
        FD_MEASUREMENT => measurement_read(dst),
        FD_RANDOM => sys_getrandom(buf, len),
        FD_HOST => hostio::read(fd, dst, 0, 0),
        _ => -EBADF,
    }
}

/// pread64 (17) / pwrite64 (18).
fn sys_pread(fd: u64, buf: u64, len: u64, off: u64, nr: u64) -> i64 {
    if !hostio::is_host(fd) {
        return if fd_kind(fd) == FD_FREE {
            -EBADF
        } else {
            -ESPIPE
        };
    }
    if (off as i64) < 0 {
        return -EINVAL;
    }
    let Some(b) = user_slice(buf, len) else {
        return -EFAULT;
    };
    if nr == 17 {
        hostio::read(fd, b, 17, off)
    } else {
        hostio::write(fd, b, 18, off)
    }
}

/// preadv (17) / pwritev (18), one iovec at a time.
fn sys_preadv(fd: u64, iov: u64, cnt: u64, off: u64, nr: u64) -> i64 {
    let Some(v) = iovecs(iov, cnt) else {
        return -EFAULT;
    };
    let mut total = 0u64;
    for &[base, len] in v {
        if len == 0 {
            continue;
        }
        let r = sys_pread(fd, base, len, off.wrapping_add(total), nr);
        if r < 0 {
            return if total > 0 { total as i64 } else { r };
        }
        total += r as u64;
        if (r as u64) < len {
            break;
        }
    }
    total as i64
}

fn measurement_read(dst: &mut [u8]) -> i64 {
    let s = shim();
    let Some(pos) = s.measurement_fd_pos else {
        return -EBADF;
    };
    let r = host_call(OP_MEASUREMENT, 0, 0, 0);
    if r != 48 {
        return -EIO;
    }
    let n = dst.len().min(48 - pos.min(48));
    // SAFETY: the host wrote 48 bytes of data (checked above); pos + n <= 48.
    unsafe { memcpy(dst.as_mut_ptr(), (SHARED_DATA as *const u8).add(pos), n) };
    s.measurement_fd_pos = Some(pos + n);
    n as i64
}

fn channel_read(dst: &mut [u8]) -> i64 {
    if dst.is_empty() {
        return 0;
    }
    let max = (dst.len() as u64).min(SHARED_DATA_LEN);
    loop {
        // Alone, with nothing else to wait for: block in the host until data or the
        // next deadline. Otherwise only look, and wait with the others (`OP_POLL`).
        let timeout = if other_runnable() || io_waiters() {
            0
        } else {
            match earliest_deadline() {
                Some(d) => d.saturating_sub(mono_ns()),
                None => u64::MAX,
            }
        };
        let r = host_call(OP_READ, CHANNEL_FD, max, timeout);
        match host_count(r, max) {
            Ok(n) => {
                // SAFETY: the host wrote n <= max bytes into the data area; dst holds >= max.
                unsafe { memcpy(dst.as_mut_ptr(), SHARED_DATA as *const u8, n as usize) };
                return n as i64;
            }
            Err(e) if e == -EAGAIN && timeout == 0 => wait_io(HANDLE_CHANNEL, 1),
            Err(e) if e == -EAGAIN => {
                wake_expired();
                schedule();
            }
            Err(e) => return e,
        }
    }
}

fn sys_write(fd: u64, buf: u64, len: u64) -> i64 {
    let Some(src) = user_slice(buf, len) else {
        return -EFAULT;
    };
    let host_fd = match fd_kind(fd) {
        FD_DIAG => 2,
        FD_CHANNEL => CHANNEL_FD,
        FD_HOST => return hostio::write(fd, src, 1, 0),
        _ => return -EBADF,
    };
    let mut done = 0usize;
    while done < src.len() {
        let n = (src.len() - done).min(SHARED_DATA_LEN as usize);
        // SAFETY: n <= SHARED_DATA_LEN bytes into the shared data area.
        unsafe { memcpy(SHARED_DATA as *mut u8, src.as_ptr().add(done), n) };
        match host_count(host_call(OP_WRITE, host_fd, n as u64, 0), n as u64) {
            Ok(0) => break,
            Ok(k) => done += k as usize,
            Err(e) if done == 0 => return e,
            Err(_) => break,
        }
    }
    done as i64
}

fn iovecs(iov: u64, cnt: u64) -> Option<&'static [[u64; 2]]> {
    if cnt > 1024 {
        return None;
    }
    let bytes = user_slice(iov, cnt * 16)?;
    if !(bytes.as_ptr() as usize).is_multiple_of(8) {
        return None;
    }
    // SAFETY: 8-aligned, cnt*16 bytes of guest memory, read as pairs of u64.
    Some(unsafe { core::slice::from_raw_parts(bytes.as_ptr() as *const [u64; 2], cnt as usize) })
}

fn sys_writev(fd: u64, iov: u64, cnt: u64) -> i64 {
    let Some(v) = iovecs(iov, cnt) else {
        return -EFAULT;
    };
    let mut total = 0i64;
    for &[base, len] in v {
        let r = sys_write(fd, base, len);
        if r < 0 {
            return if total > 0 { total } else { r };
        }
        total += r;
        if (r as u64) < len {
            break;
        }
    }
    total
}

fn sys_readv(fd: u64, iov: u64, cnt: u64) -> i64 {
    let Some(v) = iovecs(iov, cnt) else {
        return -EFAULT;
    };
    match v.iter().find(|[_, len]| *len > 0) {
        Some(&[base, len]) => sys_read(fd, base, len),
        None => 0,
    }
}

fn sys_fstat(fd: u64, st: u64) -> i64 {
    if hostio::is_host(fd) {
        return hostio::stat(fd, &raw const EMPTY as u64, AT_EMPTY_PATH, st);
    }
    let kind = fd_kind(fd);
    if kind == FD_FREE {
        return -EBADF;
    }
    let Some(s) = user_slice(st, 144) else {
        return -EFAULT;
    };
    s.fill(0);
    // st_mode at offset 24: a FIFO for the streams, a regular file for the measurement.
    let mode: u32 = if kind == FD_MEASUREMENT {
        0o100444
    } else {
        0o010600
    };
    s[24..28].copy_from_slice(&mode.to_le_bytes());
    s[16..24].copy_from_slice(&1u64.to_le_bytes()); // st_nlink
    if kind == FD_MEASUREMENT {
        s[48..56].copy_from_slice(&48u64.to_le_bytes()); // st_size
    }
    s[56..64].copy_from_slice(&4096u64.to_le_bytes()); // st_blksize
    0
}

static EMPTY: u8 = 0;
const AT_EMPTY_PATH: u64 = 0x1000;
const AT_FDCWD: u64 = -100i64 as u64;

fn sys_newfstatat(dirfd: u64, path: u64, st: u64, flags: u64) -> i64 {
    if flags & AT_EMPTY_PATH != 0 && user_slice(path, 1).map(|s| s[0]) == Some(0) {
        return sys_fstat(dirfd, st);
    }
    hostio::stat(dirfd, path, flags, st)
}

fn sys_statx(dirfd: u64, path: u64, flags: u64, mask: u64, buf: u64) -> i64 {
    let empty = flags & AT_EMPTY_PATH != 0 && user_slice(path, 1).map(|s| s[0]) == Some(0);
    if !empty || hostio::is_host(dirfd) {
        return hostio::statx(dirfd, path, flags, mask, buf);
    }
    // The shim's own fds: a statx built from their `struct stat`.
    let mut st = [0u8; 144];
    let r = sys_fstat(dirfd, st.as_mut_ptr() as u64);
    if r < 0 {
        return r;
    }
    let Some(x) = user_slice(buf, STATX_SIZE) else {
        return -EFAULT;
    };
    x.fill(0);
    x[0..4].copy_from_slice(&0x7ffu32.to_le_bytes()); // STATX_BASIC_STATS
    x[4..8].copy_from_slice(&st[56..60]); // blksize
    x[16..20].copy_from_slice(&st[16..20]); // nlink
    x[28..30].copy_from_slice(&st[24..26]); // mode
    x[40..48].copy_from_slice(&st[48..56]); // size
    0
}

fn sys_poll(fds: u64, n: u64, _timeout: u64) -> i64 {
    // Readiness without waiting: every open fd is reported ready for what it was asked
    // (a channel read then blocks until data arrives); closed fds get POLLNVAL.
    if n > 64 || user_slice(fds, n * 8).is_none() {
        return -EFAULT;
    }
    let mut ready = 0;
    for i in 0..n {
        let Some(p) = user_slice(fds + i * 8, 8) else {
            return -EFAULT;
        };
        let fd = i32::from_le_bytes([p[0], p[1], p[2], p[3]]);
        let events = u16::from_le_bytes([p[4], p[5]]);
        let revents: u16 = if fd < 0 {
            0
        } else if fd_kind(fd as u64) == FD_FREE {
            0x20 // POLLNVAL
        } else {
            events & 0x0005 // POLLIN | POLLOUT
        };
        p[6..8].copy_from_slice(&revents.to_le_bytes());
        if revents != 0 {
            ready += 1;
        }
    }
    ready
}

fn sys_fcntl(fd: u64, cmd: u64, arg: u64) -> i64 {
    if fd_kind(fd) == FD_FREE {
        return -EBADF;
    }
    if hostio::is_host(fd) && (cmd == 3 || cmd == 4) {
        return hostio::fcntl(fd, cmd, arg);
    }
    match cmd {
        0 | 1030 => sys_dup(fd, arg), // F_DUPFD, F_DUPFD_CLOEXEC
        1 | 2 => 0,                   // F_GETFD / F_SETFD
        3 => 2,                       // F_GETFL: O_RDWR
        4 => 0,                       // F_SETFL
        _ => -EINVAL,
    }
}

fn sys_openat2(dirfd: u64, path: u64, how: u64, size: u64) -> i64 {
    hostio::openat2(dirfd, path, how, size)
}

fn sys_openat(dirfd: u64, path: u64, flags: u64, mode: u64) -> i64 {
    let r = sys_open_special(path);
    if r != -ENOENT {
        return r;
    }
    hostio::openat(dirfd, path, flags, mode, 0)
}

fn sys_open_special(path: u64) -> i64 {
    const NAME: &[u8] = b"/dev/ward/launch-measurement\0";
    if let Some(p) = user_slice(path, NAME.len() as u64) {
        if p == NAME {
            shim().measurement_fd_pos = Some(0);
            return fd_alloc(3, FD_MEASUREMENT);
        }
    }
    for name in [&b"/dev/urandom\0"[..], &b"/dev/random\0"[..]] {
        if user_slice(path, name.len() as u64).is_some_and(|p| p == name) {
            return fd_alloc(3, FD_RANDOM);
        }
    }
    -ENOENT
}

fn sys_getcwd(buf: u64, len: u64) -> i64 {
    match user_slice(buf, 2.min(len)) {
        Some(s) if len >= 2 => {
            s.copy_from_slice(b"/\0");
            2
        }
        _ => -34, // ERANGE
    }
}

fn sys_uname(buf: u64) -> i64 {
    let Some(s) = user_slice(buf, 65 * 6) else {
        return -EFAULT;
    };
    s.fill(0);
    let fields: [&[u8]; 5] = [
        b"Linux",
        b"ward-keep",
        b"6.1.0-ward",
        b"#1 ward-shim",
        b"x86_64",
    ];
    for (i, f) in fields.iter().enumerate() {
        s[i * 65..i * 65 + f.len()].copy_from_slice(f);
    }
    0
}

fn sys_sigaltstack(old: u64) -> i64 {
    if old != 0 {
        match user_slice(old, 24) {
            Some(s) => {
                s.fill(0);
                s[8..12].copy_from_slice(&2u32.to_le_bytes()); // SS_DISABLE
            }
            None => return -EFAULT,
        }
    }
    0
}

fn sys_arch_prctl(code: u64, addr: u64) -> i64 {
    match code {
        0x1002 => {
            // ARCH_SET_FS
            shim().threads[shim().cur].fsbase = addr;
            // SAFETY: CR4.FSGSBASE is set by the VMM; FS base is the thread's TLS pointer.
            unsafe { asm!("wrfsbase {}", in(reg) addr, options(nostack, preserves_flags)) };
            0
        }
        0x1003 => {
            // ARCH_GET_FS
            if put_u64(addr, shim().threads[shim().cur].fsbase) {
                0
            } else {
                -EFAULT
            }
        }
        _ => -EINVAL,
    }
}

fn sys_set_tid_address(addr: u64) -> i64 {
    let s = shim();
    s.threads[s.cur].clear_tid = addr;
    s.threads[s.cur].tid as i64
}

fn sys_sched_getaffinity(len: u64, mask: u64) -> i64 {
    if len < 8 {
        return -EINVAL;
    }
    if !put_u64(mask, 1) {
        return -EFAULT;
    }
    8
}

fn sys_prlimit(resource: u64, _new: u64, old: u64) -> i64 {
    if old != 0 {
        let v = match resource {
            3 => 8 << 20, // RLIMIT_STACK
            7 => 1024,    // RLIMIT_NOFILE
            _ => u64::MAX,
        };
        if !(put_u64(old, v) && put_u64(old + 8, u64::MAX)) {
            return -EFAULT;
        }
    }
    0
}

fn sys_getrandom(buf: u64, len: u64) -> i64 {
    let Some(s) = user_slice(buf, len) else {
        return -EFAULT;
    };
    for chunk in s.chunks_mut(8) {
        let r = rdrand().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    len as i64
}

fn sys_kill(sig: u64) -> i64 {
    if sig == 0 {
        return 0;
    }
    let s = shim();
    if s.oom != 0 {
        fatal(FATAL_OUT_OF_MEMORY, s.oom, sig);
    }
    fatal(FATAL_ABORT, sig, 0)
}

// ---- memory ----

fn page_up(x: u64) -> Option<u64> {
    Some(x.checked_add(PAGE - 1)? & !(PAGE - 1))
}

fn zero(addr: u64, len: u64) {
    // SAFETY: callers pass ranges inside the mmap pool or brk area (guest memory).
    unsafe { memset(addr as *mut u8, 0, len as usize) };
}

fn sys_mmap(addr: u64, len: u64, _prot: u64, flags: u64, fd: u64) -> i64 {
    const MAP_FIXED: u64 = 0x10;
    const MAP_ANONYMOUS: u64 = 0x20;
    const MAP_FIXED_NOREPLACE: u64 = 0x100000;
    if flags & MAP_ANONYMOUS == 0 || fd as i64 != -1 && fd as i32 != -1 {
        return -ENODEV;
    }
    let Some(len) = page_up(len).filter(|&l| l > 0) else {
        return -EINVAL;
    };
    let s = shim();
    if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0 {
        if !addr.is_multiple_of(PAGE) || !s.ranges.contains(addr, len) {
            return -ENOMEM;
        }
        let clean = s.ranges.is_free(addr, len);
        s.ranges.take_fixed(addr, len);
        s.dirty.take_fixed(addr, len);
        if !clean {
            zero(addr, len);
        }
        return addr as i64;
    }
    if let Some(a) = s.ranges.alloc(len, PAGE) {
        return a as i64;
    }
    if let Some(a) = s.dirty.alloc(len, PAGE) {
        zero(a, len);
        return a as i64;
    }
    // Fragmented between the two lists: zero all returned memory and merge.
    let mut n = 0;
    while let Some(&(a, b)) = s.dirty.free_ranges().first() {
        zero(a, b - a);
        s.dirty.take_fixed(a, b - a);
        s.ranges.release(a, b - a);
        n += 1;
        if n > crate::mm::MAX_RANGES {
            break;
        }
    }
    match s.ranges.alloc(len, PAGE) {
        Some(a) => a as i64,
        None => {
            s.oom = len;
            -ENOMEM
        }
    }
}

fn mprotect(addr: u64, len: u64) -> i64 {
    if !addr.is_multiple_of(PAGE) || !user_ok(addr, len) {
        return -ENOMEM;
    }
    0
}

fn sys_munmap(addr: u64, len: u64) -> i64 {
    let Some(len) = page_up(len) else {
        return -EINVAL;
    };
    let s = shim();
    if !addr.is_multiple_of(PAGE) || !s.ranges.contains(addr, len) {
        return -EINVAL;
    }
    // Returned memory is zeroed lazily, when handed out again; parts that were never
    // handed out stay in the clean list.
    s.dirty.release(addr, len);
    let mut overlaps = [(0u64, 0u64); 16];
    let mut k = 0;
    for &(a, b) in s.ranges.free_ranges() {
        let (lo, hi) = (a.max(addr), b.min(addr + len));
        if lo < hi && k < overlaps.len() {
            overlaps[k] = (lo, hi);
            k += 1;
        }
    }
    for &(lo, hi) in &overlaps[..k] {
        s.dirty.take_fixed(lo, hi - lo);
    }
    if k == overlaps.len() {
        // Too many to track cheaply: keep the lists disjoint the slow way.
        zero(addr, len);
        s.dirty.take_fixed(addr, len);
        s.ranges.release(addr, len);
    }
    0
}

fn sys_madvise(addr: u64, len: u64, advice: u64) -> i64 {
    const MADV_DONTNEED: u64 = 4;
    let s = shim();
    if advice == MADV_DONTNEED {
        match page_up(len) {
            Some(l) if addr.is_multiple_of(PAGE) && s.ranges.contains(addr, l) => zero(addr, l),
            _ => return -EINVAL,
        }
    }
    0
}

fn sys_brk(want: u64) -> i64 {
    let s = shim();
    if want >= s.brk_start && want <= s.brk_end {
        if want < s.brk_cur {
            zero(want, s.brk_cur - want);
        }
        s.brk_cur = want;
    } else if want > s.brk_end {
        s.oom = want - s.brk_cur;
    }
    s.brk_cur as i64
}

// ---- time syscalls ----

fn put_timespec(ptr: u64, ns: u64) -> bool {
    put_u64(ptr, ns / 1_000_000_000) && put_u64(ptr + 8, ns % 1_000_000_000)
}

fn get_timespec(ptr: u64) -> Option<u64> {
    let s = get_u64(ptr)?;
    let ns = get_u64(ptr + 8)?;
    if ns >= 1_000_000_000 || (s as i64) < 0 {
        return None;
    }
    Some(s.saturating_mul(1_000_000_000).saturating_add(ns))
}

fn clock_ns(clock: u64) -> Option<u64> {
    match clock {
        0 | 5 | 8 | 11 => Some(real_ns()), // REALTIME(_COARSE), BOOTTIME.., TAI
        1 | 4 | 6 | 7 | 2 | 3 | 9 => Some(mono_ns()), // MONOTONIC*, CPUTIME: monotonic
        _ => None,
    }
}

fn sys_clock_gettime(clock: u64, tp: u64) -> i64 {
    match clock_ns(clock) {
        Some(ns) if put_timespec(tp, ns) => 0,
        Some(_) => -EFAULT,
        None => -EINVAL,
    }
}

fn sys_clock_getres(tp: u64) -> i64 {
    if tp != 0 && !put_timespec(tp, 1) {
        return -EFAULT;
    }
    0
}

fn sys_gettimeofday(tv: u64) -> i64 {
    let ns = real_ns();
    if tv != 0 && !(put_u64(tv, ns / 1_000_000_000) && put_u64(tv + 8, ns % 1_000_000_000 / 1000)) {
        return -EFAULT;
    }
    0
}

fn sleep_until(deadline: u64) {
    let s = shim();
    let me = s.cur;
    s.threads[me].wait_addr = 0;
    s.threads[me].deadline = deadline;
    s.threads[me].state = State::Blocked;
    schedule();
}

fn sys_nanosleep(req: u64) -> i64 {
    match get_timespec(req) {
        Some(ns) => {
            sleep_until(mono_ns().saturating_add(ns));
            0
        }
        None => -EINVAL,
    }
}

fn sys_clock_nanosleep(clock: u64, flags: u64, req: u64) -> i64 {
    const TIMER_ABSTIME: u64 = 1;
    let Some(ns) = get_timespec(req) else {
        return -EINVAL;
    };
    let deadline = if flags & TIMER_ABSTIME != 0 {
        let Some(now) = clock_ns(clock) else {
            return -EINVAL;
        };
        mono_ns().saturating_add(ns.saturating_sub(now))
    } else {
        mono_ns().saturating_add(ns)
    };
    sleep_until(deadline);
    0
}

// ---- threads ----

fn other_runnable() -> bool {
    let s = shim();
    s.threads
        .iter()
        .enumerate()
        .any(|(i, t)| i != s.cur && t.state == State::Runnable)
}

fn earliest_deadline() -> Option<u64> {
    shim()
        .threads
        .iter()
        .filter(|t| t.state == State::Blocked && t.deadline != u64::MAX)
        .map(|t| t.deadline)
        .min()
}

fn wake_expired() {
    let now = mono_ns();
    for t in shim().threads.iter_mut() {
        if t.state == State::Blocked && t.deadline <= now {
            t.state = State::Runnable;
            t.timed_out = true;
            t.deadline = u64::MAX;
        }
    }
}

/// Whether some thread waits for a host handle or the channel.
fn io_waiters() -> bool {
    shim()
        .threads
        .iter()
        .any(|t| t.state == State::Blocked && t.io_events != 0)
}

/// Blocks the current thread until `handle` (or [`HANDLE_CHANNEL`]) may be ready for
/// `events`; the caller then retries its operation.
fn wait_io(handle: u32, events: u16) {
    let s = shim();
    let me = s.cur;
    s.threads[me].state = State::Blocked;
    s.threads[me].io_handle = handle;
    s.threads[me].io_events = events;
    s.threads[me].wait_addr = 0;
    s.threads[me].deadline = u64::MAX;
    schedule();
    let s = shim();
    s.threads[s.cur].io_events = 0;
}

/// Asks the host which waited-for handles are ready (waiting up to `timeout` ns) and
/// wakes their threads.
fn poll_io(timeout: u64) {
    let s = shim();
    let mut who = [0usize; MAX_POLL as usize];
    let mut n = 0;
    for (i, t) in s.threads.iter().enumerate() {
        if t.state == State::Blocked && t.io_events != 0 && n < who.len() {
            let e = PollEntry {
                handle: t.io_handle,
                events: t.io_events,
                revents: 0,
            };
            // SAFETY: n < MAX_POLL entries of 8 bytes fit in the shared data area.
            unsafe { write_volatile((SHARED_DATA as *mut PollEntry).add(n), e) };
            who[n] = i;
            n += 1;
        }
    }
    let r = host_call(OP_POLL, n as u64, timeout, 0);
    s.last_poll = mono_ns();
    if host_count(r, n as u64).unwrap_or(0) == 0 {
        return;
    }
    for (k, &i) in who[..n].iter().enumerate() {
        // SAFETY: entry k < n of the array written above; the host filled revents.
        let e = unsafe { read_volatile((SHARED_DATA as *const PollEntry).add(k)) };
        if e.revents != 0 {
            let t = &mut s.threads[i];
            t.state = State::Runnable;
            t.io_events = 0;
        }
    }
}

/// Runs the next runnable thread (possibly the current one again). Returns when the
/// current thread is runnable and chosen.
fn schedule() {
    loop {
        wake_expired();
        // Threads waiting for I/O are looked at every millisecond even while others run.
        if io_waiters() && mono_ns().saturating_sub(shim().last_poll) > 1_000_000 {
            poll_io(0);
        }
        let s = shim();
        let cur = s.cur;
        let next = (1..=MAX_THREADS)
            .map(|k| (cur + k) % MAX_THREADS)
            .find(|&i| s.threads[i].state == State::Runnable);
        match next {
            Some(n) if n == cur => return,
            Some(n) => {
                switch(cur, n);
                return;
            }
            None => match earliest_deadline() {
                _ if io_waiters() => {
                    let t = earliest_deadline().map_or(u64::MAX, |d| d.saturating_sub(mono_ns()));
                    poll_io(t);
                }
                Some(d) => {
                    let now = mono_ns();
                    if d > now {
                        host_call(OP_IDLE, d - now, 0, 0);
                    }
                }
                None => fatal(FATAL_DEADLOCK, 0, 0),
            },
        }
    }
}

fn switch(from: usize, to: usize) {
    let s = shim();
    let fs: u64;
    // SAFETY: CR4.FSGSBASE is set; reading FS base has no other effect.
    unsafe { asm!("rdfsbase {}", out(reg) fs, options(nomem, nostack, preserves_flags)) };
    s.threads[from].fsbase = fs;
    s.cur = to;
    let to_fs = s.threads[to].fsbase;
    let to_sp = s.threads[to].sp;
    // SAFETY: `to` is a thread slot in use; its stack index matches its slot.
    unsafe {
        WARD_SHIM_STACK_TOP = (&raw mut STACKS) as u64 + ((to + 1) * STACK) as u64;
        asm!("wrfsbase {}", in(reg) to_fs, options(nostack, preserves_flags));
        ward_switch(&raw mut s.threads[from].sp, to_sp);
    }
}

fn sched_yield() -> i64 {
    schedule();
    0
}

fn sys_clone(f: &mut Frame) -> i64 {
    const CLONE_VM: u64 = 0x100;
    const CLONE_THREAD: u64 = 0x10000;
    const CLONE_SETTLS: u64 = 0x80000;
    const CLONE_PARENT_SETTID: u64 = 0x100000;
    const CLONE_CHILD_CLEARTID: u64 = 0x200000;
    let (flags, stack, ptid, ctid, tls) = (f.rdi, f.rsi, f.rdx, f.r10, f.r8);
    if flags & (CLONE_VM | CLONE_THREAD) != (CLONE_VM | CLONE_THREAD) || stack == 0 {
        return -ENOSYS; // no fork: a Keep is one process
    }
    let s = shim();
    let Some(slot) = s.threads.iter().position(|t| t.state == State::Free) else {
        return -EAGAIN;
    };
    let tid = s.next_tid;
    s.next_tid += 1;
    // The child's user stack gets the [rflags][rip] pair that `ward_syscall_return` pops.
    let child_usp = stack - 144;
    // SAFETY: f.usp points at the caller's [rflags][rip] pair (pushed on entry).
    let (rflags, rip) = unsafe { (*(f.usp as *const u64), *((f.usp + 8) as *const u64)) };
    if !(put_u64(child_usp, rflags) && put_u64(child_usp + 8, rip)) {
        return -EFAULT;
    }
    let mut child = *f;
    child.rax = 0;
    child.usp = child_usp;
    // SAFETY: the slot's shim stack is unused (the slot is free); layout from its top:
    // Frame, fxsave area (copied from the parent), return address, 6 callee-saved words.
    let sp = unsafe {
        let top = (&raw mut STACKS) as u64 + ((slot + 1) * STACK) as u64;
        let frame = top - core::mem::size_of::<Frame>() as u64;
        write_volatile(frame as *mut Frame, child);
        let fx = frame - 512;
        memcpy(
            fx as *mut u8,
            (f as *const Frame as *const u8).sub(512),
            512,
        );
        let ret = fx - 8;
        write_volatile(ret as *mut u64, ward_syscall_return as *const () as u64);
        let sp = ret - 48;
        memset(sp as *mut u8, 0, 48);
        sp
    };
    if flags & CLONE_PARENT_SETTID != 0
        && !user_slice(ptid, 4).is_some_and(|p| {
            p.copy_from_slice(&(tid as u32).to_le_bytes());
            true
        })
    {
        return -EFAULT;
    }
    let parent_fs = s.threads[s.cur].fsbase;
    s.threads[slot] = Thread {
        state: State::Runnable,
        tid,
        sp,
        fsbase: if flags & CLONE_SETTLS != 0 {
            tls
        } else {
            parent_fs
        },
        clear_tid: if flags & CLONE_CHILD_CLEARTID != 0 {
            ctid
        } else {
            0
        },
        ..NO_THREAD
    };
    tid as i64
}

fn sys_exit_thread(code: u64) -> i64 {
    let s = shim();
    let me = s.cur;
    if me == 0 && !s.threads.iter().skip(1).any(|t| t.state != State::Free) {
        exit_guest(code & 0xff);
    }
    let ct = s.threads[me].clear_tid;
    if ct != 0 {
        if let Some(p) = user_slice(ct, 4) {
            p.fill(0);
            futex_wake(ct, 1);
        }
    }
    s.threads[me].state = State::Free;
    if !s.threads.iter().any(|t| t.state != State::Free) {
        exit_guest(code & 0xff);
    }
    schedule();
    // A freed thread is never scheduled again.
    fatal(FATAL_SHIM, 0, 3)
}

fn futex_wake(addr: u64, n: u64) -> i64 {
    let mut woken = 0;
    for t in shim().threads.iter_mut() {
        if woken >= n {
            break;
        }
        if t.state == State::Blocked && t.wait_addr == addr {
            t.state = State::Runnable;
            t.wait_addr = 0;
            t.deadline = u64::MAX;
            woken += 1;
        }
    }
    woken as i64
}

fn sys_futex(addr: u64, op: u64, val: u64, timeout: u64, _val3: u64) -> i64 {
    const WAIT: u64 = 0;
    const WAKE: u64 = 1;
    const WAIT_BITSET: u64 = 9;
    const WAKE_BITSET: u64 = 10;
    const CLOCK_REALTIME: u64 = 256;
    let cmd = op & 0x7f;
    match cmd {
        WAIT | WAIT_BITSET => {
            let Some(cur) = get_u32(addr) else {
                return -EFAULT;
            };
            if cur != val as u32 {
                return -EAGAIN;
            }
            let deadline = if timeout == 0 {
                u64::MAX
            } else {
                let Some(ns) = get_timespec(timeout) else {
                    return -EINVAL;
                };
                if cmd == WAIT {
                    mono_ns().saturating_add(ns)
                } else if op & CLOCK_REALTIME != 0 {
                    mono_ns().saturating_add(ns.saturating_sub(real_ns()))
                } else {
                    ns
                }
            };
            let s = shim();
            let me = s.cur;
            s.threads[me].state = State::Blocked;
            s.threads[me].wait_addr = addr;
            s.threads[me].deadline = deadline;
            s.threads[me].timed_out = false;
            schedule();
            let s = shim();
            if s.threads[s.cur].timed_out {
                s.threads[s.cur].timed_out = false;
                s.threads[s.cur].wait_addr = 0;
                return -ETIMEDOUT;
            }
            0
        }
        WAKE | WAKE_BITSET => futex_wake(addr, val),
        _ => -ENOSYS,
    }
}

#[allow(dead_code)]
const _: () = assert!(ESRCH > 0);
