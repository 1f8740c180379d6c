//! WASI preview 1 sockets: `sock_accept`, `sock_recv`, `sock_send`, `sock_shutdown`.
//!
//! wasmtime-wasi 48 leaves these unimplemented, so Ward provides them. Socket fds live
//! in Ward's own [`SocketTable`]; every other fd stays in wasmtime-wasi's table. The
//! p1 functions that take an fd and can meet a socket (`fd_read`, `fd_write`,
//! `fd_close`, `fd_fdstat_get`, `fd_fdstat_set_flags`, `fd_prestat_get`,
//! `fd_prestat_dir_name`) are shadowed: a socket fd is served here, any other fd is
//! passed to wasmtime-wasi's own implementation unchanged.
//!
//! Fd numbering: wasmtime-wasi hands out fds upward from the last one it uses, so the
//! preopened sockets (right after the preopened dirs) are reserved in its table by
//! inert placeholder preopens, which this module hides from `fd_prestat_get`.
//! Accepted connections are numbered from [`ACCEPTED_FD_BASE`] up.
//!
//! Not supported on sockets: `poll_oneoff` readiness (blocking I/O only).
//!
//! TLS listeners (`prot = "tls"`): each accepted connection is wrapped in a rustls
//! server session with the Keep's Steward-issued certificate; the workload reads and
//! writes plaintext, the handshake happens on its first read or write, and shutdown
//! for writing sends close_notify. `MSG_PEEK` is not supported on TLS connections.
//! TLS connect sockets (`prot = "tls"` on `connect`) are rustls client sessions the
//! same way: the server is verified against the Steward's CA and the Keep's
//! certificate is presented as a client certificate.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;

use wasmtime::{AsContextMut, Caller, Linker};
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;
use wasmtime_wasi::p1::{types::Errno, wasi_snapshot_preview1 as p1, WasiP1Ctx};

use crate::sockets::WorkloadSocketHandle;

/// First fd number given to an accepted connection.
pub const ACCEPTED_FD_BASE: u32 = 0x4000;

/// Most simultaneously open accepted connections.
const MAX_CONNECTIONS: usize = 1024;

/// Largest single transfer for one call.
const MAX_IO: usize = 1 << 20;

const MODULE: &str = "wasi_snapshot_preview1";
const FILETYPE_SOCKET_STREAM: u8 = 6;
const FDFLAGS_NONBLOCK: u16 = 1 << 2;
const RIFLAGS_PEEK: i32 = 1;
const SDFLAGS_RD: i32 = 1;
const SDFLAGS_WR: i32 = 2;

enum Socket {
    /// A listener; with a TLS configuration, accepted connections speak TLS.
    Listener(TcpListener, Option<Arc<rustls::ServerConfig>>),
    Stream(Conn),
}

/// A connected stream: plain TCP, or TLS terminated here.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
    /// A connect socket with `prot = "tls"`: the Keep is the TLS client.
    TlsClient(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(t) => &t.sock,
            Conn::TlsClient(t) => &t.sock,
        }
    }

    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.peek(buf),
            Conn::Tls(_) | Conn::TlsClient(_) => Err(io::Error::from(io::ErrorKind::Unsupported)),
        }
    }

    fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        if how != Shutdown::Read {
            // Best effort: the peer may be gone, and a non-blocking socket may not
            // take it all now.
            match self {
                Conn::Plain(_) => {}
                Conn::Tls(t) => {
                    t.conn.send_close_notify();
                    let _ = t.flush();
                }
                Conn::TlsClient(t) => {
                    t.conn.send_close_notify();
                    let _ = t.flush();
                }
            }
        }
        self.tcp().shutdown(how)
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(t) => t.read(buf),
            Conn::TlsClient(t) => t.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(t) => flushed(t.write(buf)?, t.flush()),
            Conn::TlsClient(t) => flushed(t.write(buf)?, t.flush()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(t) => t.flush(),
            Conn::TlsClient(t) => t.flush(),
        }
    }
}

/// A TLS write of `n` plaintext bytes, then the flush that sends the records now
/// (the workload expects a write to be on its way). The plaintext is already taken:
/// on a non-blocking socket that is full, what is left goes out with the next read,
/// write or shutdown, and `n` must still be reported (or the workload would resend
/// it).
fn flushed(n: usize, flush: io::Result<()>) -> io::Result<usize> {
    match flush {
        Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
        _ => Ok(n),
    }
}

