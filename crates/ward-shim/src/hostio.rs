//! Host files and sockets: guest fds of kind `FD_HOST` name a VMM handle, and their
//! system calls become `OP_HOST` requests (see `abi` and `docs/kvm.md`).
//!
//! Everything the host returns is checked before use: counts against what was asked
//! and the shared block, handles against `MAX_HANDLES` and the fds already open,
//! socket-address lengths against the caller's buffer, `statx` sizes, and
//! `getdents64` records (lengths, alignment, NUL-terminated names).
//!
//! Host sockets are non-blocking on the host. A guest call that would block marks the
//! thread as waiting for its handle and lets other threads run; when every thread
//! waits, the scheduler asks the VMM to `poll(2)` all of them at once (`OP_POLL`).

use core::ptr::{read_volatile, write_volatile};

use super::*;

const AT_FDCWD: i32 = -100;
const AT_EMPTY_PATH: u64 = 0x1000;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const O_NONBLOCK: u64 = 0o4000;
const POLLIN: u16 = 1;
const POLLOUT: u16 = 4;
const ENOTDIR: i64 = 20;
const ENOTSOCK: i64 = 88;
const MSG_DONTWAIT: u64 = 0x40;

fn set_args(a: &[u64]) {
    for i in 0..HOST_ARGS {
        let v = a.get(i).copied().unwrap_or(0);
        // SAFETY: HOST_ARGS u64s fit at the start of the shared data area.
        unsafe { write_volatile((SHARED_DATA as *mut u64).add(i), v) };
    }
}

/// One `OP_HOST` request standing for system call `nr`.
fn hcall(nr: u64, a: &[u64]) -> i64 {
    set_args(a);
    host_call(OP_HOST, nr, 0, 0)
}

/// A host result that must be 0 or a small negated errno.
fn host_unit(r: i64) -> i64 {
    match host_count(r, 0) {
        Ok(_) => 0,
        Err(e) => e,
    }
}

/// A host result that must be a new handle, not one a guest fd already uses.
fn host_handle(r: i64) -> Result<u32, i64> {
    let h = host_count(r, MAX_HANDLES - 1)? as u32;
    let s = shim();
    if (0..MAX_FDS).any(|i| s.fds[i] == FD_HOST && s.handles[i] == h) {
        return Err(-EIO);
    }
    Ok(h)
}

/// Gives a new handle a guest fd (or closes it if none is free).
fn install(h: u32, nonblock: bool) -> i64 {
    let fd = fd_alloc(0, FD_HOST);
    if fd < 0 {
        hcall(3, &[h as u64]);
        return fd;
    }
    let s = shim();
    s.handles[fd as usize] = h;
    s.nonblock[fd as usize] = nonblock;
    fd
}

/// The handle of guest fd `fd`.
fn handle(fd: u64) -> Result<u64, i64> {
    match fd_kind(fd) {
        FD_HOST => Ok(shim().handles[fd as usize] as u64),
        FD_FREE => Err(-EBADF),
        _ => Err(-EINVAL),
    }
}

pub(super) fn is_host(fd: u64) -> bool {
    fd_kind(fd) == FD_HOST
}

/// Copies the NUL-terminated user string at `ptr` to `dst` in the shared block;
/// `prefix_root` prepends `/` to a relative path (cwd is `/`). Returns its length.
fn put_path(ptr: u64, dst: u64, prefix_root: bool) -> Result<usize, i64> {
    let top = shim().mem_top;
    if ptr < PAGE || ptr >= top {
        return Err(-EFAULT);
    }
    let max = (top - ptr).min(HOST_PATH_MAX);
    let s = user_slice(ptr, max).ok_or(-EFAULT)?;
    let Some(n) = s.iter().position(|&b| b == 0) else {
        return Err(if max == HOST_PATH_MAX {
            -ENAMETOOLONG
        } else {
            -EFAULT
        });
    };
    let pre = (prefix_root && s.first() != Some(&b'/')) as usize;
    if n + pre + 1 > HOST_PATH_MAX as usize {
        return Err(-ENAMETOOLONG);
    }
    // SAFETY: dst has HOST_PATH_MAX bytes of shared block (HOST_PAYLOAD or HOST_PATH2).
    unsafe {
        if pre == 1 {
            write_volatile(dst as *mut u8, b'/');
        }
        memcpy((dst as *mut u8).add(pre), s.as_ptr(), n);
        write_volatile((dst as *mut u8).add(pre + n), 0);
    }
    Ok(n + pre)
}

