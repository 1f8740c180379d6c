//! The in-Keep agent's library half: the process sandbox, exposed so it can be tested
//! in isolation. The agent binary is `src/main.rs`.

#![warn(missing_docs)]

pub mod confine;
pub mod sandbox;
pub mod steward;
