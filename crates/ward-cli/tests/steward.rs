//! `ward steward` end to end: the real binary serving on 127.0.0.1:0 (killed when
//! each test ends), and `ward steward ca`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

#[path = "common/steward.rs"]
mod steward_server;

use steward_server::serve;
use ward_steward::client::{Client, Outcome};
use ward_steward::request::{self, CsrContext};

fn ward() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ward"))
}

fn ca_pem(ca_dir: &Path) -> (String, String) {
    let out = ward()
        .args(["steward", "ca", "--json", "--ca-dir"])
        .arg(ca_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["pem"].as_str().unwrap().to_string(),
        v["fingerprint_sha256"].as_str().unwrap().to_string(),
    )
}

fn ca_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

fn write_policy(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("policy.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn attest(addr: SocketAddr, ca: &[u8], csr: Vec<u8>) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        Client::new(addr, "localhost", ca)
            .unwrap()
            .attest(csr)
            .await
            .unwrap()
    })
}

#[test]
fn serve_issues_for_software_evidence_and_keeps_its_ca_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("ca");
    let policy = write_policy(tmp.path(), "insecure_allow_software = true\n");
    let (pem, fp) = ca_pem(&ca_dir);
    let ca = ca_der(&pem);
    let ctx = CsrContext::new(SystemTime::now(), vec![5; 32]);
    let csr = request::software_csr(&["keep.test".into()], vec![1; 48], &ctx)
        .unwrap()
        .0;
    {
        let s = serve(&ca_dir, &policy, &["--validity", "10m"]);
        let unix = |t: SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let before = unix(SystemTime::now());
        let outcome = attest(s.addr, &ca, csr.clone());
        let after = unix(SystemTime::now());
        match outcome {
            Outcome::Issued(r) => {
                assert_eq!(r.ca, ca);
                assert_eq!(r.claims.kind, "none");
                assert_eq!(r.claims.workload, vec![5; 32]);
                // --validity 10m: issued "now" + 600 s.
                assert!(
                    (before + 600..=after + 600).contains(&r.not_after),
                    "{before} {} {after}",
                    r.not_after
                );
            }
            Outcome::Rejected { body, .. } => panic!("{}", body.message),
        }
    }
    // Restarted: same CA, the record remembers the CSR.
    let s = serve(&ca_dir, &policy, &[]);
    match attest(s.addr, &ca, csr) {
        Outcome::Rejected { status, body } => {
            assert_eq!((status, body.reason_code.as_str()), (409, "replay"))
        }
        Outcome::Issued(_) => panic!("a replayed CSR was issued"),
    }
    drop(s);
    assert_eq!(ca_pem(&ca_dir).1, fp);
}

#[test]
fn serve_refuses_software_evidence_under_the_default_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("ca");
    let policy = write_policy(tmp.path(), "");
    let ca = ca_der(&ca_pem(&ca_dir).0);
    let s = serve(&ca_dir, &policy, &[]);
    let ctx = CsrContext::new(SystemTime::now(), vec![]);
    let csr = request::software_csr(&["keep.test".into()], vec![], &ctx)
        .unwrap()
        .0;
    match attest(s.addr, &ca, csr) {
        Outcome::Rejected { status, body } => assert_eq!(
            (status, body.reason_code.as_str()),
            (403, "evidence-software-not-allowed")
        ),
        Outcome::Issued(_) => panic!("software evidence issued under a strict policy"),
    }
}

#[test]
fn serve_verifies_the_enarx_vector_at_a_pinned_time() {
    let dir = std::env::var_os("WARD_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/vectors"
            ))
        });
    let Ok(csr) = std::fs::read(dir.join("enarx-steward/snp-milan.csr")) else {
        eprintln!(
            "skipping: no Enarx CSR vector under {} (set WARD_VECTORS)",
            dir.display()
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("ca");
    let policy = write_policy(tmp.path(), "");
    let ca = ca_der(&ca_pem(&ca_dir).0);
    let s = serve(&ca_dir, &policy, &["--at", "2025-01-01T00:00:00Z"]);
    match attest(s.addr, &ca, csr) {
        Outcome::Issued(r) => {
            assert_eq!(
                (r.claims.format.as_str(), r.claims.kind.as_str()),
                ("enarx", "snp")
            );
            assert!(r.notes.iter().any(|n| n.contains("CRL")), "{:?}", r.notes);
        }
        Outcome::Rejected { body, .. } => panic!("{}: {}", body.reason_code, body.message),
    }
}

#[test]
fn serve_rejects_bad_arguments_before_listening() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("ca");
    let pinned = write_policy(
        tmp.path(),
        &format!("report_data = \"{}\"\n", "00".repeat(64)),
    );
    let out = ward()
        .args(["steward", "serve", "--listen", "127.0.0.1:0", "--ca-dir"])
        .arg(&ca_dir)
        .arg("--policy")
        .arg(&pinned)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("report_data"), "{err}");
    let out = ward()
        .args([
            "steward",
            "serve",
            "--validity",
            "1w",
            "--policy",
            "p",
            "--ca-dir",
        ])
        .arg(&ca_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown unit"));
}