/// The directory handle for `dirfd` + the path at `path` (copied to `dst`).
/// Absolute paths, and `AT_FDCWD`, go to the VMM's allow-list ([`HANDLE_ROOT`]).
fn dir_and_path(dirfd: u64, path: u64, dst: u64) -> Result<(u64, usize), i64> {
    let absolute = user_slice(path, 1).ok_or(-EFAULT)?[0] == b'/';
    if absolute || dirfd as i32 == AT_FDCWD {
        let n = put_path(path, dst, true)?;
        return Ok((HANDLE_ROOT, n));
    }
    let h = match fd_kind(dirfd) {
        FD_HOST => shim().handles[dirfd as usize] as u64,
        FD_FREE => return Err(-EBADF),
        _ => return Err(-ENOTDIR),
    };
    Ok((h, put_path(path, dst, false)?))
}

fn wait_for(fd: u64, events: u16) {
    if let Ok(h) = handle(fd) {
        wait_io(h as u32, events);
    }
}

/// Runs `op` until it does not say EAGAIN (or the fd is non-blocking).
/// `dontwait`: this call is non-blocking whatever the fd is (`MSG_DONTWAIT`).
fn blocking(fd: u64, events: u16, dontwait: bool, mut op: impl FnMut() -> i64) -> i64 {
    loop {
        let r = op();
        if r != -EAGAIN || dontwait || !is_host(fd) || shim().nonblock[fd as usize] {
            return r;
        }
        wait_for(fd, events);
    }
}

// ---- data ----

/// read / pread64 / recvfrom (nr 0, 17, 45) into `dst`; `extra` is the offset or flags.
pub(super) fn read(fd: u64, dst: &mut [u8], nr: u64, extra: u64) -> i64 {
    if dst.is_empty() && nr != 45 {
        return 0;
    }
    let max = (dst.len() as u64).min(HOST_PAYLOAD_LEN);
    let dontwait = nr == 45 && extra & MSG_DONTWAIT != 0;
    blocking(fd, POLLIN, dontwait, || {
        let h = match handle(fd) {
            Ok(h) => h,
            Err(e) => return e,
        };
        match host_count(hcall(nr, &[h, max, extra]), max) {
            Ok(n) => {
                // SAFETY: the host wrote n <= max bytes at HOST_PAYLOAD; dst holds >= max.
                unsafe { memcpy(dst.as_mut_ptr(), HOST_PAYLOAD as *const u8, n as usize) };
                n as i64
            }
            Err(e) => e,
        }
    })
}

/// write / pwrite64 / sendto (nr 1, 18, 44) from `src`; `extra` is the offset or flags.
pub(super) fn write(fd: u64, src: &[u8], nr: u64, extra: u64) -> i64 {
    let mut done = 0usize;
    loop {
        let n = (src.len() - done).min(HOST_PAYLOAD_LEN as usize);
        let off = if nr == 18 { extra + done as u64 } else { extra };
        let dontwait = nr == 44 && extra & MSG_DONTWAIT != 0;
        let r = blocking(fd, POLLOUT, dontwait, || {
            let h = match handle(fd) {
                Ok(h) => h,
                Err(e) => return e,
            };
            // SAFETY: n <= HOST_PAYLOAD_LEN bytes into the shared payload area.
            unsafe { memcpy(HOST_PAYLOAD as *mut u8, src.as_ptr().add(done), n) };
            match host_count(hcall(nr, &[h, n as u64, off]), n as u64) {
                Ok(k) => k as i64,
                Err(e) => e,
            }
        });
        if r < 0 {
            return if done > 0 { done as i64 } else { r };
        }
        done += r as usize;
        if r == 0 || done >= src.len() || (r as usize) < n {
            return done as i64;
        }
    }
}

