//! ward-host
