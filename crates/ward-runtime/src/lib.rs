//! Ward's Wasm runtime: how a Keep runs a workload.
//!
//! - [`config`]: `Ward.toml`, parsed strictly into the wire form
//!   [`ward_proto::WorkloadConfig`]. Always available (the client needs it).
//! - With the `engine` feature (default): [`Runtime`] (wasmtime 48 + wasmtime-wasi 48)
//!   runs core modules with WASI preview 1, and components with WASI preview 2, under
//!   memory, deadline and fuel limits; [`sockets`] opens configured sockets; WASI p1
//!   socket calls are served by Ward's own host functions.
//!
//! Use:
//! 1. [`Runtime::new`] for the limits;
//! 2. [`Runtime::prepare`] opens host resources (do this before sandboxing);
//! 3. [`Runtime::load`] compiles the workload bytes;
//! 4. [`Runtime::run`] runs it and returns an [`ExitReport`](ward_proto::ExitReport).

#![warn(missing_docs)]

pub mod config;

#[cfg(feature = "engine")]
mod engine;
#[cfg(feature = "engine")]
mod limits;
#[cfg(feature = "engine")]
mod p1_sockets;
#[cfg(feature = "engine")]
pub mod sockets;
#[cfg(feature = "engine")]
pub mod stdio;

#[cfg(feature = "engine")]
pub use engine::{
    is_component, LoadedWorkload, PreparedRun, Runtime, RuntimeError, RuntimeOptions, WorkloadIo,
};
