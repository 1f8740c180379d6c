//! A `prot = "tls"` listen socket without a Steward: the Keep terminates TLS with a
//! self-signed RA-TLS certificate whose evidence binds its key and the workload's
//! SHA-256, and the workload (the unchanged C echo server) sees plaintext.

mod common;
#[path = "common/host.rs"]
mod host;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use common::*;
use sha2::Digest;
use ward_attest::verify::{ChainCache, Policy};

#[test]
fn tls_listen_without_a_steward_serves_an_ra_tls_certificate_for_the_workload() {
    let Some(app) = example("echo.wasm") else {
        return;
    };
    let wasm = std::fs::read(&app).unwrap();
    let (_d, cfg) = temp_file(
        "Ward.toml",
        b"args = [\"1\"]\n[[files]]\nkind = \"stderr\"\n[[files]]\nkind = \"listen\"\nname = \"ingest\"\nprot = \"tls\"\naddr = \"127.0.0.1\"\nport = 0\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args([
            "run",
            "--config",
            cfg.to_str().unwrap(),
            app.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = host::kill_after(child.id(), std::time::Duration::from_secs(120));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("ward run exited before listening")
            .unwrap();
        if let Some(a) = line.split("ingest listening on ").nth(1) {
            break a.trim().to_string();
        }
    };
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    // The client checks the evidence itself (below), not a CA chain.
    let conn = rustls::ClientConnection::new(
        host::any_cert_client(),
        rustls::pki_types::ServerName::try_from("ward-keep").unwrap(),
    )
    .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, std::net::TcpStream::connect(&addr).unwrap());
    let msg = vec![0x5a; 50_000];
    tls.write_all(&msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    tls.read_exact(&mut back).unwrap();
    assert_eq!(back, msg);
    let leaf = tls.conn.peer_certificates().unwrap()[0].to_vec();
    tls.conn.send_close_notify();
    let _ = tls.flush();
    drop(tls);

    let policy = Policy {
        insecure_allow_software: true,
        ..Policy::default()
    };
    let digest = sha2::Sha256::digest(&wasm);
    let cache = ChainCache::new();
    let claims =
        ward_attest::ratls::check::verify_cert(&leaf, &digest, &policy, SystemTime::now(), &cache)
            .expect("the evidence binds the certificate's key and this workload");
    assert_eq!(claims.kind.to_string(), "none");
    // The binding is to this workload: another digest does not verify.
    let other = sha2::Sha256::digest(b"another workload");
    assert!(ward_attest::ratls::check::verify_cert(
        &leaf,
        &other,
        &policy,
        SystemTime::now(),
        &cache
    )
    .is_err());

    let out = child.wait_with_output().unwrap();
    let rest = drain.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{rest:?}");
}