/// The workload's sockets, by fd.
#[derive(Default)]
pub(crate) struct SocketTable {
    sockets: HashMap<u32, Socket>,
    /// Fds whose O_NONBLOCK the guest set (std has no getter to report it back).
    nonblocking: std::collections::HashSet<u32>,
    /// Fds reserved in wasmtime-wasi's table by placeholder preopens.
    placeholders: std::ops::Range<u32>,
    next_accepted: u32,
}

impl SocketTable {
    /// A table holding `handles` at fds `first_fd..`.
    pub(crate) fn new(first_fd: u32, handles: Vec<WorkloadSocketHandle>) -> Self {
        let sockets: HashMap<u32, Socket> = handles
            .into_iter()
            .zip(first_fd..)
            .map(|(h, fd)| {
                let s = match h {
                    WorkloadSocketHandle::Listener(l) => Socket::Listener(l, None),
                    WorkloadSocketHandle::TlsListener(l, tls) => Socket::Listener(l, Some(tls)),
                    WorkloadSocketHandle::Stream(s) => Socket::Stream(Conn::Plain(s)),
                    WorkloadSocketHandle::TlsStream(t) => Socket::Stream(Conn::TlsClient(t)),
                };
                (fd, s)
            })
            .collect();
        let count = u32::try_from(sockets.len()).unwrap_or(u32::MAX);
        Self {
            sockets,
            nonblocking: Default::default(),
            placeholders: first_fd..first_fd.saturating_add(count),
            next_accepted: ACCEPTED_FD_BASE,
        }
    }

    fn is_socket(&self, fd: i32) -> bool {
        u32::try_from(fd).is_ok_and(|fd| self.sockets.contains_key(&fd))
    }

    /// A socket fd, or the placeholder of a preopened socket the guest has closed.
    fn hides_prestat(&self, fd: i32) -> bool {
        self.is_socket(fd) || u32::try_from(fd).is_ok_and(|fd| self.placeholders.contains(&fd))
    }

    fn insert_accepted(&mut self, stream: Conn) -> Result<u32, Errno> {
        if self.sockets.len() >= MAX_CONNECTIONS {
            return Err(Errno::Mfile);
        }
        let mut fd = self.next_accepted;
        while self.sockets.contains_key(&fd) {
            fd = fd.checked_add(1).ok_or(Errno::Mfile)?;
        }
        self.next_accepted = fd.checked_add(1).ok_or(Errno::Mfile)?;
        self.sockets.insert(fd, Socket::Stream(stream));
        Ok(fd)
    }
}

/// The store state these functions need.
pub(crate) trait SocketHost: Send + 'static {
    fn wasi(&mut self) -> &mut WasiP1Ctx;
    fn sockets(&mut self) -> &mut SocketTable;
}

fn errno_of(e: &io::Error) -> Errno {
    use io::ErrorKind::*;
    match e.kind() {
        WouldBlock => Errno::Again,
        ConnectionReset => Errno::Connreset,
        ConnectionAborted => Errno::Connaborted,
        BrokenPipe => Errno::Pipe,
        NotConnected => Errno::Notconn,
        Interrupted => Errno::Intr,
        TimedOut => Errno::Timedout,
        InvalidInput => Errno::Inval,
        _ => Errno::Io,
    }
}

/// Bounds-checked access to guest memory for one call.
struct Guest<'a>(&'a mut [u8]);

impl Guest<'_> {
    fn range(&self, ptr: i32, len: u32) -> Result<std::ops::Range<usize>, Errno> {
        let start = ptr as u32 as usize;
        let end = start.checked_add(len as usize).ok_or(Errno::Fault)?;
        if end > self.0.len() {
            return Err(Errno::Fault);
        }
        Ok(start..end)
    }
    fn read_u32(&self, ptr: i32) -> Result<u32, Errno> {
        let r = self.range(ptr, 4)?;
        Ok(u32::from_le_bytes(
            self.0[r].try_into().map_err(|_| Errno::Fault)?,
        ))
    }
    fn write_bytes(&mut self, ptr: i32, bytes: &[u8]) -> Result<(), Errno> {
        let r = self.range(ptr, bytes.len() as u32)?;
        self.0[r].copy_from_slice(bytes);
        Ok(())
    }
    fn write_u32(&mut self, ptr: i32, v: u32) -> Result<(), Errno> {
        self.write_bytes(ptr, &v.to_le_bytes())
    }
    /// The (offset, length) pairs of an iovec array, bounds-checked.
    fn iovecs(&self, iovs: i32, count: i32) -> Result<Vec<std::ops::Range<usize>>, Errno> {
        let count = u32::try_from(count).map_err(|_| Errno::Inval)?;
        if count > 1024 {
            return Err(Errno::Inval);
        }
        let mut out = Vec::with_capacity(count as usize);
        for i in 0..count {
            let at = (iovs as u32).checked_add(i * 8).ok_or(Errno::Fault)? as i32;
            let buf = self.read_u32(at)?;
            let len = self.read_u32(at.wrapping_add(4))?;
            out.push(self.range(buf as i32, len)?);
        }
        Ok(out)
    }
}

