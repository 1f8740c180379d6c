//! Host files and sockets of a kvm Keep: the VMM side of `OP_HOST` and `OP_POLL`.
//!
//! The guest names host objects by handles (indices into [`HostIo::handles`]). What it
//! may reach is fixed by [`HostResources`] (from the loader, i.e. Ward.toml):
//! - absolute paths only resolve to the configured preopen directories (and below
//!   them) and to a private scratch directory standing in for `/tmp`;
//! - every relative path is resolved beneath its directory handle with
//!   `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, whatever the guest asked;
//!   operations on a name (mkdir, unlink, rename, link, symlink) first resolve its
//!   parent that way and then act on one plain component;
//! - anything that writes is refused below a read-only preopen;
//! - only regular files, directories (and `O_PATH` handles) can be opened;
//! - sockets are TCP; `bind` only to a configured listen address, `connect` only to a
//!   configured connect address. Host sockets are always non-blocking: the shim waits
//!   with `OP_POLL`, so one blocked guest thread never stops the others.
//!
//! Every host call here is non-blocking except `OP_POLL`, which wakes for stop requests.

use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use ward_shim::abi::*;

use crate::vcpu::Stop;

/// Host resources a kvm Keep may use (from the loader's configuration). Not part of
/// the launch measurement: they are the host's policy, enforced by the VMM.
#[derive(Clone, Debug, Default)]
pub struct HostResources {
    /// Directories the guest may open by their absolute host path, and below.
    pub dirs: Vec<HostDir>,
    /// Addresses the guest may `bind` (port 0: any free port on that address).
    pub listen: Vec<SocketAddr>,
    /// Addresses the guest may `connect` to.
    pub connect: Vec<SocketAddr>,
    /// Give the guest a private, initially empty `/tmp` (a host temporary directory
    /// removed when the Keep ends). `ward-keep` needs one when the workload has sockets.
    pub scratch: bool,
}

/// A host directory the guest may use.
#[derive(Clone, Debug)]
pub struct HostDir {
    /// Absolute host path.
    pub path: PathBuf,
    /// Whether the guest may create, write, rename and delete below it.
    pub writable: bool,
}

struct Handle {
    fd: OwnedFd,
    writable: bool,
}

pub(crate) struct HostIo {
    res: HostResources,
    handles: Vec<Option<Handle>>,
    scratch: Option<tempfile::TempDir>,
}

const O_ACCMODE: u64 = 3;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;
const O_APPEND: u64 = 0o2000;
const O_NONBLOCK: u64 = 0o4000;
const O_PATH: u64 = 0o10000000;
const O_DIRECTORY: u64 = 0o200000;
const O_NOFOLLOW: u64 = 0o400000;
const O_TMPFILE_ONLY: u64 = 0o20000000;
const OPEN_ALLOWED: u64 = O_ACCMODE
    | O_CREAT
    | 0o200 // O_EXCL
    | 0o400 // O_NOCTTY
    | O_TRUNC
    | O_APPEND
    | O_NONBLOCK
    | 0o10000 // O_DSYNC
    | 0o100000 // O_LARGEFILE
    | O_DIRECTORY
    | O_NOFOLLOW
    | 0o1000000 // O_NOATIME
    | 0o2000000 // O_CLOEXEC
    | 0o4000000 // __O_SYNC
    | O_PATH;
const RESOLVE_NO_XDEV: u64 = 0x01;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_BENEATH: u64 = 0x08;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const AT_REMOVEDIR: u64 = 0x200;
const AT_EMPTY_PATH: u64 = 0x1000;

fn errno() -> i64 {
    -(std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO) as i64)
}

/// A libc return value: the value, or the negated errno.
fn ret(r: i64) -> Result<i64, i64> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2` on the host, always with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`.
fn openat2_beneath(
    dir: RawFd,
    path: &CString,
    flags: u64,
    mode: u64,
    resolve: u64,
) -> Result<i64, i64> {
    // openat2 is strict where openat is lenient: O_PATH takes only O_CLOEXEC,
    // O_DIRECTORY and O_NOFOLLOW, and a mode only goes with O_CREAT.
    let flags = if flags & O_PATH != 0 {
        flags & (O_PATH | O_DIRECTORY | O_NOFOLLOW)
    } else {
        flags | libc::O_NOCTTY as u64
    } | libc::O_CLOEXEC as u64;
    let how = OpenHow {
        flags,
        mode: if flags & O_CREAT != 0 { mode } else { 0 },
        resolve: resolve | RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: valid NUL-terminated path and open_how of the size passed.
    ret(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    })
}

