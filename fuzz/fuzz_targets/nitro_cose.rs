//! The Nitro COSE_Sign1 + CBOR payload parser and verifier, at the vector's pinned
//! time so that inputs close to the real document reach the chain and signature
//! checks (chain signatures are cached after the first success).
#![no_main]
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use ward_attest::verify::{nitro, ChainCache, Policy};

fn cache() -> &'static ChainCache {
    static C: OnceLock<ChainCache> = OnceLock::new();
    C.get_or_init(ChainCache::new)
}

fuzz_target!(|data: &[u8]| {
    if nitro::parse(data).is_ok() {
        let now = UNIX_EPOCH + Duration::from_secs(1_736_179_625);
        let _ = nitro::verify_cached(data, &Policy::default(), now, cache());
    }
});
