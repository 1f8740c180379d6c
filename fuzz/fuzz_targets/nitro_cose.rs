//! The Nitro COSE_Sign1 + CBOR payload parser and verifier.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ward_attest::verify::{nitro, Policy};

fuzz_target!(|data: &[u8]| {
    let _ = nitro::parse(data);
    let _ = nitro::verify(data, &Policy::default(), std::time::SystemTime::UNIX_EPOCH);
});
