//! The guest physical layout and the shim ↔ VMM ABI, shared by `ward-shim` (guest)
//! and `ward-vmm` (host). Guest virtual addresses equal guest physical addresses.
//!
//! Everything below [`SHARED`] (page tables, GDT, IDT, TSS, boot info), the shim image
//! and the `ward-keep` image are part of the launch measurement; [`LAUNCH_INFO`] and
//! [`SHARED`] are host-writable and never measured.

/// Page size.
pub const PAGE: u64 = 4096;
/// Page-map level 4.
pub const PML4: u64 = 0x1000;
/// The one page-directory-pointer table (the first 512 GiB).
pub const PDPT: u64 = 0x2000;
/// The page directories, one per GiB of guest memory.
pub const PD_BASE: u64 = 0x3000;
/// Most guest memory the layout supports, in GiB.
pub const MAX_GIB: u64 = 16;
/// The 4 KiB page table of the first 2 MiB (page 0 stays unmapped).
pub const PT0: u64 = PD_BASE + MAX_GIB * PAGE;
/// Global descriptor table.
pub const GDT: u64 = PT0 + PAGE;
/// Interrupt descriptor table (256 gates).
pub const IDT: u64 = GDT + PAGE;
/// Task-state segment, followed by its I/O permission bitmap.
pub const TSS: u64 = IDT + PAGE;
/// Offset of the I/O permission bitmap inside the TSS.
pub const TSS_IOMAP_OFFSET: u64 = 0x68;
/// Boot information written by the VMM before launch (measured). See [`BootInfo`].
pub const BOOT_INFO: u64 = TSS + 3 * PAGE;
/// End of the measured low area.
pub const LOW_END: u64 = BOOT_INFO + PAGE;
/// Host-provided launch information (unmeasured; validated by the shim). See [`LaunchInfo`].
pub const LAUNCH_INFO: u64 = 0x1F000;
/// The shared request block: a [`Request`] header then [`SHARED_DATA_LEN`] data bytes.
pub const SHARED: u64 = 0x20000;
/// Size of the shared block.
pub const SHARED_LEN: u64 = 0x10000;
/// Where the data part of the shared block starts.
pub const SHARED_DATA: u64 = SHARED + 64;
/// Bytes of data one request can carry.
pub const SHARED_DATA_LEN: u64 = SHARED_LEN - 64;
/// Top of the ring-0 stack (TSS.RSP0).
pub const RING0_STACK_TOP: u64 = 0x38000;
/// Top of the exception stack (TSS.IST1).
pub const IST1_TOP: u64 = 0x40000;
/// Where the shim image is linked and loaded.
pub const SHIM_BASE: u64 = 0x10_0000;
/// The shim image must end below this address.
pub const SHIM_LIMIT: u64 = 0x40_0000;
/// Where `ward-keep` (a static-pie) is loaded.
pub const KEEP_BASE: u64 = 0x40_0000;

/// The ring-0 `syscall` entry point (MSR LSTAR), at the start of the shim's text.
pub const SYSCALL_ENTRY: u64 = SHIM_BASE;
/// Exception stub of vector `v` is at `EXCEPTION_STUBS + 8 * v`.
pub const EXCEPTION_STUBS: u64 = SHIM_BASE + 0x40;
/// Number of exception vectors with stubs.
pub const EXCEPTION_VECTORS: u64 = 32;

/// Guest → host doorbell: `out DOORBELL_PORT, al` after filling [`SHARED`].
pub const DOORBELL_PORT: u16 = 0xF4;
/// The first instruction the guest runs in user mode writes this port.
pub const BOOT_PORT: u16 = 0xF5;
/// Exception stub of vector `v` writes port `EXCEPTION_PORT_BASE + v` (ring 0), then halts.
pub const EXCEPTION_PORT_BASE: u16 = 0xC0;

/// Segment selectors (GDT layout). STAR is set so that `sysret` lands on USER_CS/USER_DS.
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data selector.
pub const KERNEL_DS: u16 = 0x10;
/// User data selector (RPL 3).
pub const USER_DS: u16 = 0x18 | 3;
/// User 64-bit code selector (RPL 3).
pub const USER_CS: u16 = 0x20 | 3;
/// TSS selector.
pub const TSS_SEL: u16 = 0x28;

