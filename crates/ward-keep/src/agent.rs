//! The agent's conversation with its loader (see `ward_proto::keep` for the order).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use ward_proto::{
    read_frame, FileKind, HostToKeep, KeepErrorKind, KeepToHost, LaunchSpec, SocketProtocol,
    StdioMode, MAX_WORKLOAD_LEN, PROTOCOL_VERSION,
};
use ward_runtime::sockets::{open_sockets, WorkloadSocketHandle};
use ward_runtime::{Runtime, RuntimeError, RuntimeOptions, WorkloadIo};

use crate::channel::{ChannelInput, ChannelOutput, Sender, Stream};
use ward_keep::sandbox;

/// How this Keep runs.
#[derive(Debug, Default, Clone)]
pub(crate) struct AgentOptions {
    /// Apply the process sandbox before reading the workload.
    pub(crate) sandbox: bool,
    /// Running inside a VM Keep: no signal handlers, no compile threads.
    pub(crate) vm: bool,
    /// A process Keep's launch measurement, computed by its loader (SHA-384 of this
    /// binary); `None`: hash `/proc/self/exe`.
    pub(crate) measurement: Option<Vec<u8>>,
    /// A remote workload's host resources are limited to these (`None`: a local run,
    /// whose config is its own user's).
    pub(crate) confine: Option<ward_keep::confine::HostAllowList>,
}

/// A failure that ends the conversation; it is reported to the host when possible.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct AgentError {
    kind: KeepErrorKind,
    message: String,
}

impl AgentError {
    pub(crate) fn new(kind: KeepErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl From<RuntimeError> for AgentError {
    fn from(e: RuntimeError) -> Self {
        let kind = match e {
            RuntimeError::InvalidModule(_) => KeepErrorKind::InvalidModule,
            RuntimeError::Link(_) => KeepErrorKind::Link,
            RuntimeError::Preopen { .. } | RuntimeError::Config(_) => KeepErrorKind::Config,
            RuntimeError::Engine(_) => KeepErrorKind::Internal,
        };
        Self::new(kind, e.to_string())
    }
}

/// A message's variant name, for error messages (never its contents).
pub(crate) fn name_of(msg: &HostToKeep) -> &'static str {
    match msg {
        HostToKeep::Launch(_) => "Launch",
        HostToKeep::WorkloadChunk(_) => "WorkloadChunk",
        HostToKeep::Stdin(_) => "Stdin",
        HostToKeep::StdinClosed => "StdinClosed",
        HostToKeep::Cancel => "Cancel",
    }
}

/// Serves one workload over `channel`.
pub(crate) fn serve(channel: UnixStream, opts: &AgentOptions) -> Result<(), AgentError> {
    let writer = channel
        .try_clone()
        .map_err(|e| AgentError::new(KeepErrorKind::Internal, format!("channel: {e}")))?;
    serve_on(channel, writer, opts)
}

/// Serves one workload, reading from `reader` and writing to `writer`.
pub(crate) fn serve_on<R, W>(reader: R, writer: W, opts: &AgentOptions) -> Result<(), AgentError>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    let sender = Sender::new(writer);
    let result = converse(SharedReader::new(reader), &sender, opts);
    match result {
        Ok(Some(r)) => sender
            .send(&KeepToHost::Exit(r))
            .map_err(|e| AgentError::new(KeepErrorKind::Internal, format!("channel: {e}"))),
        Ok(None) => Ok(()),
        Err(e) => {
            // Best effort: the host may be gone already.
            let _ = sender.send(&KeepToHost::Error {
                kind: e.kind,
                message: e.message.clone(),
            });
            Err(e)
        }
    }
}

fn protocol(message: impl Into<String>) -> AgentError {
    AgentError::new(KeepErrorKind::Protocol, message)
}

/// One reader used by two owners in turn: the agent (launch spec, module) and then
/// the workload's stdin.
struct SharedReader<R>(Arc<std::sync::Mutex<R>>);

impl<R> SharedReader<R> {
    fn new(r: R) -> Self {
        Self(Arc::new(std::sync::Mutex::new(r)))
    }
}

impl<R> Clone for SharedReader<R> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<R: Read> Read for SharedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("channel reader poisoned"))?
            .read(buf)
    }
}

