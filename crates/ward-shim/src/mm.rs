//! The shim's address-space bookkeeping: a sorted list of free ranges of guest memory,
//! in a fixed-size array (the shim has no heap). Guest virtual = guest physical, so a
//! range handed out by `mmap` is backed from the start and never faults.

/// Most disjoint free ranges tracked; `free` beyond this leaks the range (never unsound).
pub const MAX_RANGES: usize = 1024;

/// Free ranges `[start, end)` of the mmap pool, sorted and non-adjacent.
#[derive(Debug)]
pub struct Ranges {
    free: [(u64, u64); MAX_RANGES],
    n: usize,
    lo: u64,
    hi: u64,
}

impl Default for Ranges {
    fn default() -> Self {
        Self::new()
    }
}

impl Ranges {
    /// An empty pool.
    pub const fn new() -> Self {
        Self {
            free: [(0, 0); MAX_RANGES],
            n: 0,
            lo: 0,
            hi: 0,
        }
    }

    /// Makes `[lo, hi)` the pool, all free.
    pub fn init(&mut self, lo: u64, hi: u64) {
        self.lo = lo;
        self.hi = hi;
        self.n = 0;
        if hi > lo {
            self.free[0] = (lo, hi);
            self.n = 1;
        }
    }

    /// Whether `[start, start+len)` lies inside the pool.
    pub fn contains(&self, start: u64, len: u64) -> bool {
        match start.checked_add(len) {
            Some(end) => start >= self.lo && end <= self.hi,
            None => false,
        }
    }

    /// Free bytes left.
    pub fn free_bytes(&self) -> u64 {
        self.free[..self.n].iter().map(|(s, e)| e - s).sum()
    }

    /// Takes `len` bytes (a multiple of `align`, a power of two) at the lowest fit.
    pub fn alloc(&mut self, len: u64, align: u64) -> Option<u64> {
        if len == 0 {
            return None;
        }
        for i in 0..self.n {
            let (s, e) = self.free[i];
            let a = s.checked_add(align - 1)? & !(align - 1);
            if a < e && e - a >= len {
                self.take(a, a + len);
                return Some(a);
            }
        }
        None
    }

    /// Marks `[start, start+len)` as in use, whatever it was. False if outside the pool.
    pub fn take_fixed(&mut self, start: u64, len: u64) -> bool {
        if !self.contains(start, len) {
            return false;
        }
        self.take(start, start + len);
        true
    }

    /// Removes `[a, b)` from the free list.
    fn take(&mut self, a: u64, b: u64) {
        let mut i = 0;
        while i < self.n {
            let (s, e) = self.free[i];
            if e <= a || s >= b {
                i += 1;
                continue;
            }
            match (s < a, e > b) {
                (true, true) => {
                    // Split in two.
                    if self.n == MAX_RANGES {
                        // No room: drop the upper part (leaks it, stays correct).
                        self.free[i] = (s, a);
                        return;
                    }
                    self.free.copy_within(i + 1..self.n, i + 2);
                    self.n += 1;
                    self.free[i] = (s, a);
                    self.free[i + 1] = (b, e);
                    return;
                }
                (true, false) => {
                    self.free[i] = (s, a);
                    i += 1;
                }
                (false, true) => {
                    self.free[i] = (b, e);
                    i += 1;
                }
                (false, false) => {
                    self.free.copy_within(i + 1..self.n, i);
                    self.n -= 1;
                }
            }
        }
    }

    /// Returns `[start, start+len)` (clipped to the pool) to the free list; parts that
    /// are already free stay free.
    pub fn release(&mut self, start: u64, len: u64) {
        let a = start.max(self.lo);
        let b = start.saturating_add(len).min(self.hi);
        if a >= b {
            return;
        }
        // Drop what overlaps, then insert and merge neighbours.
        self.take(a, b);
        let pos = self.free[..self.n].partition_point(|&(s, _)| s < a);
        if self.n == MAX_RANGES {
            return;
        }
        self.free.copy_within(pos..self.n, pos + 1);
        self.free[pos] = (a, b);
        self.n += 1;
        if pos + 1 < self.n && self.free[pos + 1].0 == b {
            self.free[pos].1 = self.free[pos + 1].1;
            self.free.copy_within(pos + 2..self.n, pos + 1);
            self.n -= 1;
        }
        if pos > 0 && self.free[pos - 1].1 == a {
            self.free[pos - 1].1 = self.free[pos].1;
            self.free.copy_within(pos + 1..self.n, pos);
            self.n -= 1;
        }
    }

    /// Whether all of `[start, start+len)` is free.
    pub fn is_free(&self, start: u64, len: u64) -> bool {
        let Some(end) = start.checked_add(len) else {
            return false;
        };
        self.free[..self.n]
            .iter()
            .any(|&(s, e)| s <= start && end <= e)
    }

    /// The free ranges, lowest first.
    pub fn free_ranges(&self) -> &[(u64, u64)] {
        &self.free[..self.n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_release_merge() {
        let mut r = Box::new(Ranges::new());
        r.init(0x1000, 0x11000);
        let a = r.alloc(0x2000, 0x1000).unwrap();
        let b = r.alloc(0x1000, 0x1000).unwrap();
        assert_eq!((a, b), (0x1000, 0x3000));
        r.release(a, 0x2000);
        assert_eq!(r.free_ranges(), &[(0x1000, 0x3000), (0x4000, 0x11000)]);
        r.release(b, 0x1000);
        assert_eq!(r.free_ranges(), &[(0x1000, 0x11000)]);
        // Releasing something already free is harmless.
        r.release(0x2000, 0x4000);
        assert_eq!(r.free_bytes(), 0x10000);
    }

    #[test]
    fn fixed_and_alignment() {
        let mut r = Box::new(Ranges::new());
        r.init(0x1000, 0x100000);
        assert!(r.take_fixed(0x5000, 0x1000));
        assert!(!r.take_fixed(0xff000, 0x2000));
        let a = r.alloc(0x1000, 0x10000).unwrap();
        assert_eq!(a, 0x10000);
        assert_eq!(r.alloc(0x1000_0000, 0x1000), None);
        assert_eq!(r.free_bytes(), 0xff000 - 0x2000);
    }
}