pub(super) fn close(fd: u64) -> i64 {
    let Ok(h) = handle(fd) else {
        return -EBADF;
    };
    shim().fds[fd as usize] = FD_FREE;
    host_unit(hcall(3, &[h]))
}

pub(super) fn dup(fd: u64, min: u64, to: Option<u64>) -> i64 {
    let h = match handle(fd) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let nh = match host_handle(hcall(32, &[h])) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let nb = shim().nonblock[fd as usize];
    match to {
        Some(t) => {
            let s = shim();
            s.fds[t as usize] = FD_HOST;
            s.handles[t as usize] = nh;
            s.nonblock[t as usize] = nb;
            t as i64
        }
        None => {
            let r = fd_alloc(min, FD_HOST);
            if r < 0 {
                hcall(3, &[nh as u64]);
                return r;
            }
            shim().handles[r as usize] = nh;
            shim().nonblock[r as usize] = nb;
            r
        }
    }
}

pub(super) fn lseek(fd: u64, off: u64, whence: u64) -> i64 {
    match handle(fd) {
        Ok(h) => match host_count(hcall(8, &[h, off, whence]), i64::MAX as u64) {
            Ok(n) => n as i64,
            Err(e) => e,
        },
        Err(e) => e,
    }
}

pub(super) fn fcntl(fd: u64, cmd: u64, arg: u64) -> i64 {
    let h = match handle(fd) {
        Ok(h) => h,
        Err(e) => return e,
    };
    match cmd {
        3 => match host_count(hcall(72, &[h, 3, 0]), i32::MAX as u64) {
            Ok(fl) => {
                let nb = if shim().nonblock[fd as usize] {
                    O_NONBLOCK
                } else {
                    0
                };
                ((fl & !O_NONBLOCK) | nb) as i64
            }
            Err(e) => e,
        },
        4 => {
            let r = host_unit(hcall(72, &[h, 4, arg]));
            if r == 0 {
                shim().nonblock[fd as usize] = arg & O_NONBLOCK != 0;
            }
            r
        }
        _ => -EINVAL,
    }
}

pub(super) fn ioctl(fd: u64, req: u64, arg: u64) -> i64 {
    const FIONBIO: u64 = 0x5421;
    if req != FIONBIO {
        return -ENOTTY;
    }
    match get_u32(arg) {
        Some(v) => {
            shim().nonblock[fd as usize] = v != 0;
            0
        }
        None => -EFAULT,
    }
}

/// fsync, fdatasync, ftruncate, fadvise64: a handle and plain integers.
pub(super) fn simple(fd: u64, nr: u64, a: &[u64]) -> i64 {
    match handle(fd) {
        Ok(h) => {
            let mut args = [h, 0, 0, 0];
            for (d, s) in args[1..].iter_mut().zip(a) {
                *d = *s;
            }
            host_unit(hcall(nr, &args))
        }
        Err(e) => e,
    }
}

/// getdents64, with every record the host returns checked.
pub(super) fn getdents(fd: u64, buf: u64, len: u64) -> i64 {
    let Some(dst) = user_slice(buf, len) else {
        return -EFAULT;
    };
    let h = match handle(fd) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let max = len.min(HOST_PAYLOAD_LEN);
    let n = match host_count(hcall(217, &[h, max]), max) {
        Ok(n) => n as usize,
        Err(e) => return e,
    };
    // SAFETY: the host wrote n <= max bytes at HOST_PAYLOAD.
    let src = unsafe { core::slice::from_raw_parts(HOST_PAYLOAD as *const u8, n) };
    let mut off = 0;
    while off < n {
        if n - off < 20 {
            return -EIO;
        }
        let reclen = u16::from_le_bytes([src[off + 16], src[off + 17]]) as usize;
        if reclen < 20 || !reclen.is_multiple_of(8) || reclen > n - off {
            return -EIO;
        }
        if !src[off + 19..off + reclen].contains(&0) {
            return -EIO;
        }
        off += reclen;
    }
    dst[..n].copy_from_slice(src);
    n as i64
}

