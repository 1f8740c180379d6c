//! ward-steward
