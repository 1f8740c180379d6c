//! TLS echo throughput: the echo example (examples/echo.wasm) in a `process` Keep with
//! `prot = "tls"` (`ward run`, TLS terminated in the Keep with a certificate from an
//! in-process Steward) against a native echo server (rustls, the same 4 KiB
//! read/write loop as echo.c, its own process, a certificate from the same Steward). One client
//! (rustls, trusting only the Steward's CA) measures both, interleaved, in one run.
//!
//! Usage (bench/tls-echo.sh): bench_tls_echo WARD ECHO_WASM [MIB] [ROUNDS]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use ward_attest::verify::Policy;
use ward_steward::client::{Client, Outcome};
use ward_steward::request::{self, CsrContext};
use ward_steward::{Steward, StewardConfig};

/// Bytes per client write.
const CHUNK: usize = 64 << 10;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A native TLS echo server on 127.0.0.1:0, one thread per connection.
fn native_server(cert: Vec<u8>, ca: Vec<u8>, key: Vec<u8>) -> SocketAddr {
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert), CertificateDer::from(ca)],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            )
            .expect("server config"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for tcp in listener.incoming().map_while(Result::ok) {
            let config = config.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).expect("session");
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut buf = [0u8; 4096];
                loop {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tls.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// One connection: (handshake time, seconds to echo `total` bytes). Full duplex: one
/// future writes while another reads the echo back.
fn measure(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    client: &Arc<rustls::ClientConfig>,
    total: usize,
) -> (Duration, f64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    rt.block_on(async {
        let t = Instant::now();
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let mut tls = tokio_rustls::TlsConnector::from(client.clone())
            .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
            .await
            .expect("handshake");
        let handshake = t.elapsed();
        let data: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
        let t = Instant::now();
        let (mut r, mut w) = tokio::io::split(&mut tls);
        let writer = async {
            let mut sent = 0;
            while sent < total {
                w.write_all(&data).await.expect("write");
                sent += CHUNK;
            }
            w.flush().await.expect("flush");
        };
        let reader = async {
            let mut buf = vec![0u8; CHUNK];
            let mut got = 0;
            while got < total {
                let n = r.read(&mut buf).await.expect("read");
                assert!(n > 0, "the echo server closed early");
                got += n;
            }
        };
        tokio::join!(writer, reader);
        let secs = t.elapsed().as_secs_f64();
        let _ = tls.shutdown().await;
        (handshake, secs)
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // The native server runs in its own process, as the Keep does.
    if let (Some("--serve"), Some(dir)) = (args.get(1).map(String::as_str), args.get(2)) {
        let dir = std::path::Path::new(dir);
        let read = |f: &str| std::fs::read(dir.join(f)).expect("native server files");
        let addr = native_server(read("cert.der"), read("ca.der"), read("key.der"));
        println!("{addr}");
        let _ = std::io::stdout().flush();
        // Until the bench closes our stdin.
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        return;
    }
    let (Some(ward), Some(wasm)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: bench_tls_echo WARD ECHO_WASM [MIB] [ROUNDS]");
        std::process::exit(2);
    };
    let mib: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(64);
    let rounds: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(5).max(1);
    let total = mib.max(1) << 20;

    // The Steward, in-process (insecure policy: process Keeps have `none` evidence).
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = Policy::from_toml("insecure_allow_software = true\n").expect("policy");
    let steward = Arc::new(
        Steward::open(&dir.path().join("ca"), policy, StewardConfig::default()).expect("steward"),
    );
    let ca = steward.ca().cert_der().to_vec();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let steward_addr = listener.local_addr().expect("addr");
    let s = steward.clone();
    rt.spawn(async move {
        let _ = ward_steward::server::serve(
            listener,
            s,
            &["localhost".into(), "127.0.0.1".into()],
            std::future::pending(),
        )
        .await;
    });

    // The native server's certificate: from the same Steward, same key type.
    let ctx = CsrContext::new(SystemTime::now(), vec![0; 32]);
    let (csr, key) = request::software_csr(&["127.0.0.1".into()], vec![1; 48], &ctx).expect("csr");
    let issued = rt
        .block_on(async {
            Client::new(steward_addr, "localhost", &ca)
                .expect("client")
                .attest(csr)
                .await
        })
        .expect("attest");
    let Outcome::Issued(issued) = issued else {
        panic!("the Steward refused the native server's CSR");
    };
    let native_dir = dir.path().join("native");
    std::fs::create_dir(&native_dir).expect("dir");
    std::fs::write(native_dir.join("cert.der"), &issued.certificate).expect("cert");
    std::fs::write(native_dir.join("ca.der"), &issued.ca).expect("ca");
    std::fs::write(native_dir.join("key.der"), key.serialize_der()).expect("key");
    let mut native_proc = Command::new(std::env::current_exe().expect("exe"))
        .arg("--serve")
        .arg(&native_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("native server");
    let mut line = String::new();
    BufReader::new(native_proc.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("native address");
    let native: SocketAddr = line.trim().parse().expect("native address");

    // The Keep: ward run, echo.wasm, a tls listen socket on a free port.
    std::fs::write(dir.path().join("ca.der"), &ca).expect("ca");
    let cfg = dir.path().join("Ward.toml");
    std::fs::write(
        &cfg,
        format!(
            "steward = \"https://{steward_addr}\"\nsteward_ca = \"ca.der\"\n[[files]]\nkind = \"stderr\"\n[[files]]\nkind = \"listen\"\nname = \"ingest\"\nprot = \"tls\"\naddr = \"127.0.0.1\"\nport = 0\n"
        ),
    )
    .expect("config");
    let mut keep = Command::new(ward)
        .args(["run", "--config"])
        .arg(&cfg)
        .arg(wasm)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ward run");
    let mut lines = BufReader::new(keep.stderr.take().expect("stderr")).lines();
    let keep_addr: SocketAddr = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(a) = line.split("ingest listening on ").nth(1) {
                    break a.trim().parse().expect("address");
                }
            }
            _ => {
                let _ = keep.kill();
                eprintln!("bench_tls_echo: ward run ended before listening");
                std::process::exit(1);
            }
        }
    };
    std::thread::spawn(move || for _ in lines {});

    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca)).expect("root");
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );

    // Warm up both.
    measure(&rt, native, &client, CHUNK * 16);
    measure(&rt, keep_addr, &client, CHUNK * 16);
    let (mut n_rate, mut n_hs, mut k_rate, mut k_hs) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let (hs, s) = measure(&rt, native, &client, total);
        n_rate.push(total as f64 / s / 1e6);
        n_hs.push(hs.as_secs_f64() * 1e3);
        let (hs, s) = measure(&rt, keep_addr, &client, total);
        k_rate.push(total as f64 / s / 1e6);
        k_hs.push(hs.as_secs_f64() * 1e3);
    }
    let _ = keep.kill();
    let _ = keep.wait();
    drop(native_proc.stdin.take());
    let _ = native_proc.wait();

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "TLS echo throughput: {mib} MiB per connection, full duplex ({} KiB writes), {rounds} rounds, interleaved",
        CHUNK >> 10
    );
    println!(
        "(client: rustls, trusting only the Steward CA; load average {})",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    println!(
        "| {:<46} | {:>12} | {:>9} | {:>9} | {:>14} |",
        "server", "median MB/s", "min", "max", "handshake ms"
    );
    println!(
        "|{:-<48}|{:->14}|{:->11}|{:->11}|{:->16}|",
        "", "", "", "", ""
    );
    let row = |name: &str, rate: &[f64], hs: &[f64]| {
        let min = rate.iter().copied().fold(f64::INFINITY, f64::min);
        let max = rate.iter().copied().fold(0.0, f64::max);
        println!(
            "| {name:<46} | {:>12.1} | {min:>9.1} | {max:>9.1} | {:>14.2} |",
            median(rate.to_vec()),
            median(hs.to_vec())
        );
    };
    row(
        "native echo process (Rust, rustls, 4 KiB loop)",
        &n_rate,
        &n_hs,
    );
    row(
        "echo.wasm in a process Keep (TLS in the Keep)",
        &k_rate,
        &k_hs,
    );
    println!();
    println!(
        "Keep / native throughput: {:.2}",
        median(k_rate) / median(n_rate)
    );
}