// ---- paths ----

pub(super) fn openat(dirfd: u64, path: u64, flags: u64, mode: u64, resolve: u64) -> i64 {
    let (dir, _) = match dir_and_path(dirfd, path, HOST_PAYLOAD) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let dir = if dir == HANDLE_ROOT && resolve & 0x18 != 0 && dirfd as i32 != AT_FDCWD {
        // openat2 beneath a directory with an absolute path: the VMM refuses it.
        match handle(dirfd) {
            Ok(h) => h,
            Err(e) => return e,
        }
    } else {
        dir
    };
    match host_handle(hcall(257, &[dir, flags, mode, resolve])) {
        Ok(h) => install(h, flags & O_NONBLOCK != 0),
        Err(e) => e,
    }
}

pub(super) fn openat2(dirfd: u64, path: u64, how: u64, size: u64) -> i64 {
    if size < 24 {
        return -EINVAL;
    }
    let (Some(flags), Some(mode), Some(resolve)) =
        (get_u64(how), get_u64(how + 8), get_u64(how + 16))
    else {
        return -EFAULT;
    };
    if size > 24 {
        // Larger structs must be zero beyond what this shim knows.
        match user_slice(how + 24, (size - 24).min(4096)) {
            Some(rest) if rest.iter().all(|&b| b == 0) => {}
            Some(_) => return -E2BIG,
            None => return -EFAULT,
        }
    }
    openat(dirfd, path, flags, mode, resolve)
}

/// statx into the shared block; returns the 256 bytes' address.
fn statx_raw(dirfd: u64, path: u64, flags: u64, mask: u64) -> Result<*const u8, i64> {
    let empty = flags & AT_EMPTY_PATH != 0 && user_slice(path, 1).ok_or(-EFAULT)?[0] == 0;
    let dir = if empty {
        // SAFETY: the payload area holds at least one byte.
        unsafe { write_volatile(HOST_PAYLOAD as *mut u8, 0) };
        handle(dirfd)?
    } else {
        dir_and_path(dirfd, path, HOST_PAYLOAD)?.0
    };
    host_count(hcall(332, &[dir, flags, mask]), STATX_SIZE).and_then(|n| {
        if n == STATX_SIZE {
            Ok(HOST_PAYLOAD as *const u8)
        } else {
            Err(-EIO)
        }
    })
}

pub(super) fn statx(dirfd: u64, path: u64, flags: u64, mask: u64, buf: u64) -> i64 {
    let Some(dst) = user_slice(buf, STATX_SIZE) else {
        return -EFAULT;
    };
    match statx_raw(dirfd, path, flags, mask) {
        Ok(p) => {
            // SAFETY: p is the 256-byte statx the host wrote in the shared block.
            unsafe { memcpy(dst.as_mut_ptr(), p, STATX_SIZE as usize) };
            0
        }
        Err(e) => e,
    }
}