fn owned(fd: i64) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open/accept/socket/dup and is
    // owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// Splits `a/b/c` into (`a/b`, `c`), refusing names that are not one plain component.
fn split_parent(path: &[u8]) -> Result<(CString, CString), i64> {
    let mut p = path;
    while p.len() > 1 && p.ends_with(b"/") {
        p = &p[..p.len() - 1];
    }
    let (dir, name) = match p.iter().rposition(|&b| b == b'/') {
        Some(0) => (&b"/"[..], &p[1..]),
        Some(i) => (&p[..i], &p[i + 1..]),
        None => (&b"."[..], p),
    };
    if name.is_empty() || name == b"." || name == b".." {
        return Err(-EINVAL);
    }
    Ok((cstr(dir)?, cstr(name)?))
}

fn cstr(b: &[u8]) -> Result<CString, i64> {
    CString::new(b).map_err(|_| -EINVAL)
}

impl HostIo {
    pub(crate) fn new(res: HostResources) -> Self {
        Self {
            res,
            handles: Vec::new(),
            scratch: None,
        }
    }

    fn handle(&self, h: u64) -> Result<&Handle, i64> {
        self.handles
            .get(h as usize)
            .and_then(|x| x.as_ref())
            .ok_or(-EBADF)
    }

    fn fd(&self, h: u64) -> Result<RawFd, i64> {
        Ok(self.handle(h)?.fd.as_raw_fd())
    }

    fn insert(&mut self, fd: OwnedFd, writable: bool) -> Result<i64, i64> {
        let h = Handle { fd, writable };
        if let Some(i) = self.handles.iter().position(|x| x.is_none()) {
            self.handles[i] = Some(h);
            return Ok(i as i64);
        }
        if self.handles.len() as u64 >= MAX_HANDLES {
            return Err(-EMFILE);
        }
        self.handles.push(Some(h));
        Ok(self.handles.len() as i64 - 1)
    }

