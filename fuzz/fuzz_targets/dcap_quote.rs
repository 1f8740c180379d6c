//! TDX/SGX quote handling: the length check and dcap-qvl's parser behind it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ward_attest::verify::{dcap, Policy};
use ward_attest::{Collateral, TeeKind};

fuzz_target!(|data: &[u8]| {
    let coll = Collateral { quote_collateral: b"{}".to_vec(), ..Collateral::default() };
    let _ = dcap::verify(TeeKind::Tdx, data, &coll, &Policy::default(), std::time::SystemTime::UNIX_EPOCH);
    let _ = dcap_parse(data);
});

fn dcap_parse(data: &[u8]) -> bool {
    ward_attest::verify::dcap::parse_quote(data).is_ok()
}
