//! Verification time per evidence kind, with and without the chain cache.
//! Run by `bench/attest.sh`; reads the real vectors from ../shared/vectors.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ward_attest::verify::{verify_with_cache, ChainCache, Policy};
use ward_attest::{Collateral, Evidence, TeeKind};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(31);
    let dir = std::env::var_os("WARD_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/vectors"
            ))
        });
    if !dir.is_dir() {
        eprintln!(
            "bench: vectors not found at {}; set WARD_VECTORS",
            dir.display()
        );
        std::process::exit(1);
    }
    let read = |p: &str| std::fs::read(dir.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    let sgx_policy = Policy::from_toml(
        "[dcap]\nallow_statuses = [\"ConfigurationAndSWHardeningNeeded\"]\nallow_advisories = [\"INTEL-SA-00289\", \"INTEL-SA-00615\"]\n",
    )
    .unwrap();
    let cases: Vec<(&str, Evidence, Policy, SystemTime)> = vec![
        (
            "snp (milan)",
            Evidence {
                kind: TeeKind::Snp,
                evidence: read("snp/milan-virtee/report.bin"),
                collateral: Collateral {
                    vek: read("snp/milan-virtee/vcek.der"),
                    ..Collateral::default()
                },
            },
            Policy::default(),
            at(1_735_689_600),
        ),
        (
            "tdx (v4)",
            Evidence {
                kind: TeeKind::Tdx,
                evidence: read("tdx/dcap-qvl/tdx_quote"),
                collateral: Collateral {
                    quote_collateral: read("tdx/dcap-qvl/tdx_quote_collateral.json"),
                    ..Collateral::default()
                },
            },
            Policy::default(),
            at(1_751_328_000),
        ),
        (
            "sgx (v3)",
            Evidence {
                kind: TeeKind::Sgx,
                evidence: read("sgx/dcap-qvl/sgx_quote"),
                collateral: Collateral {
                    quote_collateral: read("sgx/dcap-qvl/sgx_quote_collateral.json"),
                    ..Collateral::default()
                },
            },
            sgx_policy,
            at(1_751_328_000),
        ),
        (
            "nitro",
            Evidence {
                kind: TeeKind::Nitro,
                evidence: read("nitro/eu-central-1/attestation.cose"),
                collateral: Collateral::default(),
            },
            Policy::default(),
            at(1_736_179_625),
        ),
        (
            "none (software)",
            Evidence::software(vec![0; 48], [0; 64]),
            Policy::from_toml("insecure_allow_software = true").unwrap(),
            at(0),
        ),
    ];
    println!("attestation verification: median of {runs} runs each (release build)");
    println!(
        "{:<18} {:>14} {:>14} {:>9}",
        "kind", "uncached", "chain cached", "speedup"
    );
    for (name, ev, policy, now) in cases {
        let mut cold = Vec::new();
        for _ in 0..runs {
            let cache = ChainCache::new();
            let t = Instant::now();
            verify_with_cache(&ev, &policy, now, &cache).expect("vector verifies");
            cold.push(t.elapsed());
        }
        let cache = ChainCache::new();
        verify_with_cache(&ev, &policy, now, &cache).unwrap();
        let mut warm = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            verify_with_cache(&ev, &policy, now, &cache).unwrap();
            warm.push(t.elapsed());
        }
        let (c, w) = (median(cold), median(warm));
        let note = if matches!(ev.kind, TeeKind::Tdx | TeeKind::Sgx) {
            " (dcap-qvl: no cache)"
        } else {
            ""
        };
        println!(
            "{:<18} {:>11.1} µs {:>11.1} µs {:>8.1}x{note}",
            name,
            c.as_secs_f64() * 1e6,
            w.as_secs_f64() * 1e6,
            c.as_secs_f64() / w.as_secs_f64().max(1e-9)
        );
    }
}
