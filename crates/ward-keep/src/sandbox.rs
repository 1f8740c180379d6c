//! The process Keep's sandbox, applied by the agent to itself before it reads the
//! workload. Layers, in order:
//!
//! 1. rlimits (no core dumps, bounded file size and fd count);
//! 2. namespaces: a new user, IPC and UTS namespace, plus a network namespace when
//!    the workload has no sockets (it cannot open any later anyway);
//! 3. no-new-privs;
//! 4. landlock: the filesystem shrinks to the preopened directories, and TCP
//!    bind/connect are denied (the workload's sockets are already open);
//! 5. seccomp: an allow-list of the system calls the runtime needs; process creation
//!    is limited to threads.
//!
//! A layer the kernel does not offer is reported as unavailable (the host prints that
//! once); it never fails silently.

use std::collections::BTreeMap;

use landlock::{
    Access, AccessFs, AccessNet, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, ABI,
};
use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};
use ward_proto::{SandboxLayer, SandboxStatus, WorkloadConfig};

/// Largest file the workload may write, in bytes (4 GiB).
const MAX_FILE_SIZE: u64 = 4 << 30;
/// Most open fds (the runtime's own plus the workload's).
const MAX_FDS: u64 = 4096;

fn layer(name: &str, status: SandboxStatus) -> SandboxLayer {
    SandboxLayer {
        name: name.to_string(),
        status,
    }
}

fn from<E: std::fmt::Display>(r: Result<SandboxStatus, E>) -> SandboxStatus {
    r.unwrap_or_else(|e| SandboxStatus::Unavailable(e.to_string()))
}

/// Applies every layer to the calling process and reports each.
///
/// Call it while the process is single-threaded: the user namespace cannot be
/// entered otherwise.
pub fn apply(cfg: &WorkloadConfig) -> Vec<SandboxLayer> {
    vec![
        layer("rlimits", from(rlimits())),
        layer("namespaces", from(namespaces(cfg))),
        layer(
            "no-new-privs",
            from(rustix::thread::set_no_new_privs(true).map(|()| SandboxStatus::Applied)),
        ),
        layer("landlock", from(landlock(cfg))),
        layer("seccomp", from(seccomp())),
    ]
}

fn rlimits() -> Result<SandboxStatus, rustix::io::Errno> {
    use rustix::process::{setrlimit, Resource, Rlimit};
    let set = |r, v: u64| {
        setrlimit(
            r,
            Rlimit {
                current: Some(v),
                maximum: Some(v),
            },
        )
    };
    set(Resource::Core, 0)?;
    set(Resource::Fsize, MAX_FILE_SIZE)?;
    set(Resource::Nofile, MAX_FDS)?;
    Ok(SandboxStatus::Applied)
}

fn namespaces(cfg: &WorkloadConfig) -> Result<SandboxStatus, rustix::io::Errno> {
    use rustix::thread::{unshare_unsafe, UnshareFlags};
    let base = UnshareFlags::NEWUSER | UnshareFlags::NEWIPC | UnshareFlags::NEWUTS;
    let flags = if cfg.sockets.is_empty() {
        base | UnshareFlags::NEWNET
    } else {
        base
    };
    // SAFETY: CLONE_FILES is not among the flags, so no fd this process holds is
    // invalidated; new user/IPC/UTS/network namespaces change no memory of ours.
    unsafe { unshare_unsafe(flags)? };
    Ok(if cfg.sockets.is_empty() {
        SandboxStatus::Applied
    } else {
        SandboxStatus::Partial("no network namespace: the workload has host sockets".into())
    })
}

fn landlock(cfg: &WorkloadConfig) -> Result<SandboxStatus, String> {
    landlock_inner(cfg).map_err(|e| e.to_string())
}

fn landlock_inner(cfg: &WorkloadConfig) -> Result<SandboxStatus, Box<dyn std::error::Error>> {
    let abi = ABI::V5;
    let read = AccessFs::from_read(abi);
    let all = AccessFs::from_all(abi);
    let mut ruleset = Ruleset::default()
        .handle_access(all)?
        .handle_access(AccessNet::from_all(abi))?
        .create()?;
    for p in &cfg.preopens {
        let fd = PathFd::new(&p.host)?;
        let access = if p.writable { all } else { read };
        ruleset = ruleset.add_rule(PathBeneath::new(fd, access))?;
    }
    let status = ruleset.restrict_self()?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => SandboxStatus::Applied,
        RulesetStatus::PartiallyEnforced => {
            SandboxStatus::Partial("the kernel's landlock ABI is older than V5".into())
        }
        RulesetStatus::NotEnforced => {
            SandboxStatus::Unavailable("landlock is not enabled in this kernel".into())
        }
    })
}

/// System calls the agent, wasmtime and wasmtime-wasi make after the sandbox is up.
const ALLOWED: &[libc::c_long] = &[
    // I/O on fds it already has, and files under the preopens (landlock decides).
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_close,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_lseek,
    libc::SYS_openat,
    libc::SYS_fcntl,
    libc::SYS_ioctl,
    libc::SYS_getdents64,
    libc::SYS_mkdirat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_linkat,
    libc::SYS_symlinkat,
    libc::SYS_readlinkat,
    libc::SYS_ftruncate,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_utimensat,
    libc::SYS_fallocate,
    libc::SYS_fadvise64,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_pipe2,
    libc::SYS_fstatfs,
    // Sockets already open: accept, transfer, shut down. No socket()/bind()/connect().
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_shutdown,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    // An AF_UNIX pair reaches nothing outside the process (tokio makes one for its
    // signal driver when that feature is on).
    libc::SYS_socketpair,
    // Memory (wasmtime reserves, commits and protects linear memories and code).
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_membarrier,
    libc::SYS_memfd_create,
    // Signals (wasmtime's trap handlers) and threads (tokio, deadline, compilation).
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_tgkill,
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_clone3,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_prctl,
    libc::SYS_prlimit64,
    libc::SYS_getrusage,
    // Time, randomness, readiness.
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_getrandom,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_eventfd2,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_uname,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getcwd,
];

fn seccomp() -> Result<SandboxStatus, seccompiler::Error> {
    let arch = TargetArch::x86_64;
    // clone3 hides its flags behind a pointer a filter cannot read, so it answers
    // ENOSYS and glibc falls back to clone(2), whose flags *can* be checked.
    let no_clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, vec![])]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|&nr| (nr, vec![])).collect();
    // clone(2) only for threads: CLONE_THREAD must be set (no fork).
    rules.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
            libc::CLONE_THREAD as u64,
        )?])?],
    );
    let allow_list = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )?;
    // no_clone3 first: once the allow-list is in, seccomp(2) itself is refused.
    for filter in [no_clone3, allow_list] {
        let program: seccompiler::BpfProgram = filter.try_into()?;
        seccompiler::apply_filter(&program)?;
    }
    Ok(SandboxStatus::Applied)
}
