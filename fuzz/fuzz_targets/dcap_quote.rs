//! TDX/SGX quote handling: the length check, dcap-qvl's parser, and (with the vectors
//! present) full verification against real collateral at a pinned time.
#![no_main]
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use ward_attest::verify::{dcap, Policy};
use ward_attest::{Collateral, TeeKind};

fn collateral() -> &'static Collateral {
    static C: OnceLock<Collateral> = OnceLock::new();
    C.get_or_init(|| {
        let dir = std::env::var("WARD_VECTORS").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors").into()
        });
        let json = std::fs::read(format!("{dir}/tdx/dcap-qvl/tdx_quote_collateral.json"))
            .unwrap_or_else(|_| b"{}".to_vec());
        Collateral {
            quote_collateral: json,
            ..Collateral::default()
        }
    })
}

fuzz_target!(|data: &[u8]| {
    if dcap::parse_quote(data).is_ok() {
        let now = UNIX_EPOCH + Duration::from_secs(1_751_328_000);
        let _ = dcap::verify(TeeKind::Tdx, data, collateral(), &Policy::default(), now);
    }
});
