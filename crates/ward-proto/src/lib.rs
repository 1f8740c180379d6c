//! Ward's wire format, shared by the client, the host and the Keep.
//!
//! Every message is CBOR (via `ciborium` + serde) inside a length-prefixed frame
//! ([`frame`]). Messages are versioned ([`PROTOCOL_VERSION`]), bounded in size
//! ([`MAX_FRAME_LEN`]), and unknown fields are rejected, so a hostile peer cannot
//! smuggle data past an older reader or make it allocate without bound.
//!
//! This crate does no I/O policy of its own and has no host-only dependencies: the
//! in-Keep agent links it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod frame;
pub mod host;
pub mod keep;

pub use config::{
    FileKind, Limits, PreopenDir, SocketProtocol, StdioMode, StewardRef, WorkloadConfig,
    WorkloadSocket,
};
pub use frame::{decode_frame_body, encode_frame, read_frame, write_frame, FrameError};
pub use keep::{
    ExitReport, HostToKeep, KeepErrorKind, KeepToHost, LaunchSpec, SandboxLayer, SandboxStatus,
    TunnelHello, WorkloadOutcome,
};

/// Version of the host↔Keep protocol. A Keep refuses a [`LaunchSpec`] of another version.
pub const PROTOCOL_VERSION: u16 = 1;

/// Largest frame body either side accepts, in bytes (4 MiB).
///
/// Workloads larger than this travel as several [`HostToKeep::WorkloadChunk`] frames.
pub const MAX_FRAME_LEN: usize = 4 << 20;

/// Size of the chunks a sender splits the workload and stdio streams into (1 MiB).
pub const CHUNK_LEN: usize = 1 << 20;

/// Largest workload (the `.wasm` file) a Keep accepts by default, in bytes (256 MiB).
pub const MAX_WORKLOAD_LEN: u64 = 256 << 20;