fn converse<R, W>(
    mut reader: SharedReader<R>,
    sender: &Sender<W>,
    opts: &AgentOptions,
) -> Result<Option<ward_proto::ExitReport>, AgentError>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    let io_err =
        |e: std::io::Error| AgentError::new(KeepErrorKind::Internal, format!("channel: {e}"));

    // 1. The launch spec (one bounded frame).
    let spec: LaunchSpec = match read_frame(&mut reader).map_err(|e| protocol(e.to_string()))? {
        Some(HostToKeep::Launch(spec)) => *spec,
        Some(other) => {
            return Err(protocol(format!(
                "expected Launch, got {}",
                name_of(&other)
            )))
        }
        None => return Ok(None), // the host went away before asking for anything
    };
    check_spec(&spec)?;
    let cfg = &spec.config;
    if let Some(allow) = &opts.confine {
        allow
            .check(cfg)
            .map_err(|e| AgentError::new(KeepErrorKind::Config, e))?;
    }

    // 2. Host resources, opened before the sandbox closes the door behind them.
    let tls = steward_certificate(&spec, opts)?;
    let sockets = open_sockets(&cfg.sockets)
        .map_err(|e| AgentError::new(KeepErrorKind::Config, e.to_string()))?;
    let sockets = with_tls(sockets, cfg, tls)?;
    let mut listening = Vec::new();
    for (name, handle) in &sockets {
        if let WorkloadSocketHandle::Listener(l) | WorkloadSocketHandle::TlsListener(l, _) = handle
        {
            if let Ok(addr) = l.local_addr() {
                listening.push(KeepToHost::Listening {
                    name: name.clone(),
                    addr: addr.to_string(),
                });
            }
        }
    }
    let runtime = Runtime::new(
        &cfg.limits,
        &RuntimeOptions {
            signals_based_traps: !opts.vm,
            parallel_compilation: !opts.vm,
            large_reservations: !opts.vm,
            epoll: !opts.vm,
        },
    )?;
    let out = |stream| -> Option<Arc<dyn ward_runtime::stdio::WorkloadOutput>> {
        Some(Arc::new(ChannelOutput {
            sender: sender.clone(),
            stream,
        }))
    };
    // Stdin frames are read on demand by the workload from this same reader, once
    // the module has arrived; until then the agent reads it.
    let stdin = ChannelInput::new(reader.clone());
    let io = WorkloadIo {
        stdin: (cfg.stdin == StdioMode::Forward)
            .then(|| Box::new(stdin) as Box<dyn ward_runtime::stdio::WorkloadInput>),
        stdout: out(Stream::Stdout),
        stderr: out(Stream::Stderr),
    };
    let prepared = runtime.prepare(
        &spec.workload_name,
        cfg,
        io,
        sockets.into_iter().map(|(_, h)| h).collect(),
    )?;

    // 3. The sandbox, before a single workload byte is read.
    let layers = if opts.sandbox {
        sandbox::apply(cfg)
    } else {
        Vec::new()
    };
    sender
        .send(&KeepToHost::Ready {
            version: PROTOCOL_VERSION,
            sandbox: layers,
        })
        .map_err(io_err)?;
    for msg in &listening {
        sender.send(msg).map_err(io_err)?;
    }

    // 4. The module, exactly as long as announced, and its digest.
    let module = receive_module(&mut reader, &spec)?;
    let digest = Sha256::digest(&module);
    sender
        .send(&KeepToHost::WorkloadAccepted {
            sha256: digest.to_vec(),
        })
        .map_err(io_err)?;
    if digest.as_slice() != spec.workload_sha256.as_slice() {
        return Err(protocol(
            "the workload received does not match the digest in the launch spec",
        ));
    }
    drop(reader);

    // 5. Compile and run.
    if ward_runtime::is_component(&module)
        && cfg.sockets.iter().any(|s| s.prot == SocketProtocol::Tls)
    {
        return Err(AgentError::new(
            KeepErrorKind::Config,
            "prot = \"tls\" sockets are supported for WASI preview 1 modules only, not components",
        ));
    }
    let loaded = runtime.load(&module)?;
    drop(module);
    Ok(Some(runtime.run(&loaded, prepared)?))
}

