//! Per-store resource limits.

use wasmtime::ResourceLimiter;

/// Most table elements a workload may have (guards against a hostile `table.grow`).
const MAX_TABLE_ELEMENTS: usize = 10_000_000;

/// Caps each linear memory at a byte size and remembers the first denied growth, so
/// the run report can say "the workload hit its memory limit" instead of leaving the
/// user to guess why `malloc` failed.
pub(crate) struct MemoryLimiter {
    max_bytes: usize,
    pub(crate) denied_at: Option<u64>,
}

impl MemoryLimiter {
    pub(crate) fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            denied_at: None,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.denied_at.get_or_insert(desired as u64);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        1000
    }
    fn tables(&self) -> usize {
        1000
    }
    fn memories(&self) -> usize {
        100
    }
}