/// `prot = "tls"`: the Keep gets its certificate from the Steward before it runs
/// the workload and terminates TLS itself; the workload (the plain TCP echo
/// example) sees plaintext, the client trusts only the Steward's CA and reads the
/// attested claims (workload digest included) from the certificate.
#[test]
fn a_tls_socket_is_certified_by_the_steward_and_terminated_in_the_keep() {
    use std::io::{Read, Write};
    let app = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/echo.wasm"
    ));
    let Ok(wasm) = std::fs::read(&app) else {
        eprintln!(
            "skipping: {} not built (run examples/build.sh)",
            app.display()
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("ca");
    let policy = write_policy(tmp.path(), "insecure_allow_software = true\n");
    let pem = ca_pem(&ca_dir).0;
    std::fs::write(tmp.path().join("steward-ca.pem"), &pem).unwrap();
    let steward = serve(&ca_dir, &policy, &[]);
    let cfg = tmp.path().join("Ward.toml");
    std::fs::write(
        &cfg,
        format!(
            "args = [\"1\"]\nsteward = \"https://{}\"\nsteward_ca = \"steward-ca.pem\"\n[[files]]\nkind = \"stderr\"\n[[files]]\nkind = \"listen\"\nname = \"ingest\"\nprot = \"tls\"\naddr = \"127.0.0.1\"\nport = 0\n",
            steward.addr
        ),
    )
    .unwrap();
    let mut child = ward()
        .args(["run", "--config"])
        .arg(&cfg)
        .arg(&app)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(Option<Child>);
    impl Drop for Kill {
        fn drop(&mut self) {
            if let Some(c) = self.0.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let stderr = child.stderr.take().unwrap();
    let mut child = Kill(Some(child));
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let addr: SocketAddr = loop {
        let Some(Ok(line)) = lines.next() else {
            panic!("ward run exited before listening: {seen:?}");
        };
        if let Some(a) = line.split("ingest listening on ").nth(1) {
            break a.trim().parse().unwrap();
        }
        seen.push(line);
    };
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    let conn = rustls::ClientConnection::new(
        steward_server::client_trusting(&[ca_der(&pem).into()]),
        rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
    )
    .unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"ping over tls\n").unwrap();
    let mut buf = [0u8; 14];
    tls.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping over tls\n");
    // More than one TLS record each way.
    for i in 0..16u8 {
        let chunk = vec![i; 20_000];
        tls.write_all(&chunk).unwrap();
        let mut back = vec![0u8; chunk.len()];
        tls.read_exact(&mut back).unwrap();
        assert_eq!(back, chunk);
    }
    let leaf = tls.conn.peer_certificates().unwrap()[0].to_vec();
    let claims = ward_steward::IssuedClaims::from_cert_der(&leaf)
        .unwrap()
        .expect("claims extension");
    assert_eq!(claims.kind, "none");
    assert!(claims.insecure_software);
    use sha2::Digest;
    assert_eq!(claims.workload, sha2::Sha256::digest(&wasm).to_vec());
    tls.conn.send_close_notify();
    let _ = tls.flush();
    drop(tls);
    let out = child.0.take().unwrap().wait_with_output().unwrap();
    let rest = drain.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{seen:?} {rest:?}");
}

/// A Steward that refuses the Keep (strict policy, software evidence): `ward run`
/// fails before the workload runs, and says why.
#[test]
fn a_tls_socket_refused_by_the_steward_stops_the_run() {
    let app = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/echo.wasm"
    ));
    if !app.exists() {
        eprintln!(
            "skipping: {} not built (run examples/build.sh)",
            app.display()
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("ca");
    let policy = write_policy(tmp.path(), "");
    std::fs::write(tmp.path().join("steward-ca.pem"), ca_pem(&ca_dir).0).unwrap();
    let steward = serve(&ca_dir, &policy, &[]);
    let cfg = tmp.path().join("Ward.toml");
    std::fs::write(
        &cfg,
        format!(
            "steward = \"https://{}\"\nsteward_ca = \"steward-ca.pem\"\n[[files]]\nkind = \"listen\"\nname = \"ingest\"\nprot = \"tls\"\nport = 0\n",
            steward.addr
        ),
    )
    .unwrap();
    let out = ward()
        .args(["run", "--config"])
        .arg(&cfg)
        .arg(&app)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("evidence-software-not-allowed"), "{err}");
}

/// A WASI command that writes "ping over tls\n" to fd 3 (a connect socket), reads
/// the answer and prints it. Exit 3: the write failed (e.g. the TLS handshake); 4:
/// the read failed.
const TLS_CLIENT_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\40\00\00\00\0e\00\00\00")
  (data (i32.const 16) "\80\00\00\00\0e\00\00\00")
  (data (i32.const 64) "ping over tls\n")
  (func (export "_start")
    (if (call $fd_write (i32.const 3) (i32.const 0) (i32.const 1) (i32.const 8))
      (then (call $exit (i32.const 3))))
    (if (call $fd_read (i32.const 3) (i32.const 16) (i32.const 1) (i32.const 24))
      (then (call $exit (i32.const 4))))
    (i32.store (i32.const 32) (i32.const 128))
    (i32.store (i32.const 36) (i32.load (i32.const 24)))
    (drop (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 8)))))"#;