/// `struct stat` from a `struct statx`.
fn stat_from_statx(x: &[u8], st: &mut [u8]) {
    let u32_at = |o: usize| u32::from_le_bytes([x[o], x[o + 1], x[o + 2], x[o + 3]]) as u64;
    let u64_at = |o: usize| u64::from_le_bytes(x[o..o + 8].try_into().unwrap_or([0; 8]));
    let dev = |maj: u64, min: u64| {
        ((maj & 0xffff_f000) << 32)
            | ((maj & 0xfff) << 8)
            | ((min & 0xffff_ff00) << 12)
            | (min & 0xff)
    };
    st.fill(0);
    let mut put = |o: usize, v: u64, w: usize| st[o..o + w].copy_from_slice(&v.to_le_bytes()[..w]);
    put(0, dev(u32_at(136), u32_at(140)), 8);
    put(8, u64_at(32), 8); // ino
    put(16, u32_at(16), 8); // nlink
    put(24, u16::from_le_bytes([x[28], x[29]]) as u64, 4); // mode
    put(28, u32_at(20), 4); // uid
    put(32, u32_at(24), 4); // gid
    put(40, dev(u32_at(128), u32_at(132)), 8);
    put(48, u64_at(40), 8); // size
    put(56, u32_at(4), 8); // blksize
    put(64, u64_at(48), 8); // blocks
    for (i, o) in [(72usize, 64usize), (88, 112), (104, 96)] {
        put(i, u64_at(o), 8); // atime, mtime, ctime: seconds
        put(i + 8, u32_at(o + 8), 8); // nanoseconds
    }
}

/// fstat / newfstatat / stat / lstat on host objects.
pub(super) fn stat(dirfd: u64, path: u64, flags: u64, buf: u64) -> i64 {
    let Some(dst) = user_slice(buf, 144) else {
        return -EFAULT;
    };
    if flags & !(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW | 0x800) != 0 {
        return -EINVAL;
    }
    match statx_raw(dirfd, path, flags, 0x7ff) {
        Ok(p) => {
            // SAFETY: p is the 256-byte statx the host wrote in the shared block.
            let x = unsafe { core::slice::from_raw_parts(p, STATX_SIZE as usize) };
            stat_from_statx(x, dst);
            0
        }
        Err(e) => e,
    }
}

/// mkdirat (258), unlinkat (263), readlinkat (267): one path and plain integers.
pub(super) fn path_op(nr: u64, dirfd: u64, path: u64, a1: u64) -> i64 {
    match dir_and_path(dirfd, path, HOST_PAYLOAD) {
        Ok((dir, _)) => host_unit(hcall(nr, &[dir, a1])),
        Err(e) => e,
    }
}

pub(super) fn readlinkat(dirfd: u64, path: u64, buf: u64, len: u64) -> i64 {
    let Some(dst) = user_slice(buf, len) else {
        return -EFAULT;
    };
    let dir = match dir_and_path(dirfd, path, HOST_PAYLOAD) {
        Ok((d, _)) => d,
        Err(e) => return e,
    };
    let max = len.min(HOST_PATH_MAX);
    match host_count(hcall(267, &[dir, max]), max) {
        Ok(n) => {
            // SAFETY: the host wrote n <= max bytes at HOST_PAYLOAD; dst holds len >= max.
            unsafe { memcpy(dst.as_mut_ptr(), HOST_PAYLOAD as *const u8, n as usize) };
            n as i64
        }
        Err(e) => e,
    }
}

/// renameat2 (316) and linkat (265): two directory handles and two paths.
pub(super) fn two_paths(nr: u64, olddir: u64, old: u64, newdir: u64, new: u64, flags: u64) -> i64 {
    let (od, _) = match dir_and_path(olddir, old, HOST_PAYLOAD) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let (nd, _) = match dir_and_path(newdir, new, HOST_PATH2) {
        Ok(x) => x,
        Err(e) => return e,
    };
    host_unit(hcall(nr, &[od, nd, flags]))
}

pub(super) fn symlinkat(target: u64, newdir: u64, link: u64) -> i64 {
    if let Err(e) = put_path(target, HOST_PAYLOAD, false) {
        return e;
    }
    match dir_and_path(newdir, link, HOST_PATH2) {
        Ok((d, _)) => host_unit(hcall(266, &[d])),
        Err(e) => e,
    }
}

