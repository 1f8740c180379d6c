//! The host's side of the conversation with a Keep (see `ward_proto::keep`).
//!
//! The Keep is not trusted to behave: every message is size-bounded by the framing,
//! out-of-order messages end the session with an error, and the digest the Keep
//! reports for the module must match the one sent.

use std::io::{Read, Write};

use sha2::{Digest, Sha256};
use ward_proto::{
    encode_frame, read_frame, write_frame, ExitReport, FrameError, HostToKeep, KeepErrorKind,
    KeepToHost, LaunchSpec, SandboxLayer, CHUNK_LEN,
};

/// Something the Keep told us while a workload starts or runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepEvent {
    /// The Keep sandboxed itself; each layer's status.
    Ready(Vec<SandboxLayer>),
    /// The Keep received the module and will run exactly this digest.
    Accepted([u8; 32]),
    /// A listen socket is ready.
    Listening {
        /// Its name from the config.
        name: String,
        /// `ip:port`.
        addr: String,
    },
    /// Workload stdout bytes.
    Stdout(Vec<u8>),
    /// Workload stderr bytes.
    Stderr(Vec<u8>),
}

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The channel broke or carried a malformed frame.
    #[error("keep channel: {0}")]
    Channel(#[from] FrameError),
    /// The Keep reported that it cannot run the workload.
    #[error("{message}")]
    Keep {
        /// Category.
        kind: KeepErrorKind,
        /// One line from the Keep.
        message: String,
    },
    /// The Keep broke the protocol.
    #[error("keep protocol violation: {0}")]
    Protocol(String),
    /// The Keep says it will run something other than what was sent.
    #[error("the keep reports workload sha256 {got}, but {sent} was sent")]
    DigestMismatch {
        /// What the Keep reported.
        got: String,
        /// What was sent.
        sent: String,
    },
    /// The channel closed before the Keep reported an outcome.
    #[error("the keep exited without reporting how the workload ended")]
    KeepVanished,
}

/// What a finished session produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOutcome {
    /// The Keep's exit report.
    pub report: ExitReport,
    /// The digest the Keep confirmed running.
    pub sha256: [u8; 32],
}

/// A Keep conversation over a reader/writer pair.
pub struct Session<R, W> {
    reader: R,
    writer: Option<W>,
    sha256: Option<[u8; 32]>,
}

/// Builds the launch spec for `module`.
pub fn launch_spec(name: &str, module: &[u8], config: ward_proto::WorkloadConfig) -> LaunchSpec {
    LaunchSpec {
        version: ward_proto::PROTOCOL_VERSION,
        workload_name: name.to_string(),
        workload_len: module.len() as u64,
        workload_sha256: Sha256::digest(module).to_vec(),
        config,
    }
}