/// `BootInfo::magic`.
pub const BOOT_MAGIC: u64 = u64::from_le_bytes(*b"WARDBOOT");
/// Bytes for NUL-terminated argv and envp strings in [`BootInfo`].
pub const BOOT_STRINGS: usize = 3072;

/// Boot information for the shim: measured, so the host cannot change it after launch.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    /// [`BOOT_MAGIC`].
    pub magic: u64,
    /// Guest memory size in bytes.
    pub mem_size: u64,
    /// Load address of `ward-keep`.
    pub keep_base: u64,
    /// Entry point of `ward-keep` (absolute).
    pub keep_entry: u64,
    /// Address of `ward-keep`'s program headers in guest memory.
    pub keep_phdr: u64,
    /// Number of program headers.
    pub keep_phnum: u64,
    /// First page after the loaded `ward-keep` image (including .bss).
    pub keep_end: u64,
    /// Number of argv strings at the start of `strings`.
    pub argc: u64,
    /// Number of envp strings following them.
    pub envc: u64,
    /// argv then envp, each NUL-terminated.
    pub strings: [u8; BOOT_STRINGS],
}

/// `LaunchInfo::magic`.
pub const LAUNCH_MAGIC: u64 = u64::from_le_bytes(*b"WARDLNCH");

/// Host-provided, unmeasured launch information. The shim range-checks every field.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LaunchInfo {
    /// [`LAUNCH_MAGIC`].
    pub magic: u64,
    /// TSC frequency in kHz (0 if unknown).
    pub tsc_khz: u64,
}

/// Header of the shared block. The guest fills `op` and the arguments, rings the
/// doorbell, and reads `ret` (and data) back after the `out` returns.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Request {
    /// One of the `OP_*` codes.
    pub op: u64,
    /// First argument.
    pub a0: u64,
    /// Second argument.
    pub a1: u64,
    /// Third argument.
    pub a2: u64,
    /// Result from the host: a byte count or a negated errno.
    pub ret: i64,
}

/// Write `a1` data bytes to guest fd `a0` (1/2: host diagnostics, 3: the channel).
pub const OP_WRITE: u64 = 1;
/// Read up to `a1` bytes from guest fd `a0` (3: the channel) into the data area.
/// `a2` is a timeout in nanoseconds (`u64::MAX`: wait forever); `ret` is the count,
/// 0 at end of stream, or `-EAGAIN` on timeout.
pub const OP_READ: u64 = 2;
/// The guest is done: exit status `a0`.
pub const OP_EXIT: u64 = 3;
/// The guest stops on an error of kind `a0` (`FATAL_*`) with detail `a1`, `a2`; the
/// data area holds a UTF-8 message of `a2`... see each kind.
pub const OP_FATAL: u64 = 4;
/// Current time: data = realtime ns (u64 LE), monotonic ns (u64 LE).
pub const OP_TIME: u64 = 5;
/// Copy the launch measurement (48 bytes) into the data area.
pub const OP_MEASUREMENT: u64 = 6;
/// Idle until `a0` ns have passed or the channel becomes readable.
pub const OP_IDLE: u64 = 7;

/// A host file or socket operation (see "Host I/O" below): `a0` is the Linux system
/// call number it stands for, the arguments are [`HostArgs`] at the start of the data
/// area, and byte payloads (paths, buffers, socket addresses) follow at
/// [`HOST_PAYLOAD`]. `ret` is a count, a new handle, or a negated errno.
pub const OP_HOST: u64 = 8;
/// Wait for host handles (or the channel): `a0` [`PollEntry`]s in the data area, `a1` a
/// timeout in nanoseconds (`u64::MAX`: forever). The host fills `revents`; `ret` is the
/// number of ready entries (0 on timeout).
pub const OP_POLL: u64 = 9;