pub(super) fn utimensat(dirfd: u64, path: u64, times: u64, flags: u64) -> i64 {
    let mut a = [0u64; 7];
    if times != 0 {
        for (i, v) in a[3..7].iter_mut().enumerate() {
            match get_u64(times + 8 * i as u64) {
                Some(x) => *v = x,
                None => return -EFAULT,
            }
        }
        a[2] = 1;
    }
    a[1] = flags;
    if path == 0 {
        match handle(dirfd) {
            Ok(h) => a[0] = h,
            Err(e) => return e,
        }
        // SAFETY: the payload area holds at least one byte.
        unsafe { write_volatile(HOST_PAYLOAD as *mut u8, 0) };
    } else {
        match dir_and_path(dirfd, path, HOST_PAYLOAD) {
            Ok((d, _)) => a[0] = d,
            Err(e) => return e,
        }
    }
    host_unit(hcall(280, &a))
}

// ---- sockets ----

pub(super) fn socket(domain: u64, ty: u64, proto: u64) -> i64 {
    const SOCK_NONBLOCK: u64 = 0o4000;
    const SOCK_CLOEXEC: u64 = 0o2000000;
    if ty & !(0xf | SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return -EINVAL;
    }
    match host_handle(hcall(41, &[domain, ty & 0xf, proto])) {
        Ok(h) => install(h, ty & SOCK_NONBLOCK != 0),
        Err(e) => e,
    }
}

fn put_sockaddr(addr: u64, len: u64) -> Result<(), i64> {
    if len > SOCKADDR_MAX {
        return Err(-EINVAL);
    }
    let src = user_slice(addr, len).ok_or(-EFAULT)?;
    // SAFETY: len <= SOCKADDR_MAX bytes into the payload area.
    unsafe { memcpy(HOST_PAYLOAD as *mut u8, src.as_ptr(), len as usize) };
    Ok(())
}

/// Copies a host socket address of `n` bytes at `src` to the caller's (addr, *addrlen).
fn give_sockaddr(src: u64, n: u64, addr: u64, addrlen: u64) -> i64 {
    if addr == 0 {
        return 0;
    }
    let Some(cap) = get_u32(addrlen) else {
        return -EFAULT;
    };
    let k = (cap as u64).min(n);
    let Some(dst) = user_slice(addr, k) else {
        return -EFAULT;
    };
    // SAFETY: k <= n <= SOCKADDR_MAX bytes, written by the host at src.
    unsafe { memcpy(dst.as_mut_ptr(), src as *const u8, k as usize) };
    match user_slice(addrlen, 4) {
        Some(l) => {
            l.copy_from_slice(&(n as u32).to_le_bytes());
            0
        }
        None => -EFAULT,
    }
}

pub(super) fn bind_connect(nr: u64, fd: u64, addr: u64, len: u64) -> i64 {
    let h = match handle(fd) {
        Ok(h) => h,
        Err(e) => return if e == -EINVAL { -ENOTSOCK } else { e },
    };
    if let Err(e) = put_sockaddr(addr, len) {
        return e;
    }
    let r = host_unit(hcall(nr, &[h, len]));
    if nr != 42 || r != -EINPROGRESS || shim().nonblock[fd as usize] {
        return r;
    }
    // A blocking connect: wait until it completes, then ask again for the outcome.
    loop {
        wait_for(fd, POLLOUT);
        if put_sockaddr(addr, len).is_err() {
            return -EFAULT;
        }
        let h = match handle(fd) {
            Ok(h) => h,
            Err(e) => return e,
        };
        match host_unit(hcall(42, &[h, len])) {
            r if r == -EISCONN => return 0,
            r if r == -EALREADY || r == -EINPROGRESS => continue,
            r => return r,
        }
    }
}

pub(super) fn listen(fd: u64, backlog: u64) -> i64 {
    match handle(fd) {
        Ok(h) => host_unit(hcall(50, &[h, backlog])),
        Err(e) => e,
    }
}