    /// The scratch directory standing in for `/tmp`, created on first use.
    fn scratch(&mut self) -> Result<RawFd, i64> {
        if !self.res.scratch {
            return Err(-ENOENT);
        }
        if self.scratch.is_none() {
            let d = tempfile::Builder::new()
                .prefix("ward-kvm-tmp-")
                .tempdir()
                .map_err(|e| -(e.raw_os_error().unwrap_or(libc::EIO) as i64))?;
            self.scratch = Some(d);
        }
        let path = self.scratch.as_ref().map(|d| d.path().to_path_buf());
        let path = path.ok_or(-ENOENT)?;
        // Re-opened per use (cheap, and no fd to leak into the handle table).
        let c = cstr(path.as_os_str().as_encoded_bytes())?;
        // SAFETY: valid NUL-terminated path.
        let fd = ret(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        } as i64)?;
        Ok(fd as RawFd)
    }

    /// Resolves a directory handle + path to (base fd, path relative to it, writable,
    /// a temporary fd to close afterwards).
    fn base(&mut self, dir: u64, path: &[u8]) -> Result<Base, i64> {
        if dir != HANDLE_ROOT {
            let h = self.handle(dir)?;
            if path.starts_with(b"/") {
                return Err(-EXDEV_OR_PERM);
            }
            return Ok(Base {
                fd: h.fd.as_raw_fd(),
                rel: path.to_vec(),
                writable: h.writable,
                temp: None,
            });
        }
        if !path.starts_with(b"/") {
            return Err(-ENOENT);
        }
        for d in &self.res.dirs {
            let root = d.path.as_os_str().as_encoded_bytes();
            let root = if root.len() > 1 {
                root.strip_suffix(b"/").unwrap_or(root)
            } else {
                root
            };
            let rest = if path == root {
                Some(&b"."[..])
            } else if root == b"/" {
                Some(&path[1..])
            } else {
                path.strip_prefix(root).and_then(|r| r.strip_prefix(b"/"))
            };
            if let Some(rest) = rest {
                let c = cstr(root)?;
                // SAFETY: valid NUL-terminated path.
                let fd = ret(unsafe {
                    libc::open(
                        c.as_ptr(),
                        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                    )
                } as i64)?;
                return Ok(Base::beneath(owned(fd), rest, d.writable));
            }
        }
        let rest = if path == b"/tmp" {
            Some(&b"."[..])
        } else {
            path.strip_prefix(b"/tmp/")
        };
        if let Some(rest) = rest {
            return Ok(Base::beneath(owned(self.scratch()? as i64), rest, true));
        }
        Err(-ENOENT)
    }

    /// Opens the parent of `path` (beneath `dir`) as an `O_PATH` directory; returns it
    /// with the last component.
    fn parent(&mut self, dir: u64, path: &[u8], write: bool) -> Result<(OwnedFd, CString), i64> {
        let b = self.base(dir, path)?;
        if write && !b.writable {
            return Err(-EROFS);
        }
        let (pdir, name) = split_parent(&b.rel)?;
        let fd = openat2_beneath(b.fd, &pdir, O_PATH | O_DIRECTORY, 0, 0)?;
        Ok((owned(fd), name))
    }

    /// Serves one `OP_HOST` request: `nr` is the Linux system call it stands for.
    pub(crate) fn call(&mut self, mem: &GuestMemoryMmap, nr: u64) -> i64 {
        let mut a = [0u64; HOST_ARGS];
        for (i, v) in a.iter_mut().enumerate() {
            *v = mem
                .read_obj::<u64>(GuestAddress(SHARED_DATA + 8 * i as u64))
                .unwrap_or(0);
        }
        match self.dispatch(mem, nr, &a) {
            Ok(v) => v,
            Err(e) => e,
        }
    }

    fn dispatch(
        &mut self,
        mem: &GuestMemoryMmap,
        nr: u64,
        a: &[u64; HOST_ARGS],
    ) -> Result<i64, i64> {
        let out = |bytes: &[u8]| -> Result<(), i64> {
            mem.write_slice(bytes, GuestAddress(HOST_PAYLOAD))
                .map_err(|_| -EIO)
        };
        let input = |len: u64| -> Result<Vec<u8>, i64> {
            let mut v = vec![0u8; len.min(HOST_PAYLOAD_LEN) as usize];
            mem.read_slice(&mut v, GuestAddress(HOST_PAYLOAD))
                .map_err(|_| -EIO)?;
            Ok(v)
        };
        let path_at = |gpa: u64| -> Result<Vec<u8>, i64> {
            let mut v = vec![0u8; HOST_PATH_MAX as usize];
            mem.read_slice(&mut v, GuestAddress(gpa))
                .map_err(|_| -EIO)?;
            let n = v.iter().position(|&b| b == 0).ok_or(-ENAMETOOLONG)?;
            v.truncate(n);
            Ok(v)
        };
        let cap = |len: u64| len.min(HOST_PAYLOAD_LEN) as usize;
        match nr {
            // read, pread64, recvfrom
            0 | 17 | 45 => {
                let fd = self.fd(a[0])?;
                let mut buf = vec![0u8; cap(a[1])];
                // SAFETY: buf is valid for buf.len() bytes.
                let n = ret(unsafe {
                    match nr {
                        0 => libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) as i64,
                        17 => {
                            libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), a[2] as i64) as i64
                        }
                        _ => {
                            let flags = recv_flags(a[2])?;
                            libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) as i64
                        }
                    }
                })?;
                let n = (n as usize).min(buf.len());
                out(&buf[..n])?;
                Ok(n as i64)
            }
            // write, pwrite64, sendto
            1 | 18 | 44 => {
                let h = self.handle(a[0])?;
                let fd = h.fd.as_raw_fd();
                let buf = input(a[1])?;
                // SAFETY: buf is valid for buf.len() bytes.
                ret(unsafe {
                    match nr {
                        1 => libc::write(fd, buf.as_ptr().cast(), buf.len()) as i64,
                        18 => libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), a[2] as i64) as i64,
                        _ => {
                            let flags = send_flags(a[2])?;
                            libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) as i64
                        }
                    }
                })
                .map(|n| n.min(buf.len() as i64))
            }
            3 => {
                let h = self
                    .handles
                    .get_mut(a[0] as usize)
                    .and_then(|x| x.take())
                    .ok_or(-EBADF)?;
                drop(h);
                Ok(0)
            }
            // lseek
            8 => {
                let fd = self.fd(a[0])?;
                if a[2] > 4 {
                    return Err(-EINVAL);
                }
                // SAFETY: plain fd call.
                ret(unsafe { libc::lseek(fd, a[1] as i64, a[2] as i32) })
            }
            // dup
            32 => {
                let h = self.handle(a[0])?;
                let w = h.writable;
                let fd =
                    h.fd.try_clone()
                        .map_err(|e| -(e.raw_os_error().unwrap_or(5) as i64))?;
                self.insert(fd, w)
            }
            // fcntl: F_GETFL / F_SETFL (O_APPEND only; O_NONBLOCK is the shim's business)
            72 => {
                let h = self.handle(a[0])?;
                let fd = h.fd.as_raw_fd();
                match a[1] {
                    3 => {
                        // SAFETY: plain fd call.
                        let fl = ret(unsafe { libc::fcntl(fd, libc::F_GETFL) } as i64)?;
                        Ok(fl & !(O_NONBLOCK as i64))
                    }
                    4 => {
                        if a[2] & O_APPEND != 0 && !h.writable {
                            return Err(-EROFS);
                        }
                        // SAFETY: plain fd call.
                        let fl = ret(unsafe { libc::fcntl(fd, libc::F_GETFL) } as i64)?;
                        let new = (fl & !(O_APPEND as i64)) | (a[2] & O_APPEND) as i64;
                        // SAFETY: plain fd call.
                        ret(unsafe { libc::fcntl(fd, libc::F_SETFL, new as libc::c_int) } as i64)
                    }
                    _ => Err(-EINVAL),
                }
            }
            // fsync, fdatasync
            74 | 75 => {
                let fd = self.fd(a[0])?;
                // SAFETY: plain fd calls.
                ret(unsafe {
                    if nr == 74 {
                        libc::fsync(fd)
                    } else {
                        libc::fdatasync(fd)
                    }
                } as i64)
            }
            // ftruncate
            77 => {
                let h = self.handle(a[0])?;
                if !h.writable {
                    return Err(-EROFS);
                }
                // SAFETY: plain fd call.
                ret(unsafe { libc::ftruncate(h.fd.as_raw_fd(), a[1] as i64) } as i64)
            }
            // fadvise64
            221 => {
                let fd = self.fd(a[0])?;
                // SAFETY: plain fd call; returns the error number directly.
                let e = unsafe {
                    libc::posix_fadvise(fd, a[1] as i64, a[2] as i64, a[3] as libc::c_int)
                };
                if e == 0 {
                    Ok(0)
                } else {
                    Err(-(e as i64))
                }
            }
            // getdents64
            217 => {
                let fd = self.fd(a[0])?;
                let mut buf = vec![0u8; cap(a[1])];
                // SAFETY: buf is valid for buf.len() bytes.
                let n = ret(unsafe {
                    libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len())
                })?;
                let n = (n as usize).min(buf.len());
                out(&buf[..n])?;
                Ok(n as i64)
            }
            // openat / openat2: a = [dir, flags, mode, resolve]
            257 => {
                let path = path_at(HOST_PAYLOAD)?;
                self.open(a[0], &path, a[1], a[2], a[3])
            }
            // statx: a = [dir, flags, mask]
            332 => {
                let path = path_at(HOST_PAYLOAD)?;
                let buf = self.statx(a[0], &path, a[1], a[2])?;
                out(&buf)?;
                Ok(STATX_SIZE as i64)
            }
            // mkdirat: a = [dir, mode]
            258 => {
                let path = path_at(HOST_PAYLOAD)?;
                let (p, name) = self.parent(a[0], &path, true)?;
                // SAFETY: valid fd and NUL-terminated name.
                ret(
                    unsafe { libc::mkdirat(p.as_raw_fd(), name.as_ptr(), (a[1] & 0o7777) as u32) }
                        as i64,
                )
            }
            // unlinkat: a = [dir, flags]
            263 => {
                if a[1] & !AT_REMOVEDIR != 0 {
                    return Err(-EINVAL);
                }
                let path = path_at(HOST_PAYLOAD)?;
                let (p, name) = self.parent(a[0], &path, true)?;
                // SAFETY: valid fd and NUL-terminated name.
                ret(unsafe { libc::unlinkat(p.as_raw_fd(), name.as_ptr(), a[1] as i32) } as i64)
            }
            // renameat2: a = [olddir, newdir, flags]; linkat: a = [olddir, newdir, flags]
            316 | 265 => {
                let allowed = if nr == 316 { 1 | 2 } else { 0 }; // NOREPLACE, EXCHANGE
                if a[2] & !allowed != 0 {
                    return Err(-EINVAL);
                }
                let (old, new) = (path_at(HOST_PAYLOAD)?, path_at(HOST_PATH2)?);
                let (po, no) = self.parent(a[0], &old, true)?;
                let (pn, nn) = self.parent(a[1], &new, true)?;
                // SAFETY: valid fds and NUL-terminated names.
                ret(unsafe {
                    if nr == 316 {
                        libc::syscall(
                            libc::SYS_renameat2,
                            po.as_raw_fd(),
                            no.as_ptr(),
                            pn.as_raw_fd(),
                            nn.as_ptr(),
                            a[2] as libc::c_uint,
                        )
                    } else {
                        libc::linkat(po.as_raw_fd(), no.as_ptr(), pn.as_raw_fd(), nn.as_ptr(), 0)
                            as i64
                    }
                })
            }
            // symlinkat: a = [newdir]; target at HOST_PAYLOAD, link name at HOST_PATH2
            266 => {
                let target = cstr(&path_at(HOST_PAYLOAD)?)?;
                let link = path_at(HOST_PATH2)?;
                let (p, name) = self.parent(a[0], &link, true)?;
                // SAFETY: valid fd and NUL-terminated strings.
                ret(
                    unsafe { libc::symlinkat(target.as_ptr(), p.as_raw_fd(), name.as_ptr()) }
                        as i64,
                )
            }
            // readlinkat: a = [dir, bufsize]
            267 => {
                let path = path_at(HOST_PAYLOAD)?;
                let fd = self.resolve(a[0], &path, O_PATH | O_NOFOLLOW)?;
                let mut buf = vec![0u8; cap(a[1]).min(HOST_PATH_MAX as usize)];
                let empty = c"";
                // SAFETY: valid fd, empty path (the fd itself), buffer of buf.len().
                let n = ret(unsafe {
                    libc::readlinkat(
                        fd.as_raw_fd(),
                        empty.as_ptr(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                    )
                } as i64)?;
                let n = (n as usize).min(buf.len());
                out(&buf[..n])?;
                Ok(n as i64)
            }
            // utimensat: a = [dir, flags, has_times, atime s, atime ns, mtime s, mtime ns]
            280 => {
                let path = path_at(HOST_PAYLOAD)?;
                let ts = [
                    libc::timespec {
                        tv_sec: a[3] as i64,
                        tv_nsec: a[4] as i64,
                    },
                    libc::timespec {
                        tv_sec: a[5] as i64,
                        tv_nsec: a[6] as i64,
                    },
                ];
                let tp = if a[2] != 0 {
                    ts.as_ptr()
                } else {
                    std::ptr::null()
                };
                if path.is_empty() {
                    let h = self.handle(a[0])?;
                    if !h.writable {
                        return Err(-EROFS);
                    }
                    // SAFETY: valid fd; NULL path means the fd itself; tp null or 2 timespecs.
                    return ret(unsafe {
                        libc::syscall(
                            libc::SYS_utimensat,
                            h.fd.as_raw_fd(),
                            std::ptr::null::<u8>(),
                            tp,
                            0,
                        )
                    });
                }
                if a[1] != AT_SYMLINK_NOFOLLOW {
                    // Following the last symlink cannot be confined; WASI asks without.
                    return Err(-EOPNOTSUPP);
                }
                let (p, name) = self.parent(a[0], &path, true)?;
                // SAFETY: valid fd and name; tp null or 2 timespecs.
                ret(unsafe {
                    libc::utimensat(p.as_raw_fd(), name.as_ptr(), tp, libc::AT_SYMLINK_NOFOLLOW)
                } as i64)
            }
            // socket: a = [domain, type, protocol]
            41 => {
                if a[0] != libc::AF_INET as u64 && a[0] != libc::AF_INET6 as u64 {
                    return Err(-EAFNOSUPPORT);
                }
                if a[1] != libc::SOCK_STREAM as u64 || (a[2] != 0 && a[2] != 6) {
                    return Err(-EACCES);
                }
                if self.res.listen.is_empty() && self.res.connect.is_empty() {
                    return Err(-EACCES);
                }
                // SAFETY: plain socket call.
                let fd = ret(unsafe {
                    libc::socket(
                        a[0] as i32,
                        libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        a[2] as i32,
                    )
                } as i64)?;
                self.insert(owned(fd), false)
            }
            // bind, connect: a = [handle, addrlen]
            49 | 42 => {
                let fd = self.fd(a[0])?;
                let raw = input(a[1].min(SOCKADDR_MAX))?;
                let addr = parse_sockaddr(&raw).ok_or(-EINVAL)?;
                let allowed = if nr == 49 {
                    &self.res.listen
                } else {
                    &self.res.connect
                };
                if !allowed
                    .iter()
                    .any(|x| x.ip() == addr.ip() && x.port() == addr.port())
                {
                    return Err(-EACCES);
                }
                let (sa, len) = to_sockaddr(&addr);
                // SAFETY: sa holds a valid sockaddr of `len` bytes.
                ret(unsafe {
                    if nr == 49 {
                        libc::bind(fd, sa.as_ptr().cast(), len)
                    } else {
                        libc::connect(fd, sa.as_ptr().cast(), len)
                    }
                } as i64)
            }
            // listen
            50 => {
                let fd = self.fd(a[0])?;
                // SAFETY: plain fd call.
                ret(unsafe { libc::listen(fd, a[1].min(4096) as i32) } as i64)
            }
            // accept4: output [addrlen u64][addr]
            288 => {
                let fd = self.fd(a[0])?;
                let mut sa = [0u8; SOCKADDR_MAX as usize];
                let mut len = sa.len() as libc::socklen_t;
                // SAFETY: sa/len describe a writable buffer.
                let nfd = ret(unsafe {
                    libc::accept4(
                        fd,
                        sa.as_mut_ptr().cast(),
                        &mut len,
                        libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    )
                } as i64)?;
                let nfd = owned(nfd);
                let len = (len as usize).min(sa.len());
                let mut o = (len as u64).to_le_bytes().to_vec();
                o.extend_from_slice(&sa[..len]);
                out(&o)?;
                self.insert(nfd, false)
            }
            // getsockname, getpeername
            51 | 52 => {
                let fd = self.fd(a[0])?;
                let mut sa = [0u8; SOCKADDR_MAX as usize];
                let mut len = sa.len() as libc::socklen_t;
                // SAFETY: sa/len describe a writable buffer.
                ret(unsafe {
                    if nr == 51 {
                        libc::getsockname(fd, sa.as_mut_ptr().cast(), &mut len)
                    } else {
                        libc::getpeername(fd, sa.as_mut_ptr().cast(), &mut len)
                    }
                } as i64)?;
                let len = (len as usize).min(sa.len());
                out(&sa[..len])?;
                Ok(len as i64)
            }
            // shutdown
            48 => {
                let fd = self.fd(a[0])?;
                if a[1] > 2 {
                    return Err(-EINVAL);
                }
                // SAFETY: plain fd call.
                ret(unsafe { libc::shutdown(fd, a[1] as i32) } as i64)
            }
            // setsockopt / getsockopt: a = [handle, level, name, optlen]
            54 | 55 => {
                let fd = self.fd(a[0])?;
                if !sockopt_allowed(a[1], a[2], nr == 54) {
                    return Err(-ENOPROTOOPT);
                }
                let mut v = input(a[3].min(16))?;
                let mut len = v.len() as libc::socklen_t;
                // SAFETY: v is valid for len bytes.
                ret(unsafe {
                    if nr == 54 {
                        libc::setsockopt(fd, a[1] as i32, a[2] as i32, v.as_ptr().cast(), len)
                    } else {
                        libc::getsockopt(
                            fd,
                            a[1] as i32,
                            a[2] as i32,
                            v.as_mut_ptr().cast(),
                            &mut len,
                        )
                    }
                } as i64)?;
                if nr == 55 {
                    let len = (len as usize).min(v.len());
                    out(&v[..len])?;
                    return Ok(len as i64);
                }
                Ok(0)
            }
            _ => Err(-libc::ENOSYS as i64),
        }
    }

    /// Opens `path` beneath `dir` as an `O_PATH` fd (for stat and readlink).
    fn resolve(&mut self, dir: u64, path: &[u8], flags: u64) -> Result<OwnedFd, i64> {
        let b = self.base(dir, path)?;
        let c = cstr(&b.rel)?;
        let fd = openat2_beneath(b.fd, &c, flags, 0, 0)?;
        Ok(owned(fd))
    }

    fn open(
        &mut self,
        dir: u64,
        path: &[u8],
        flags: u64,
        mode: u64,
        resolve: u64,
    ) -> Result<i64, i64> {
        if flags & O_TMPFILE_ONLY != 0 {
            return Err(-EOPNOTSUPP);
        }
        if flags & !OPEN_ALLOWED != 0
            || resolve
                & !(RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH)
                != 0
        {
            return Err(-EINVAL);
        }
        if path.is_empty() {
            return Err(-ENOENT);
        }
        let b = self.base(dir, path)?;
        let writes = flags & O_ACCMODE != 0 || flags & (O_CREAT | O_TRUNC | O_APPEND) != 0;
        if writes && !b.writable {
            return Err(-EROFS);
        }
        let c = cstr(&b.rel)?;
        // O_NONBLOCK so a FIFO cannot hang the VMM; only files and directories are kept.
        let nb = if flags & O_PATH == 0 { O_NONBLOCK } else { 0 };
        let fd = owned(openat2_beneath(
            b.fd,
            &c,
            flags | nb,
            mode & 0o7777,
            resolve,
        )?);
        // SAFETY: zeroed stat is a valid out-buffer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd, valid out-pointer.
        ret(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } as i64)?;
        let fmt = st.st_mode & libc::S_IFMT;
        if flags & O_PATH == 0 {
            if fmt != libc::S_IFREG && fmt != libc::S_IFDIR {
                return Err(-EACCES);
            }
            if flags & O_NONBLOCK == 0 {
                // SAFETY: plain fd calls.
                unsafe {
                    let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
                    if fl >= 0 {
                        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
                    }
                }
            }
        }
        self.insert(fd, b.writable)
    }

    fn statx(&mut self, dir: u64, path: &[u8], flags: u64, mask: u64) -> Result<[u8; 256], i64> {
        const AT_NO_AUTOMOUNT: u64 = 0x800;
        const AT_STATX_SYNC_TYPE: u64 = 0x6000;
        if flags & !(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_STATX_SYNC_TYPE)
            != 0
        {
            return Err(-EINVAL);
        }
        let tmp;
        let fd = if path.is_empty() {
            if flags & AT_EMPTY_PATH == 0 || dir == HANDLE_ROOT {
                return Err(-ENOENT);
            }
            self.fd(dir)?
        } else {
            let nofollow = if flags & AT_SYMLINK_NOFOLLOW != 0 {
                O_NOFOLLOW
            } else {
                0
            };
            tmp = self.resolve(dir, path, O_PATH | nofollow)?;
            tmp.as_raw_fd()
        };
        let mut buf = [0u8; 256];
        let empty = c"";
        // SAFETY: valid fd, empty path with AT_EMPTY_PATH, 256-byte statx buffer.
        ret(unsafe {
            libc::syscall(
                libc::SYS_statx,
                fd,
                empty.as_ptr(),
                (AT_EMPTY_PATH | (flags & AT_STATX_SYNC_TYPE)) as libc::c_int,
                (mask & 0xfff) as libc::c_uint,
                buf.as_mut_ptr(),
            )
        })?;
        Ok(buf)
    }

    /// Serves `OP_POLL`: waits for the entries' handles (and the channel) or the timeout.
    pub(crate) fn poll(
        &mut self,
        mem: &GuestMemoryMmap,
        n: u64,
        timeout_ns: u64,
        channel: &UnixStream,
        stop: &Stop,
    ) -> Result<i64, ()> {
        let n = n.min(MAX_POLL) as usize;
        let mut raw = vec![0u8; n * 8];
        if mem.read_slice(&mut raw, GuestAddress(SHARED_DATA)).is_err() {
            return Ok(-EIO);
        }
        let mut pfds: Vec<libc::pollfd> = raw
            .chunks_exact(8)
            .map(|e| {
                let h = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
                let events =
                    u16::from_le_bytes([e[4], e[5]]) as i16 & (libc::POLLIN | libc::POLLOUT);
                let fd = if h == HANDLE_CHANNEL {
                    channel.as_raw_fd()
                } else {
                    // An unknown handle: an fd number that is never open gives POLLNVAL.
                    self.fd(h as u64).unwrap_or(i32::MAX)
                };
                libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                }
            })
            .collect();
        let deadline = Instant::now().checked_add(Duration::from_nanos(timeout_ns));
        let ready = loop {
            if stop.pending().is_some() {
                return Err(());
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_millis(100),
            };
            let ms = left.as_millis().min(100) as i32;
            let ms = if ms == 0 && !left.is_zero() { 1 } else { ms };
            // SAFETY: pfds is a valid array of pfds.len() pollfds.
            let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
            if r > 0 {
                break r as i64;
            }
            if r == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                break 0;
            }
            if r < 0 && errno() != -(libc::EINTR as i64) {
                return Ok(errno());
            }
        };
        for (i, p) in pfds.iter().enumerate() {
            let _ = mem.write_obj(
                p.revents as u16,
                GuestAddress(SHARED_DATA + 8 * i as u64 + 6),
            );
        }
        Ok(ready)
    }
}