/// Unsupported system call number `a1`.
pub const FATAL_UNSUPPORTED_SYSCALL: u64 = 1;
/// Out of guest memory: a request for `a1` bytes could not be met.
pub const FATAL_OUT_OF_MEMORY: u64 = 2;
/// The program aborted itself (signal `a1`).
pub const FATAL_ABORT: u64 = 3;
/// The shim hit an internal error; the data area holds `a1` bytes of message.
pub const FATAL_SHIM: u64 = 4;
/// All guest threads are blocked forever.
pub const FATAL_DEADLOCK: u64 = 5;

/// Guest errno values used on the ABI.
pub const EAGAIN: i64 = 11;
/// Bad file descriptor.
pub const EBADF: i64 = 9;
/// Invalid argument.
pub const EINVAL: i64 = 22;
/// I/O error.
pub const EIO: i64 = 5;
/// Broken pipe.
pub const EPIPE: i64 = 32;

/// Operation not permitted.
pub const EPERM: i64 = 1;
/// No such file or directory.
pub const ENOENT: i64 = 2;
/// Permission denied.
pub const EACCES: i64 = 13;
/// Too many open files.
pub const EMFILE: i64 = 24;
/// Read-only file system.
pub const EROFS: i64 = 30;
/// File name too long.
pub const ENAMETOOLONG: i64 = 36;
/// Protocol not available (setsockopt/getsockopt).
pub const ENOPROTOOPT: i64 = 92;
/// Address family not supported.
pub const EAFNOSUPPORT: i64 = 97;
/// Operation not supported.
pub const EOPNOTSUPP: i64 = 95;
/// Operation now in progress (non-blocking connect).
pub const EINPROGRESS: i64 = 115;
/// Transport endpoint is already connected.
pub const EISCONN: i64 = 106;
/// Operation already in progress.
pub const EALREADY: i64 = 114;

// ---- Host I/O ----
//
// Files and sockets live on the host; the guest names them by *handles*, small integers
// the VMM hands out (< [`MAX_HANDLES`]). The shim maps guest fds to handles.
// [`HANDLE_ROOT`] in a directory-handle argument means "an absolute path": the VMM
// resolves it only against the host paths its configuration allows. Every relative
// path is resolved beneath its directory handle (`openat2` with `RESOLVE_BENEATH |
// RESOLVE_NO_MAGICLINKS`), whatever the guest asked.

/// Number of `u64` arguments of an [`OP_HOST`] request, at the start of the data area
/// (meaning per system call: see `docs/kvm.md`). Paths are NUL-terminated at
/// [`HOST_PAYLOAD`] (and [`HOST_PATH2`]); byte buffers start at [`HOST_PAYLOAD`].
pub const HOST_ARGS: usize = 8;

/// Input and output payload of an [`OP_HOST`] request.
pub const HOST_PAYLOAD: u64 = SHARED_DATA + 64;
/// Bytes available at [`HOST_PAYLOAD`].
pub const HOST_PAYLOAD_LEN: u64 = SHARED_DATA_LEN - 64;
/// Longest path (including its NUL).
pub const HOST_PATH_MAX: u64 = 4096;
/// Where a second path goes (rename, link: the new name; symlink: the link's name).
pub const HOST_PATH2: u64 = HOST_PAYLOAD + HOST_PATH_MAX;
/// Most host handles one guest may hold.
pub const MAX_HANDLES: u64 = 1024;
/// "No directory handle": the path is absolute (`AT_FDCWD` with cwd = `/`).
pub const HANDLE_ROOT: u64 = u64::MAX;
/// In a [`PollEntry`], the Keep channel (guest fd 3) rather than a host handle.
pub const HANDLE_CHANNEL: u32 = u32::MAX;
/// Most entries of one [`OP_POLL`].
pub const MAX_POLL: u64 = 64;

/// One handle to wait for in [`OP_POLL`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PollEntry {
    /// A handle, or [`HANDLE_CHANNEL`].
    pub handle: u32,
    /// `POLLIN` (1) / `POLLOUT` (4).
    pub events: u16,
    /// Filled by the host.
    pub revents: u16,
}

/// Size of `struct statx`, which [`OP_HOST`] `statx` returns (and the shim converts
/// to `struct stat` for `fstat`/`newfstatat`).
pub const STATX_SIZE: u64 = 256;
/// Largest socket address passed through [`OP_HOST`].
pub const SOCKADDR_MAX: u64 = 128;
