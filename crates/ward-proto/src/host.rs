//! The host API's CBOR bodies (`ward host serve`).

use serde::{Deserialize, Serialize};

/// Largest API request or response body, in bytes.
pub const MAX_API_BODY: usize = 64 << 10;

/// `POST /v1/keeps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeep {
    /// Backend name, e.g. `process`.
    pub backend: String,
    /// The workload's memory limit (Ward.toml `[limits] memory`). A kvm Keep's guest is
    /// sized from it before the workload arrives, and the size is part of its launch
    /// measurement. `None`: the default limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
}

/// Lifecycle of a Keep on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeepState {
    /// Started; no client is connected yet.
    Waiting,
    /// A client tunnel is relaying to it.
    Connected,
    /// It exited (with its status, as text).
    Exited(String),
}

/// A Keep as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepInfo {
    /// Its id (16 hex digits).
    pub id: String,
    /// Backend.
    pub backend: String,
    /// State.
    pub state: KeepState,
    /// Creation time, seconds since the epoch.
    pub created: u64,
}

/// `GET /v1/keeps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepList {
    /// The Keeps.
    pub keeps: Vec<KeepInfo>,
}

/// `GET /v1/platform`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// Backends this host serves.
    pub backends: Vec<String>,
    /// TEE kinds its Keeps' evidence can have (`none` for process Keeps).
    pub tee_kinds: Vec<String>,
    /// Verification collateral the host can supply (e.g. VCEK chains), DER.
    #[serde(default)]
    pub collateral: Vec<serde_bytes::ByteBuf>,
    /// Most Keeps it runs at once.
    pub max_keeps: u32,
}

/// An API error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiError {
    /// One line, for a person.
    pub message: String,
}
