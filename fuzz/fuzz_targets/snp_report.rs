//! The SNP report parser and the full SNP path. With the vectors present, the real
//! Milan VCEK is used at a pinned time, so inputs reach the report-signature and
//! TCB-binding checks (the chain is checked once, then cached).
#![no_main]
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use ward_attest::verify::{snp, ChainCache, Policy};
use ward_attest::Collateral;

fn vcek() -> &'static Vec<u8> {
    static V: OnceLock<Vec<u8>> = OnceLock::new();
    V.get_or_init(|| {
        let dir = std::env::var("WARD_VECTORS").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors").into()
        });
        std::fs::read(format!("{dir}/snp/milan-virtee/vcek.der")).unwrap_or_default()
    })
}

fn cache() -> &'static ChainCache {
    static C: OnceLock<ChainCache> = OnceLock::new();
    C.get_or_init(ChainCache::new)
}

fuzz_target!(|data: &[u8]| {
    let _ = snp::Report::parse(data);
    let now = UNIX_EPOCH + Duration::from_secs(1_735_689_600);
    let coll = Collateral {
        vek: vcek().clone(),
        ..Collateral::default()
    };
    let _ = snp::verify_cached(data, &coll, &Policy::default(), now, cache());
    // The VCEK slot itself is hostile input too.
    let junk = Collateral {
        vek: data.get(..1400).unwrap_or(data).to_vec(),
        ..Collateral::default()
    };
    let _ = snp::verify(data, &junk, &Policy::default(), SystemTime::UNIX_EPOCH);
});