impl<R: Read, W: Write + Send + 'static> Session<R, W> {
    /// A session on a fresh channel.
    pub fn new(reader: R, writer: W) -> Self {
        Self {
            reader,
            writer: Some(writer),
            sha256: None,
        }
    }

    fn next(&mut self) -> Result<KeepToHost, LaunchError> {
        read_frame(&mut self.reader)?.ok_or(LaunchError::KeepVanished)
    }

    fn writer(&mut self) -> Result<&mut W, LaunchError> {
        self.writer
            .as_mut()
            .ok_or_else(|| LaunchError::Protocol("channel writer already handed off".into()))
    }

    /// Sends the spec and the module; returns once the Keep has confirmed the digest.
    pub fn launch(
        &mut self,
        spec: &LaunchSpec,
        module: &[u8],
        events: &mut dyn FnMut(KeepEvent),
    ) -> Result<(), LaunchError> {
        write_frame(self.writer()?, &HostToKeep::Launch(Box::new(spec.clone())))?;
        // Ready (or an error) comes first.
        match self.next()? {
            KeepToHost::Ready { sandbox, .. } => events(KeepEvent::Ready(sandbox)),
            KeepToHost::Error { kind, message } => return Err(LaunchError::Keep { kind, message }),
            other => return Err(unexpected("Ready", &other)),
        }
        for chunk in module.chunks(CHUNK_LEN) {
            let frame = encode_frame(&HostToKeep::WorkloadChunk(chunk.to_vec()))?;
            self.writer()?.write_all(&frame).map_err(FrameError::Io)?;
        }
        self.writer()?.flush().map_err(FrameError::Io)?;
        loop {
            match self.next()? {
                KeepToHost::Listening { name, addr } => events(KeepEvent::Listening { name, addr }),
                KeepToHost::WorkloadAccepted { sha256 } => {
                    let got: [u8; 32] = sha256
                        .as_slice()
                        .try_into()
                        .map_err(|_| LaunchError::Protocol("digest is not 32 bytes".into()))?;
                    if got.as_slice() != spec.workload_sha256.as_slice() {
                        return Err(LaunchError::DigestMismatch {
                            got: hex(&got),
                            sent: hex(&spec.workload_sha256),
                        });
                    }
                    self.sha256 = Some(got);
                    events(KeepEvent::Accepted(got));
                    return Ok(());
                }
                KeepToHost::Error { kind, message } => {
                    return Err(LaunchError::Keep { kind, message })
                }
                other => return Err(unexpected("WorkloadAccepted", &other)),
            }
        }
    }

    /// Hands the writer to a thread that forwards `stdin` as `Stdin` frames and ends
    /// with `StdinClosed`. Call after [`launch`](Self::launch).
    pub fn forward_stdin(&mut self, mut stdin: Box<dyn Read + Send>) -> Result<(), LaunchError> {
        let mut writer = self
            .writer
            .take()
            .ok_or_else(|| LaunchError::Protocol("channel writer already handed off".into()))?;
        std::thread::Builder::new()
            .name("ward-stdin".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    match stdin.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = write_frame(&mut writer, &HostToKeep::StdinClosed);
                            return;
                        }
                        Ok(n) => {
                            if write_frame(&mut writer, &HostToKeep::Stdin(buf[..n].to_vec()))
                                .is_err()
                            {
                                return; // the Keep is gone
                            }
                        }
                    }
                }
            })
            .map_err(|e| LaunchError::Protocol(format!("cannot start stdin thread: {e}")))?;
        Ok(())
    }

    /// Relays output until the Keep reports how the workload ended.
    pub fn wait(
        mut self,
        events: &mut dyn FnMut(KeepEvent),
    ) -> Result<SessionOutcome, LaunchError> {
        let sha256 = self
            .sha256
            .ok_or_else(|| LaunchError::Protocol("wait() before a successful launch()".into()))?;
        loop {
            match self.next()? {
                KeepToHost::Stdout(b) => events(KeepEvent::Stdout(b)),
                KeepToHost::Stderr(b) => events(KeepEvent::Stderr(b)),
                KeepToHost::Listening { name, addr } => events(KeepEvent::Listening { name, addr }),
                KeepToHost::Exit(report) => return Ok(SessionOutcome { report, sha256 }),
                KeepToHost::Error { kind, message } => {
                    return Err(LaunchError::Keep { kind, message })
                }
                other => return Err(unexpected("output or Exit", &other)),
            }
        }
    }
}

fn unexpected(wanted: &str, got: &KeepToHost) -> LaunchError {
    let name = match got {
        KeepToHost::Ready { .. } => "Ready",
        KeepToHost::WorkloadAccepted { .. } => "WorkloadAccepted",
        KeepToHost::Listening { .. } => "Listening",
        KeepToHost::Stdout(_) => "Stdout",
        KeepToHost::Stderr(_) => "Stderr",
        KeepToHost::Exit(_) => "Exit",
        KeepToHost::Error { .. } => "Error",
    };
    LaunchError::Protocol(format!("expected {wanted}, got {name}"))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