/// A one-connection TLS echo server on 127.0.0.1:0 with `chain` + `key`, that asks
/// for a client certificate chained to `client_ca`; yields the client's certificate
/// (None when the handshake failed).
fn tls_server(
    chain: Vec<Vec<u8>>,
    key: Vec<u8>,
    client_ca: &[u8],
) -> (SocketAddr, std::thread::JoinHandle<Option<Vec<u8>>>) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use std::io::{Read, Write};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(client_ca.to_vec())).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            chain.into_iter().map(CertificateDer::from).collect(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().ok()?;
        let conn = rustls::ServerConnection::new(std::sync::Arc::new(config)).ok()?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut buf = [0u8; 14];
        tls.read_exact(&mut buf).ok()?;
        tls.write_all(&buf).ok()?;
        tls.conn.send_close_notify();
        let _ = tls.flush();
        let client = tls.conn.peer_certificates()?.first()?.to_vec();
        Some(client)
    });
    (addr, handle)
}

/// A Steward-issued certificate for `name` (software evidence): (chain, key).
fn steward_cert(addr: SocketAddr, ca: &[u8], name: &str) -> (Vec<Vec<u8>>, Vec<u8>) {
    let ctx = CsrContext::new(SystemTime::now(), vec![]);
    let (csr, key) = request::software_csr(&[name.into()], vec![], &ctx).unwrap();
    match attest(addr, ca, csr) {
        Outcome::Issued(r) => (vec![r.certificate, r.ca], key.serialize_der()),
        Outcome::Rejected { body, .. } => panic!("{}", body.message),
    }
}

/// `kind = "connect", prot = "tls"`: the Keep verifies the server against the
/// Steward's CA (the configured roots), for the socket's host name, and presents its
/// own Steward certificate as a client certificate. A server whose certificate comes
/// from another CA, or names another host, is refused before the workload's first
/// byte leaves (its write fails).
#[test]
fn a_tls_connect_socket_verifies_the_server_and_presents_the_keep_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("ca");
    let policy = write_policy(tmp.path(), "insecure_allow_software = true\n");
    let pem = ca_pem(&ca_dir).0;
    let ca = ca_der(&pem);
    std::fs::write(tmp.path().join("steward-ca.pem"), &pem).unwrap();
    let steward = serve(&ca_dir, &policy, &[]);
    let app = tmp.path().join("client.wat");
    std::fs::write(&app, TLS_CLIENT_WAT).unwrap();
    let run = |server: SocketAddr| {
        let cfg = tmp.path().join("Ward.toml");
        std::fs::write(
            &cfg,
            format!(
                "steward = \"https://{}\"\nsteward_ca = \"steward-ca.pem\"\n[[files]]\nkind = \"stdin\"\n[[files]]\nkind = \"stdout\"\n[[files]]\nkind = \"stderr\"\n[[files]]\nkind = \"connect\"\nname = \"up\"\nprot = \"tls\"\nhost = \"127.0.0.1\"\nport = {}\n",
                steward.addr,
                server.port()
            ),
        )
        .unwrap();
        ward()
            .args(["run", "--config"])
            .arg(&cfg)
            .arg(&app)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };

    // A server certified by the same Steward, for 127.0.0.1.
    let (chain, key) = steward_cert(steward.addr, &ca, "127.0.0.1");
    let (addr, server) = tls_server(chain, key, &ca);
    let out = run(addr);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(out.stdout, b"ping over tls\n");
    let client = server
        .join()
        .unwrap()
        .expect("the Keep's client certificate");
    let claims = ward_steward::IssuedClaims::from_cert_der(&client)
        .unwrap()
        .expect("the Steward's claims in the client certificate");
    assert_eq!(
        (claims.kind.as_str(), claims.insecure_software),
        ("none", true)
    );

    // A server whose certificate another CA issued (for the right name).
    let key = rcgen::KeyPair::generate().unwrap();
    let other = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (addr, server) = tls_server(vec![other.der().to_vec()], key.serialize_der(), &ca);
    let out = run(addr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    assert!(server.join().unwrap().is_none());

    // A server certified by the Steward, but for another name.
    let (chain, key) = steward_cert(steward.addr, &ca, "other.test");
    let (addr, server) = tls_server(chain, key, &ca);
    let out = run(addr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.join().unwrap().is_none());
}

/// `prot = "tls"` on a connect socket without a Steward is a config error (there
/// are no roots to verify the server against, nor a certificate to present).
#[test]
fn a_tls_connect_socket_without_a_steward_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("client.wat");
    std::fs::write(&app, TLS_CLIENT_WAT).unwrap();
    let cfg = tmp.path().join("Ward.toml");
    std::fs::write(
        &cfg,
        "[[files]]\nkind = \"connect\"\nname = \"up\"\nprot = \"tls\"\nhost = \"127.0.0.1\"\nport = 9\n",
    )
    .unwrap();
    let out = ward()
        .args(["run", "--config"])
        .arg(&cfg)
        .arg(&app)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("steward"), "{err}");
}