/// A certificate from the Steward when a socket has `prot = "tls"` (before the
/// sandbox: it needs a new connection). The context binds the announced workload
/// digest; a module with another digest is refused later.
fn steward_certificate(
    spec: &LaunchSpec,
    opts: &AgentOptions,
) -> Result<Option<ward_keep::steward::KeepTls>, AgentError> {
    let cfg = &spec.config;
    if !cfg.sockets.iter().any(|s| s.prot == SocketProtocol::Tls) {
        return Ok(None);
    }
    let Some(steward) = cfg.steward.as_ref() else {
        // Connect sockets need the Steward's CA as roots; the config check refuses
        // them without one, and `with_tls` does again.
        let measurement = crate::tls::measurement(opts)?;
        return ward_keep::steward::self_signed(measurement, &spec.workload_sha256)
            .map(Some)
            .map_err(|e| AgentError::new(KeepErrorKind::Internal, e));
    };
    // The certificate names: each TLS listen socket's address (unless a wildcard),
    // and localhost. (A connect socket's host is its server's name, not ours.)
    let mut names: Vec<String> = cfg
        .sockets
        .iter()
        .filter(|s| s.prot == SocketProtocol::Tls && s.kind == FileKind::Listen)
        .map(|s| unbracket(&s.host).to_string())
        .filter(|h| h != "0.0.0.0" && h != "::")
        .collect();
    names.push("localhost".into());
    names.dedup();
    let measurement = crate::tls::measurement(opts)?;
    ward_keep::steward::certify(steward, &names, measurement, &spec.workload_sha256)
        .map(Some)
        .map_err(|e| AgentError::new(KeepErrorKind::Config, e))
}

fn unbracket(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Wraps the sockets with `prot = "tls"`: listeners serve TLS, connected streams
/// become TLS clients of their server (verified against the Steward's CA, the
/// server name being the socket's `host`).
fn with_tls(
    sockets: Vec<(String, WorkloadSocketHandle)>,
    cfg: &ward_proto::WorkloadConfig,
    tls: Option<ward_keep::steward::KeepTls>,
) -> Result<Vec<(String, WorkloadSocketHandle)>, AgentError> {
    let Some(tls) = tls else { return Ok(sockets) };
    sockets
        .into_iter()
        .zip(&cfg.sockets)
        .map(|((name, handle), s)| {
            Ok(match handle {
                WorkloadSocketHandle::Listener(l) if s.prot == SocketProtocol::Tls => (
                    name,
                    WorkloadSocketHandle::TlsListener(l, tls.server.clone()),
                ),
                WorkloadSocketHandle::Stream(tcp) if s.prot == SocketProtocol::Tls => {
                    let bad = |e: String| {
                        AgentError::new(
                            KeepErrorKind::Config,
                            format!("file {name:?}: TLS to {}: {e}", s.host),
                        )
                    };
                    let server = rustls::pki_types::ServerName::try_from(unbracket(&s.host))
                        .map_err(|e| bad(e.to_string()))?
                        .to_owned();
                    let client = tls.client.clone().ok_or_else(|| {
                        bad("no Steward, so no roots to verify the server against (set steward and steward_ca)".into())
                    })?;
                    let conn = rustls::ClientConnection::new(client, server)
                        .map_err(|e| bad(e.to_string()))?;
                    let stream = Box::new(rustls::StreamOwned::new(conn, tcp));
                    (name, WorkloadSocketHandle::TlsStream(stream))
                }
                other => (name, other),
            })
        })
        .collect()
}

fn check_spec(spec: &LaunchSpec) -> Result<(), AgentError> {
    if spec.version != PROTOCOL_VERSION {
        return Err(protocol(format!(
            "protocol version {} is not supported (this Keep speaks {PROTOCOL_VERSION})",
            spec.version
        )));
    }
    if spec.workload_len == 0 || spec.workload_len > MAX_WORKLOAD_LEN {
        return Err(protocol(format!(
            "workload size {} is outside 1..={MAX_WORKLOAD_LEN} bytes",
            spec.workload_len
        )));
    }
    if spec.workload_sha256.len() != 32 {
        return Err(protocol("workload digest must be 32 bytes (SHA-256)"));
    }
    if spec.workload_name.is_empty() || spec.workload_name.len() > 255 {
        return Err(protocol("workload name must be 1..=255 bytes"));
    }
    Ok(())
}

fn receive_module<R: Read>(reader: &mut R, spec: &LaunchSpec) -> Result<Vec<u8>, AgentError> {
    let want = spec.workload_len as usize; // <= MAX_WORKLOAD_LEN, checked
    let mut module = Vec::with_capacity(want);
    while module.len() < want {
        match read_frame(reader).map_err(|e| protocol(e.to_string()))? {
            Some(HostToKeep::WorkloadChunk(chunk)) => {
                if chunk.len() > want - module.len() {
                    return Err(protocol(format!(
                        "workload chunk overruns the announced size of {want} bytes"
                    )));
                }
                module.extend_from_slice(&chunk);
            }
            Some(other) => {
                return Err(protocol(format!(
                    "expected WorkloadChunk, got {}",
                    name_of(&other)
                )))
            }
            None => {
                return Err(protocol(format!(
                    "channel closed after {} of {want} workload bytes",
                    module.len()
                )))
            }
        }
    }
    Ok(module)
}
