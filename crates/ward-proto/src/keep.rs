//! Messages between the Keep loader (host side) and the in-Keep agent.
//!
//! The conversation, on one bidirectional byte stream:
//!
//! ```text
//! host → keep   Launch(spec)                     (config, workload size and digest)
//! keep → host   Ready{sandbox}                   (after the Keep has sandboxed itself)
//! host → keep   WorkloadChunk × n                (exactly spec.workload_len bytes)
//! keep → host   WorkloadAccepted{sha256}         (digest of what the Keep will run)
//! keep → host   Listening{..}*, Stdout/Stderr*   (while it runs)
//! host → keep   Stdin*, StdinClosed, Cancel      (while it runs)
//! keep → host   Exit(report) | Error{..}         (last message)
//! ```

use serde::{Deserialize, Serialize};

use crate::WorkloadConfig;

/// The one plaintext message of a deploy tunnel: the client's fresh nonce, sent
/// through the untrusted host before the TLS handshake with the Keep. The Keep binds
/// it into its evidence; a host that changes it only makes the client refuse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelHello {
    /// Must equal [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION).
    pub version: u16,
    /// 16 to 64 random bytes.
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
}

/// A message from the host side to the Keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostToKeep {
    /// Start a workload. Must be the first message.
    Launch(Box<LaunchSpec>),
    /// The next piece of the workload module.
    WorkloadChunk(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Bytes for the workload's stdin.
    Stdin(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The workload's stdin reached end-of-file.
    StdinClosed,
    /// Stop the workload now.
    Cancel,
}

/// What to run, sent before the module bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchSpec {
    /// Must equal [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION).
    pub version: u16,
    /// File name of the workload (becomes `argv[0]`).
    pub workload_name: String,
    /// Exact length of the module in bytes.
    pub workload_len: u64,
    /// SHA-256 of the module, as the sender computed it (32 bytes).
    #[serde(with = "serde_bytes")]
    pub workload_sha256: Vec<u8>,
    /// How to run it.
    pub config: WorkloadConfig,
}

impl LaunchSpec {
    /// A small valid spec, for tests and documentation.
    pub fn example() -> Self {
        Self {
            version: crate::PROTOCOL_VERSION,
            workload_name: "hello.wasm".into(),
            workload_len: 8,
            workload_sha256: vec![0; 32],
            config: WorkloadConfig {
                args: vec!["a".into()],
                env: vec![("K".into(), "V".into())],
                ..WorkloadConfig::default()
            },
        }
    }
}

/// A message from the Keep to the host side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeepToHost {
    /// The Keep is sandboxed and ready for the workload bytes.
    Ready {
        /// The Keep's protocol version.
        version: u16,
        /// Each isolation layer and whether it is in force.
        sandbox: Vec<SandboxLayer>,
    },
    /// The Keep received the whole workload and will run exactly this module.
    WorkloadAccepted {
        /// SHA-256 of the module bytes the Keep received.
        #[serde(with = "serde_bytes")]
        sha256: Vec<u8>,
    },
    /// A listen socket is ready.
    Listening {
        /// Its name from the config.
        name: String,
        /// The bound address, `ip:port`.
        addr: String,
    },
    /// Bytes the workload wrote to stdout.
    Stdout(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Bytes the workload wrote to stderr.
    Stderr(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The workload finished. Last message.
    Exit(ExitReport),
    /// The Keep could not run the workload. Last message.
    Error {
        /// Category.
        kind: KeepErrorKind,
        /// One line, for a person.
        message: String,
    },
}

/// One isolation layer of a process Keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxLayer {
    /// Short name, e.g. `seccomp`, `landlock`.
    pub name: String,
    /// Whether it is in force.
    pub status: SandboxStatus,
}

/// Whether a sandbox layer is in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxStatus {
    /// In force.
    Applied,
    /// In force, but weaker than asked for (e.g. an older landlock ABI).
    Partial(String),
    /// Not in force; the reason.
    Unavailable(String),
}

/// How a workload run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitReport {
    /// The outcome.
    pub outcome: WorkloadOutcome,
    /// Set when the workload asked for more linear memory than its limit allowed:
    /// the size it asked for, in bytes.
    pub memory_denied_at: Option<u64>,
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkloadOutcome {
    /// The workload returned or called `proc_exit`.
    Exited(i32),
    /// The workload trapped.
    Trapped {
        /// Short trap name, e.g. `unreachable`, `memory out of bounds`.
        trap: String,
        /// One line with detail (the function, if known).
        detail: String,
    },
    /// The wall-clock deadline passed.
    DeadlineExceeded {
        /// The deadline, in milliseconds.
        limit_ms: u64,
    },
    /// The fuel ran out.
    OutOfFuel {
        /// The fuel it had.
        fuel: u64,
    },
}

/// Exit status `ward` uses when the workload trapped.
pub const EXIT_TRAP: u8 = 134;
/// Exit status `ward` uses when a deadline or fuel limit stopped the workload.
pub const EXIT_LIMIT: u8 = 124;
/// Exit status `ward` uses when Ward itself could not run the workload.
pub const EXIT_WARD_ERROR: u8 = 125;

impl WorkloadOutcome {
    /// The process exit status `ward` should exit with.
    pub fn exit_status(&self) -> u8 {
        match self {
            // WASI exit codes are u32; a process can only carry the low byte.
            WorkloadOutcome::Exited(code) => (*code & 0xff) as u8,
            WorkloadOutcome::Trapped { .. } => EXIT_TRAP,
            WorkloadOutcome::DeadlineExceeded { .. } | WorkloadOutcome::OutOfFuel { .. } => {
                EXIT_LIMIT
            }
        }
    }
}

/// Category of a Keep-side failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeepErrorKind {
    /// The peer broke the protocol (bad message order, size or version).
    Protocol,
    /// The module is not valid Wasm.
    InvalidModule,
    /// The module imports something the Keep does not provide.
    Link,
    /// The config cannot be honoured (e.g. a missing preopened dir).
    Config,
    /// A sandbox layer that must be in force could not be applied.
    Sandbox,
    /// Anything else.
    Internal,
}