fn guest_memory<'a, T>(
    caller: &'a mut Caller<'_, T>,
) -> wasmtime::Result<(&'a mut [u8], &'a mut T)> {
    let memory = caller
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or_else(|| wasmtime::Error::msg("workload exports no memory"))?;
    Ok(memory.data_and_store_mut(caller))
}

/// Calls wasmtime-wasi's own p1 implementation, as its generated glue would.
fn with_wasi<T: SocketHost, R>(
    caller: &mut Caller<'_, T>,
    f: impl FnOnce(&mut WasiP1Ctx, &mut wiggle::GuestMemory<'_>) -> R,
) -> wasmtime::Result<R> {
    let fuel = caller.as_context_mut().hostcall_fuel();
    let (mem, state) = guest_memory(caller)?;
    let wasi = state.wasi();
    wasi.set_hostcall_fuel(fuel);
    let mut gm = wiggle::GuestMemory::Unshared(mem);
    Ok(f(wasi, &mut gm))
}

fn read_into(
    stream: &mut Conn,
    mem: &mut Guest<'_>,
    iovs: &[std::ops::Range<usize>],
    peek: bool,
) -> Result<u32, Errno> {
    let mut total = 0usize;
    for r in iovs {
        let want = r.len().min(MAX_IO - total);
        if want == 0 {
            continue;
        }
        let buf = &mut mem.0[r.start..r.start + want];
        let n = if peek {
            stream.peek(buf)
        } else {
            stream.read(buf)
        };
        let n = match n {
            Ok(n) => n,
            Err(e) if total > 0 && e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(errno_of(&e)),
        };
        total += n;
        // A short read means no more is ready; don't block for the next iovec.
        if n < want || peek || total >= MAX_IO {
            break;
        }
    }
    Ok(total as u32)
}

fn write_from(
    stream: &mut Conn,
    mem: &Guest<'_>,
    iovs: &[std::ops::Range<usize>],
) -> Result<u32, Errno> {
    let mut total = 0usize;
    for r in iovs {
        let take = r.len().min(MAX_IO - total);
        if take == 0 {
            continue;
        }
        let n = match stream.write(&mem.0[r.start..r.start + take]) {
            Ok(n) => n,
            Err(e) if total > 0 && e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(errno_of(&e)),
        };
        total += n;
        if n < take || total >= MAX_IO {
            break;
        }
    }
    Ok(total as u32)
}

fn stream_of(table: &mut SocketTable, fd: i32) -> Result<&mut Conn, Errno> {
    match table.sockets.get_mut(&(fd as u32)) {
        Some(Socket::Stream(s)) => Ok(s),
        Some(Socket::Listener(..)) => Err(Errno::Notconn),
        None => Err(Errno::Badf),
    }
}

fn done(r: Result<(), Errno>) -> i32 {
    match r {
        Ok(()) => Errno::Success as i32,
        Err(e) => e as i32,
    }
}

/// Adds the socket functions and the shadowing fd functions to `linker`, which must
/// already hold wasmtime-wasi's p1 functions.
pub(crate) fn add_to_linker<T: SocketHost>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);

    linker.func_wrap(
        MODULE,
        "sock_accept",
        |mut caller: Caller<'_, T>, fd: i32, flags: i32, ret_fd: i32| -> wasmtime::Result<i32> {
            let (mem, state) = guest_memory(&mut caller)?;
            let mut mem = Guest(mem);
            let table = state.sockets();
            let r = (|| {
                let (listener, tls) = match table.sockets.get(&(fd as u32)) {
                    Some(Socket::Listener(l, tls)) => (l, tls),
                    Some(Socket::Stream(_)) => return Err(Errno::Inval),
                    None => return Err(Errno::Badf),
                };
                let (stream, _) = listener.accept().map_err(|e| errno_of(&e))?;
                if flags as u16 & FDFLAGS_NONBLOCK != 0 {
                    stream.set_nonblocking(true).map_err(|e| errno_of(&e))?;
                }
                let conn = match tls {
                    None => Conn::Plain(stream),
                    Some(cfg) => {
                        let session =
                            rustls::ServerConnection::new(cfg.clone()).map_err(|_| Errno::Io)?;
                        Conn::Tls(Box::new(rustls::StreamOwned::new(session, stream)))
                    }
                };
                let new_fd = table.insert_accepted(conn)?;
                if flags as u16 & FDFLAGS_NONBLOCK != 0 {
                    table.nonblocking.insert(new_fd);
                }
                mem.write_u32(ret_fd, new_fd)
            })();
            Ok(done(r))
        },
    )?;

    linker.func_wrap(
        MODULE,
        "sock_recv",
        |mut caller: Caller<'_, T>,
         fd: i32,
         iovs: i32,
         iovs_len: i32,
         ri_flags: i32,
         ret_len: i32,
         ret_flags: i32|
         -> wasmtime::Result<i32> {
            let (mem, state) = guest_memory(&mut caller)?;
            let mut mem = Guest(mem);
            let r = (|| {
                let stream = stream_of(state.sockets(), fd)?;
                let ranges = mem.iovecs(iovs, iovs_len)?;
                let n = read_into(stream, &mut mem, &ranges, ri_flags & RIFLAGS_PEEK != 0)?;
                mem.write_u32(ret_len, n)?;
                mem.write_bytes(ret_flags, &0u16.to_le_bytes())
            })();
            Ok(done(r))
        },
    )?;

    linker.func_wrap(
        MODULE,
        "sock_send",
        |mut caller: Caller<'_, T>,
         fd: i32,
         iovs: i32,
         iovs_len: i32,
         _si_flags: i32,
         ret_len: i32|
         -> wasmtime::Result<i32> {
            let (mem, state) = guest_memory(&mut caller)?;
            let mut mem = Guest(mem);
            let r = (|| {
                let stream = stream_of(state.sockets(), fd)?;
                let ranges = mem.iovecs(iovs, iovs_len)?;
                let n = write_from(stream, &mem, &ranges)?;
                mem.write_u32(ret_len, n)
            })();
            Ok(done(r))
        },
    )?;

    linker.func_wrap(
        MODULE,
        "sock_shutdown",
        |mut caller: Caller<'_, T>, fd: i32, how: i32| -> wasmtime::Result<i32> {
            let state = caller.data_mut();
            let r = (|| {
                let stream = stream_of(state.sockets(), fd)?;
                let how = match how & (SDFLAGS_RD | SDFLAGS_WR) {
                    SDFLAGS_RD => Shutdown::Read,
                    SDFLAGS_WR => Shutdown::Write,
                    x if x == SDFLAGS_RD | SDFLAGS_WR => Shutdown::Both,
                    _ => return Err(Errno::Inval),
                };
                stream.shutdown(how).map_err(|e| errno_of(&e))
            })();
            Ok(done(r))
        },
    )?;

    // --- fd functions: sockets here, everything else to wasmtime-wasi -------------

    linker.func_wrap(
        MODULE,
        "fd_read",
        |mut caller: Caller<'_, T>,
         fd: i32,
         iovs: i32,
         iovs_len: i32,
         ret: i32|
         -> wasmtime::Result<i32> {
            if !caller.data_mut().sockets().is_socket(fd) {
                return with_wasi(&mut caller, |w, gm| {
                    wasmtime_wasi::runtime::in_tokio(p1::fd_read(w, gm, fd, iovs, iovs_len, ret))
                })?;
            }
            let (mem, state) = guest_memory(&mut caller)?;
            let mut mem = Guest(mem);
            let r = (|| {
                let stream = stream_of(state.sockets(), fd)?;
                let ranges = mem.iovecs(iovs, iovs_len)?;
                let n = read_into(stream, &mut mem, &ranges, false)?;
                mem.write_u32(ret, n)
            })();
            Ok(done(r))
        },
    )?;

    linker.func_wrap(
        MODULE,
        "fd_write",
        |mut caller: Caller<'_, T>,
         fd: i32,
         iovs: i32,
         iovs_len: i32,
         ret: i32|
         -> wasmtime::Result<i32> {
            if !caller.data_mut().sockets().is_socket(fd) {
                return with_wasi(&mut caller, |w, gm| {
                    wasmtime_wasi::runtime::in_tokio(p1::fd_write(w, gm, fd, iovs, iovs_len, ret))
                })?;
            }
            let (mem, state) = guest_memory(&mut caller)?;
            let mut mem = Guest(mem);
            let r = (|| {
                let stream = stream_of(state.sockets(), fd)?;
                let ranges = mem.iovecs(iovs, iovs_len)?;
                let n = write_from(stream, &mem, &ranges)?;
                mem.write_u32(ret, n)
            })();
            Ok(done(r))
        },
    )?;

    linker.func_wrap(
        MODULE,
        "fd_close",
        |mut caller: Caller<'_, T>, fd: i32| -> wasmtime::Result<i32> {
            if !caller.data_mut().sockets().is_socket(fd) {
                return with_wasi(&mut caller, |w, gm| {
                    wasmtime_wasi::runtime::in_tokio(p1::fd_close(w, gm, fd))
                })?;
            }
            let state = caller.data_mut();
            // Dropping the socket closes it. A preopened socket's placeholder stays in
            // wasmtime-wasi's table so its number is never reused for a file.
            state.sockets().sockets.remove(&(fd as u32));
            state.sockets().nonblocking.remove(&(fd as u32));
            Ok(Errno::Success as i32)
        },
    )?;

    linker.func_wrap(
        MODULE,
        "fd_fdstat_get",
        |mut caller: Caller<'_, T>, fd: i32, ret: i32| -> wasmtime::Result<i32> {
            if !caller.data_mut().sockets().is_socket(fd) {
                return with_wasi(&mut caller, |w, gm| {
                    wasmtime_wasi::runtime::in_tokio(p1::fd_fdstat_get(w, gm, fd, ret))
                })?;
            }
            let (mem, state) = guest_memory(&mut caller)?;
            let nonblocking = state.sockets().nonblocking.contains(&(fd as u32));
            // struct fdstat { u8 filetype; u16 flags @2; u64 rights_base @8; u64 rights_inheriting @16 }
            let mut st = [0u8; 24];
            st[0] = FILETYPE_SOCKET_STREAM;
            let flags = if nonblocking { FDFLAGS_NONBLOCK } else { 0 };
            st[2..4].copy_from_slice(&flags.to_le_bytes());
            st[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
            st[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
            Ok(done(Guest(mem).write_bytes(ret, &st)))
        },
    )?;

    linker.func_wrap(
        MODULE,
        "fd_fdstat_set_flags",
        |mut caller: Caller<'_, T>, fd: i32, flags: i32| -> wasmtime::Result<i32> {
            if !caller.data_mut().sockets().is_socket(fd) {
                return with_wasi(&mut caller, |w, gm| {
                    p1::fd_fdstat_set_flags(w, gm, fd, flags)
                })?;
            }
            let state = caller.data_mut();
            let nonblock = flags as u16 & FDFLAGS_NONBLOCK != 0;
            let table = state.sockets();
            if nonblock {
                table.nonblocking.insert(fd as u32);
            } else {
                table.nonblocking.remove(&(fd as u32));
            }
            let r = match table.sockets.get(&(fd as u32)) {
                Some(Socket::Stream(s)) => s.tcp().set_nonblocking(nonblock),
                Some(Socket::Listener(l, _)) => l.set_nonblocking(nonblock),
                None => Ok(()),
            };
            Ok(done(r.map_err(|e| errno_of(&e))))
        },
    )?;

    linker.func_wrap(
        MODULE,
        "fd_prestat_get",
        |mut caller: Caller<'_, T>, fd: i32, ret: i32| -> wasmtime::Result<i32> {
            if caller.data_mut().sockets().hides_prestat(fd) {
                return Ok(Errno::Badf as i32);
            }
            with_wasi(&mut caller, |w, gm| p1::fd_prestat_get(w, gm, fd, ret))?
        },
    )?;

    linker.func_wrap(
        MODULE,
        "fd_prestat_dir_name",
        |mut caller: Caller<'_, T>, fd: i32, path: i32, len: i32| -> wasmtime::Result<i32> {
            if caller.data_mut().sockets().hides_prestat(fd) {
                return Ok(Errno::Badf as i32);
            }
            with_wasi(&mut caller, |w, gm| {
                p1::fd_prestat_dir_name(w, gm, fd, path, len)
            })?
        },
    )?;

    linker.allow_shadowing(false);
    Ok(())
}
