//! Opening the sockets a workload's config asks for.
//!
//! The Keep opens them before it sandboxes itself (the seccomp filter then forbids
//! creating new sockets) and hands them to the runtime as [`WorkloadSocketHandle`]s.

use std::net::{TcpListener, TcpStream, ToSocketAddrs};

use ward_proto::{FileKind, WorkloadSocket};

/// An opened socket, ready to preopen for the workload.
#[derive(Debug)]
pub enum WorkloadSocketHandle {
    /// A bound, listening socket.
    Listener(TcpListener),
    /// A bound, listening socket whose connections speak TLS, terminated in the
    /// Keep with this configuration (the Steward-issued certificate).
    TlsListener(TcpListener, std::sync::Arc<rustls::ServerConfig>),
    /// A connected stream.
    Stream(TcpStream),
    /// A connected stream that speaks TLS as a client (`prot = "tls"` on a connect
    /// socket): the handshake happens on the workload's first read or write.
    TlsStream(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

/// Why a socket could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot {verb} {addr} for file {name:?}: {source}")]
pub struct SocketOpenError {
    verb: &'static str,
    addr: String,
    name: String,
    source: std::io::Error,
}

/// Binds or connects every socket in `sockets`, in order.
pub fn open_sockets(
    sockets: &[WorkloadSocket],
) -> Result<Vec<(String, WorkloadSocketHandle)>, SocketOpenError> {
    let mut out = Vec::with_capacity(sockets.len());
    for s in sockets {
        let addr = s.addr();
        let err = |verb, source| SocketOpenError {
            verb,
            addr: addr.clone(),
            name: s.name.clone(),
            source,
        };
        let handle = match s.kind {
            FileKind::Listen => WorkloadSocketHandle::Listener(
                TcpListener::bind(&addr).map_err(|e| err("listen on", e))?,
            ),
            FileKind::Connect => {
                let addrs: Vec<_> = addr
                    .to_socket_addrs()
                    .map_err(|e| err("resolve", e))?
                    .collect();
                WorkloadSocketHandle::Stream(
                    TcpStream::connect(&addrs[..]).map_err(|e| err("connect to", e))?,
                )
            }
        };
        out.push((s.name.clone(), handle));
    }
    Ok(out)
}
