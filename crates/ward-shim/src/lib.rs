//! ward-shim
