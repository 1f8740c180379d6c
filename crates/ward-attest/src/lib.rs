//! ward-attest
