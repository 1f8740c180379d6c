//! The SNP report parser and the full SNP path (with no VCEK, and with a junk one).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ward_attest::verify::{snp, Policy};
use ward_attest::Collateral;

fuzz_target!(|data: &[u8]| {
    let _ = snp::Report::parse(data);
    let coll = Collateral { vek: data.get(..64).unwrap_or(data).to_vec(), ..Collateral::default() };
    let _ = snp::verify(data, &coll, &Policy::default(), std::time::SystemTime::UNIX_EPOCH);
});