struct Base {
    fd: RawFd,
    rel: Vec<u8>,
    writable: bool,
    /// Keeps a temporary root fd open while `fd` is used.
    #[allow(dead_code)]
    temp: Option<OwnedFd>,
}

impl Base {
    /// `rest` (`.` if empty) beneath a root directory opened for this one lookup.
    fn beneath(root: OwnedFd, rest: &[u8], writable: bool) -> Self {
        Self {
            fd: root.as_raw_fd(),
            rel: if rest.is_empty() {
                b".".to_vec()
            } else {
                rest.to_vec()
            },
            writable,
            temp: Some(root),
        }
    }
}

/// An absolute path relative to a handle: refused like the kernel refuses it under
/// `RESOLVE_BENEATH`.
const EXDEV_OR_PERM: i64 = 18; // EXDEV

fn recv_flags(f: u64) -> Result<i32, i64> {
    const PEEK: u64 = libc::MSG_PEEK as u64;
    const DONTWAIT: u64 = libc::MSG_DONTWAIT as u64;
    if f & !(PEEK | DONTWAIT) != 0 {
        return Err(-EOPNOTSUPP);
    }
    Ok((f | DONTWAIT) as i32)
}

fn send_flags(f: u64) -> Result<i32, i64> {
    const OK: u64 = (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | libc::MSG_MORE) as u64;
    if f & !OK != 0 {
        return Err(-EOPNOTSUPP);
    }
    Ok((f | (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as u64) as i32)
}

fn sockopt_allowed(level: u64, name: u64, set: bool) -> bool {
    match (level as i32, name as i32) {
        (
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR | libc::SO_KEEPALIVE | libc::SO_RCVBUF | libc::SO_SNDBUF,
        ) => true,
        (libc::SOL_SOCKET, libc::SO_ERROR | libc::SO_TYPE) => !set,
        (libc::IPPROTO_TCP, libc::TCP_NODELAY) => true,
        (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) => true,
        _ => false,
    }
}

/// A `sockaddr_in` / `sockaddr_in6` as bytes.
pub(crate) fn parse_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let fam = u16::from_le_bytes([*b.first()?, *b.get(1)?]);
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match fam as i32 {
        libc::AF_INET if b.len() >= 16 => {
            let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            Some(SocketAddr::new(IpAddr::V4(ip), port))
        }
        libc::AF_INET6 if b.len() >= 28 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[8..24]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port))
        }
        _ => None,
    }
}

