//! The host side of a Keep: starting one (a *Keep loader*) and talking to it.
//!
//! Everything here is outside the TCB. It starts `ward-keep`, hands it the launch
//! spec and the module, and relays stdio; it never runs the workload itself.
//!
//! - [`process`]: the `process` backend, `ward-keep` as a sandboxed child process.
//! - [`session`]: the conversation with a running Keep, over any byte stream.
//! - [`daemon`]: `ward host serve`, the Keep manager's HTTPS API.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod daemon;
pub mod loader;
pub mod local;
pub mod process;
pub mod session;

pub use local::LocalKeep;
pub use process::{find_keep_binary, ProcessKeep};
pub use session::{hex, launch_spec, KeepEvent, LaunchError, Session, SessionOutcome};
