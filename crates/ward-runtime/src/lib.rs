//! ward-runtime
