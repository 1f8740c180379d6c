//! ward-proto
