//! `bench/steward.sh`: CSR -> certificate latency, loopback HTTPS and in-process.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ward_attest::verify::Policy;
use ward_steward::client::{Client, Outcome};
use ward_steward::request::{self, CsrContext};
use ward_steward::{Clock, Steward, StewardConfig};

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let pick = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "| {name:<40} | {:>5} | {:>10.0} | {:>10.0} | {:>10.0} | {:>10.0} |",
        v.len(),
        us(pick(0.5)),
        us(pick(0.9)),
        us(v[0]),
        us(v[v.len() - 1])
    );
}

fn software_csrs(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let ctx = CsrContext::new(SystemTime::now(), vec![7; 32]);
            request::software_csr(&["keep.bench".into()], vec![1; 48], &ctx)
                .expect("csr")
                .0
        })
        .collect()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200)
        .max(1);
    let policy = Policy::from_toml("insecure_allow_software = true\n").expect("policy");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("Steward: CSR -> certificate, {n} requests per row (microseconds)");
    println!();
    println!(
        "| {:<40} | {:>5} | {:>10} | {:>10} | {:>10} | {:>10} |",
        "path", "n", "median", "p90", "min", "max"
    );
    println!(
        "|{:-<42}|{:->7}|{:->12}|{:->12}|{:->12}|{:->12}|",
        "", "", "", "", "", ""
    );

    // In-process: the checks, signing and the fsynced record append.
    let dir = tempfile::tempdir().expect("tempdir");
    let steward = Arc::new(
        Steward::open(dir.path(), policy.clone(), StewardConfig::default()).expect("steward"),
    );
    let csrs = software_csrs(n);
    let mut times = Vec::with_capacity(n);
    for csr in &csrs {
        let t = Instant::now();
        steward.attest(csr).expect("issued");
        times.push(t.elapsed());
    }
    stats("software, in-process (incl. fsync)", times);

    // Loopback HTTPS: a new TCP + TLS connection per request.
    let csrs = software_csrs(n);
    let times = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let s = steward.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            ward_steward::server::serve(listener, s, &["localhost".into()], async {
                let _ = stopped.await;
            })
            .await
        });
        let client = Client::new(addr, "localhost", steward.ca().cert_der()).expect("client");
        let mut times = Vec::with_capacity(n);
        for csr in csrs {
            let t = Instant::now();
            match client.attest(csr).await.expect("request") {
                Outcome::Issued(_) => {}
                Outcome::Rejected { body, .. } => panic!("rejected: {}", body.message),
            }
            times.push(t.elapsed());
        }
        let _ = stop.send(());
        let _ = server.await;
        times
    });
    stats("software, loopback HTTPS (new TLS each)", times);

    // The Enarx SNP vector, in-process (each run needs a fresh record: one
    // certificate per Enarx key).
    let vectors = std::env::var_os("WARD_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/vectors"));
    match std::fs::read(vectors.join("enarx-steward/snp-milan.csr")) {
        Ok(csr) => {
            let config = StewardConfig {
                clock: Clock::Fixed(UNIX_EPOCH + Duration::from_secs(1_735_689_600)),
                ..StewardConfig::default()
            };
            let runs = n.min(50);
            let mut times = Vec::with_capacity(runs);
            let dirs: Vec<_> = (0..runs)
                .map(|_| tempfile::tempdir().expect("tempdir"))
                .collect();
            for d in &dirs {
                let s =
                    Steward::open(d.path(), Policy::default(), config.clone()).expect("steward");
                let t = Instant::now();
                s.attest(&csr).expect("issued");
                times.push(t.elapsed());
            }
            stats("Enarx SNP vector, in-process (cold)", times);
        }
        Err(e) => println!("(Enarx SNP vector skipped: {e})"),
    }
}