pub(super) fn accept(fd: u64, addr: u64, addrlen: u64, flags: u64) -> i64 {
    const SOCK_NONBLOCK: u64 = 0o4000;
    const SOCK_CLOEXEC: u64 = 0o2000000;
    if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return -EINVAL;
    }
    let mut newh = 0;
    let r = blocking(fd, POLLIN, false, || {
        let h = match handle(fd) {
            Ok(h) => h,
            Err(e) => return e,
        };
        match host_handle(hcall(288, &[h])) {
            Ok(nh) => {
                newh = nh;
                0
            }
            Err(e) => e,
        }
    });
    if r < 0 {
        return r;
    }
    // SAFETY: the host wrote [len u64][address] at HOST_PAYLOAD.
    let n = unsafe { read_volatile(HOST_PAYLOAD as *const u64) };
    let nfd = install(newh, flags & SOCK_NONBLOCK != 0);
    if nfd >= 0 && n <= SOCKADDR_MAX {
        let r = give_sockaddr(HOST_PAYLOAD + 8, n, addr, addrlen);
        if r < 0 {
            return r;
        }
    }
    nfd
}

pub(super) fn sockname(nr: u64, fd: u64, addr: u64, addrlen: u64) -> i64 {
    let h = match handle(fd) {
        Ok(h) => h,
        Err(e) => return e,
    };
    match host_count(hcall(nr, &[h]), SOCKADDR_MAX) {
        Ok(n) => give_sockaddr(HOST_PAYLOAD, n, addr, addrlen),
        Err(e) => e,
    }
}

pub(super) fn sendto(fd: u64, buf: u64, len: u64, flags: u64, addr: u64) -> i64 {
    if addr != 0 {
        return -EISCONN;
    }
    let Some(src) = user_slice(buf, len) else {
        return -EFAULT;
    };
    write(fd, src, 44, flags)
}

pub(super) fn recvfrom(fd: u64, buf: u64, len: u64, flags: u64, addr: u64, addrlen: u64) -> i64 {
    let Some(dst) = user_slice(buf, len) else {
        return -EFAULT;
    };
    let r = read(fd, dst, 45, flags);
    if r >= 0 && addr != 0 {
        // A connected TCP socket has no source address to report.
        if let Some(l) = user_slice(addrlen, 4) {
            l.fill(0);
        }
    }
    r
}

pub(super) fn shutdown(fd: u64, how: u64) -> i64 {
    match handle(fd) {
        Ok(h) => {
            if how > 2 {
                return -EINVAL;
            }
            host_unit(hcall(48, &[h, how]))
        }
        Err(e) => e,
    }
}

pub(super) fn sockopt(nr: u64, fd: u64, level: u64, name: u64, val: u64, len_arg: u64) -> i64 {
    let h = match handle(fd) {
        Ok(h) => h,
        Err(e) => return e,
    };
    if nr == 54 {
        if len_arg > 16 {
            return -EINVAL;
        }
        let Some(src) = user_slice(val, len_arg) else {
            return -EFAULT;
        };
        // SAFETY: <= 16 bytes into the payload area.
        unsafe { memcpy(HOST_PAYLOAD as *mut u8, src.as_ptr(), src.len()) };
        return host_unit(hcall(54, &[h, level, name, len_arg]));
    }
    let Some(cap) = get_u32(len_arg) else {
        return -EFAULT;
    };
    let want = (cap as u64).min(16);
    match host_count(hcall(55, &[h, level, name, want]), want) {
        Ok(n) => {
            let Some(dst) = user_slice(val, n) else {
                return -EFAULT;
            };
            // SAFETY: n <= want <= 16 bytes written by the host at HOST_PAYLOAD.
            unsafe { memcpy(dst.as_mut_ptr(), HOST_PAYLOAD as *const u8, n as usize) };
            match user_slice(len_arg, 4) {
                Some(l) => {
                    l.copy_from_slice(&(n as u32).to_le_bytes());
                    0
                }
                None => -EFAULT,
            }
        }
        Err(e) => e,
    }
}

const E2BIG: i64 = 7;
