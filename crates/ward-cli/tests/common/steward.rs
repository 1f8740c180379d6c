//! A real `ward steward serve` for end-to-end tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `ward steward serve`, killed on drop.
pub struct Serve {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `ward steward serve` on 127.0.0.1:0 with `ca_dir` and `policy` (+ `extra`).
pub fn serve(ca_dir: &Path, policy: &Path, extra: &[&str]) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["steward", "serve", "--listen", "127.0.0.1:0", "--ca-dir"])
        .arg(ca_dir)
        .arg("--policy")
        .arg(policy)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let addr = loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            panic!("ward steward serve exited: {seen:?}");
        };
        if let Some(rest) = line.split("listening on https://").nth(1) {
            break rest.split('/').next().unwrap().parse().unwrap();
        }
        seen.push(line);
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Serve { child, addr }
}

/// A TLS client configuration that trusts only `roots` (e.g. the Steward's CA).
pub fn client_trusting(
    roots: &[rustls::pki_types::CertificateDer<'static>],
) -> std::sync::Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth(),
    )
}