fn to_sockaddr(a: &SocketAddr) -> ([u8; 28], libc::socklen_t) {
    let mut s = [0u8; 28];
    s[2..4].copy_from_slice(&a.port().to_be_bytes());
    match a.ip() {
        IpAddr::V4(ip) => {
            s[..2].copy_from_slice(&(libc::AF_INET as u16).to_le_bytes());
            s[4..8].copy_from_slice(&ip.octets());
            (s, 16)
        }
        IpAddr::V6(ip) => {
            s[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_le_bytes());
            s[8..24].copy_from_slice(&ip.octets());
            (s, 28)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_split() {
        let s = |p: &[u8]| split_parent(p).map(|(a, b)| (a.into_bytes(), b.into_bytes()));
        assert_eq!(s(b"a"), Ok((b".".to_vec(), b"a".to_vec())));
        assert_eq!(s(b"a/b/"), Ok((b"a".to_vec(), b"b".to_vec())));
        assert_eq!(s(b"/x"), Ok((b"/".to_vec(), b"x".to_vec())));
        assert_eq!(s(b"a/.."), Err(-EINVAL));
        assert_eq!(s(b"."), Err(-EINVAL));
        assert_eq!(s(b""), Err(-EINVAL));
    }

    #[test]
    fn sockaddr_round_trip() {
        for a in ["127.0.0.1:80", "[::1]:443"] {
            let a: SocketAddr = a.parse().unwrap();
            let (b, len) = to_sockaddr(&a);
            assert_eq!(parse_sockaddr(&b[..len as usize]), Some(a));
        }
        assert_eq!(parse_sockaddr(&[2, 0, 0]), None);
    }
}
