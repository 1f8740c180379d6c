//! The Steward end to end: a real HTTPS server on 127.0.0.1:0 (stopped at the end of
//! each test), CSRs made here, and exactly one failing check per negative test.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::PublicKeyData;
use ward_attest::verify::Policy;
use ward_attest::Evidence;
use ward_steward::client::{Client, Outcome};
use ward_steward::request::{self, CsrContext};
use ward_steward::server::IssueResponse;
use ward_steward::{Clock, IssuedClaims, Steward, StewardConfig};

const INSECURE: &str = "insecure_allow_software = true\n";

fn policy(text: &str) -> Policy {
    Policy::from_toml(text).unwrap()
}

fn config() -> StewardConfig {
    StewardConfig::default()
}

/// A Steward serving HTTPS on 127.0.0.1:0 until dropped.
struct Server {
    client: Client,
    steward: Arc<Steward>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    async fn start(dir: &Path, policy: Policy, config: StewardConfig) -> Self {
        let steward = Arc::new(Steward::open(dir, policy, config).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let s = steward.clone();
        let task = tokio::spawn(async move {
            ward_steward::server::serve(listener, s, &["localhost".into()], async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let client = Client::new(addr, "localhost", steward.ca().cert_der()).unwrap();
        Self {
            client,
            steward,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn attest(&self, csr: Vec<u8>) -> Outcome {
        self.client.attest(csr).await.unwrap()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

fn issued(o: Outcome) -> IssueResponse {
    match o {
        Outcome::Issued(r) => r,
        Outcome::Rejected { status, body } => {
            panic!("rejected: {status} {}: {}", body.reason_code, body.message)
        }
    }
}

#[track_caller]
fn rejected(o: Outcome, status: u16, code: &str) -> String {
    match o {
        Outcome::Issued(r) => panic!("issued {} but expected {code}", r.serial),
        Outcome::Rejected { status: s, body } => {
            assert_eq!(
                (s, body.reason_code.as_str()),
                (status, code),
                "{}",
                body.message
            );
            body.message
        }
    }
}

fn sans() -> Vec<String> {
    vec!["keep.test".into(), "127.0.0.1".into()]
}

fn software_csr(workload: &[u8]) -> Vec<u8> {
    let ctx = CsrContext::new(SystemTime::now(), workload.to_vec());
    request::software_csr(&sans(), vec![0x11; 48], &ctx)
        .unwrap()
        .0
}

/// Checks the certificate chains to the CA for `name`, as a TLS client would.
fn check_chain(cert: &[u8], ca: &[u8], name: &str, at: SystemTime) {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.to_vec())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
    verifier
        .verify_server_cert(
            &CertificateDer::from(cert.to_vec()),
            &[],
            &ServerName::try_from(name.to_string()).unwrap(),
            &[],
            UnixTime::since_unix_epoch(at.duration_since(UNIX_EPOCH).unwrap()),
        )
        .unwrap();
}

#[tokio::test]
async fn valid_software_csr_gets_a_certificate_chained_to_the_ca_with_claims() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), policy(INSECURE), config()).await;
    let workload = [0xab; 32];
    let r = issued(server.attest(software_csr(&workload)).await);
    assert_eq!(r.ca, server.steward.ca().cert_der());
    check_chain(&r.certificate, &r.ca, "keep.test", SystemTime::now());
    check_chain(&r.certificate, &r.ca, "127.0.0.1", SystemTime::now());
    // Short-lived: an hour by default.
    let later = SystemTime::now() + Duration::from_secs(3600 + 120);
    let (_, cert) = x509_parser::parse_x509_certificate(&r.certificate).unwrap();
    assert!(
        cert.validity().not_after.to_datetime().unix_timestamp()
            < later.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
    );
    assert_eq!(
        r.not_after,
        cert.validity().not_after.to_datetime().unix_timestamp() as u64
    );
    assert!(!cert.is_ca());
    let claims = IssuedClaims::from_cert_der(&r.certificate)
        .unwrap()
        .unwrap();
    assert_eq!(claims, r.claims);
    assert_eq!(claims.format, "ward");
    assert_eq!(claims.kind, "none");
    assert_eq!(claims.measurement, vec![0x11; 48]);
    assert_eq!(claims.workload, workload.to_vec());
    assert!(claims.insecure_software);
    assert_eq!(server.steward.issued_count(), 1);
    server.stop().await;
}

#[tokio::test]
async fn evidence_binding_another_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), policy(INSECURE), config()).await;
    let ctx = CsrContext::new(SystemTime::now(), vec![]);
    let key = rcgen::KeyPair::generate().unwrap();
    let other = rcgen::KeyPair::generate().unwrap();
    // Everything right, except the evidence binds `other`'s key.
    let evidence = Evidence::software(
        vec![0x11; 48],
        request::binding(&other.subject_public_key_info(), &ctx.to_cbor()),
    );
    let csr = request::build(&key, &sans(), &ctx, &evidence).unwrap();
    rejected(server.attest(csr).await, 403, "key-binding-mismatch");
    // The same with the right key is accepted (the check, not the setup, rejected it).
    let evidence = Evidence::software(
        vec![0x11; 48],
        request::binding(&key.subject_public_key_info(), &ctx.to_cbor()),
    );
    issued(
        server
            .attest(request::build(&key, &sans(), &ctx, &evidence).unwrap())
            .await,
    );
    server.stop().await;
}

#[tokio::test]
async fn evidence_binding_another_context_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), policy(INSECURE), config()).await;
    let ctx = CsrContext::new(SystemTime::now(), vec![]);
    let other_ctx = CsrContext::new(SystemTime::now(), vec![]);
    let key = rcgen::KeyPair::generate().unwrap();
    let evidence = Evidence::software(
        vec![0x11; 48],
        request::binding(&key.subject_public_key_info(), &other_ctx.to_cbor()),
    );
    let csr = request::build(&key, &sans(), &ctx, &evidence).unwrap();
    rejected(server.attest(csr).await, 403, "key-binding-mismatch");
    server.stop().await;
}

#[tokio::test]
async fn software_evidence_under_a_strict_policy_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Policy::default(), config()).await;
    let msg = rejected(
        server.attest(software_csr(&[])).await,
        403,
        "evidence-software-not-allowed",
    );
    assert!(msg.contains("no hardware protection"), "{msg}");
    assert_eq!(server.steward.issued_count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_replayed_csr_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), policy(INSECURE), config()).await;
    let csr = software_csr(&[]);
    issued(server.attest(csr.clone()).await);
    rejected(server.attest(csr).await, 409, "replay");
    assert_eq!(server.steward.issued_count(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_reused_nonce_with_another_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), policy(INSECURE), config()).await;
    let ctx = CsrContext::new(SystemTime::now(), vec![]);
    let first = request::software_csr(&sans(), vec![], &ctx).unwrap().0;
    let second = request::software_csr(&sans(), vec![], &ctx).unwrap().0;
    issued(server.attest(first).await);
    rejected(server.attest(second).await, 409, "replay");
    server.stop().await;
}

#[tokio::test]
async fn concurrent_copies_of_one_csr_get_one_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), policy(INSECURE), config()).await;
    let csr = software_csr(&[]);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = server.client.clone();
        let csr = csr.clone();
        tasks.push(tokio::spawn(async move { c.attest(csr).await.unwrap() }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Outcome::Issued(_) => ok += 1,
            o => {
                rejected(o, 409, "replay");
            }
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(server.steward.issued_count(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_tampered_csr_signature_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), policy(INSECURE), config()).await;
    let good = software_csr(&[]);
    // The last byte is in the signature's s.
    let mut sig = good.clone();
    *sig.last_mut().unwrap() ^= 1;
    rejected(server.attest(sig).await, 400, "csr-signature-invalid");
    // A byte of the signed part: "keep.test" -> "keep.tesu".
    let at = good.windows(9).position(|w| w == b"keep.test").unwrap();
    let mut body = good.clone();
    body[at + 8] ^= 1;
    rejected(server.attest(body).await, 400, "csr-signature-invalid");
    issued(server.attest(good).await);
    server.stop().await;
}

#[tokio::test]
async fn oversize_and_garbage_bodies_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), policy(INSECURE), config()).await;
    rejected(
        server
            .attest(vec![0x30; ward_steward::MAX_CSR_LEN + 1])
            .await,
        413,
        "body-too-large",
    );
    rejected(server.attest(vec![]).await, 400, "csr-malformed");
    rejected(server.attest(b"hello".to_vec()).await, 400, "csr-malformed");
    let mut trailing = software_csr(&[]);
    trailing.push(0);
    rejected(server.attest(trailing).await, 400, "csr-malformed");
    // Every truncation of a valid CSR fails cleanly.
    let good = software_csr(&[]);
    for cut in [1, 2, 10, good.len() / 2, good.len() - 1] {
        let o = server.attest(good[..cut].to_vec()).await;
        rejected(o, 400, "csr-malformed");
    }
    // The server is still there.
    issued(server.attest(good).await);
    server.stop().await;
}

#[tokio::test]
async fn csrs_without_evidence_or_context_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), policy(INSECURE), config()).await;
    let key = rcgen::KeyPair::generate().unwrap();
    let plain = rcgen::CertificateParams::new(sans())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec();
    rejected(server.attest(plain).await, 400, "evidence-missing");
    let ctx = CsrContext::new(SystemTime::now(), vec![]);
    let evidence = Evidence::software(
        vec![],
        request::binding(&key.subject_public_key_info(), &ctx.to_cbor()),
    );
    let bad_ctx = request::build_raw(&key, &sans(), b"\xa0", &evidence).unwrap();
    rejected(server.attest(bad_ctx).await, 400, "context-malformed");
    server.stop().await;
}

#[tokio::test]
async fn a_stale_context_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), policy(INSECURE), config()).await;
    let ctx = CsrContext::new(SystemTime::now() - Duration::from_secs(3600), vec![]);
    let csr = request::software_csr(&sans(), vec![], &ctx).unwrap().0;
    rejected(server.attest(csr).await, 403, "context-stale");
    server.stop().await;
}

#[tokio::test]
async fn restart_keeps_the_ca_and_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let csr = software_csr(&[]);
    let first = {
        let server = Server::start(&ca_dir, policy(INSECURE), config()).await;
        let r = issued(server.attest(csr.clone()).await);
        issued(server.attest(software_csr(&[])).await);
        let fp = server.steward.ca().fingerprint();
        assert!(server.steward.ca().created());
        server.stop().await;
        (fp, r)
    };
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(ca_dir.clone()), 0o700);
        assert_eq!(mode(ca_dir.join("ca-key.pem")), 0o600);
        assert_eq!(mode(ca_dir.join("ca-cert.pem")), 0o600);
        assert_eq!(mode(ca_dir.join("issued.jsonl")), 0o600);
    }
    let server = Server::start(&ca_dir, policy(INSECURE), config()).await;
    assert!(!server.steward.ca().created());
    assert_eq!(server.steward.ca().fingerprint(), first.0);
    assert_eq!(server.steward.issued_count(), 2);
    // The replay memory survived the restart.
    rejected(server.attest(csr).await, 409, "replay");
    // New certificates chain to the same CA as the old ones.
    let r = issued(server.attest(software_csr(&[])).await);
    assert_eq!(r.ca, first.1.ca);
    check_chain(&first.1.certificate, &r.ca, "keep.test", SystemTime::now());
    server.stop().await;
    let entries = ward_steward::record::Record::read_entries(&ca_dir).unwrap();
    assert_eq!(entries.len(), 3);
    assert!(entries.iter().any(|e| e.serial == first.1.serial));
}

#[test]
fn a_ca_directory_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    drop(Steward::open(dir.path(), Policy::default(), config()).unwrap());
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = Steward::open(dir.path(), Policy::default(), config()).unwrap_err();
    assert!(err.to_string().contains("chmod 700"), "{err}");
}

// --- The Enarx vector -------------------------------------------------------------

fn enarx_csr() -> Option<Vec<u8>> {
    let dir = std::env::var_os("WARD_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/vectors"
            ))
        });
    let path = dir.join("enarx-steward/snp-milan.csr");
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!(
                "skipping: Enarx CSR vector {} not readable ({e}); set WARD_VECTORS",
                path.display()
            );
            None
        }
    }
}

/// 2025-01-01T00:00:00Z: inside the vector's VCEK window.
fn pinned() -> Clock {
    Clock::Fixed(UNIX_EPOCH + Duration::from_secs(1_735_689_600))
}

#[tokio::test]
async fn the_enarx_snp_vector_is_accepted_at_its_pinned_time() {
    let Some(csr) = enarx_csr() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = StewardConfig {
        clock: pinned(),
        ..config()
    };
    // The strict default policy: real hardware evidence needs no exception.
    let server = Server::start(dir.path(), Policy::default(), cfg).await;
    let r = issued(server.attest(csr.clone()).await);
    assert_eq!(r.claims.format, "enarx");
    assert_eq!(r.claims.kind, "snp");
    assert!(!r.claims.insecure_software);
    assert_eq!(r.claims.measurement.len(), 48);
    // The bundled CRLs expired in 2023: reported, not hidden.
    assert!(r.notes.iter().any(|n| n.contains("2023-")), "{:?}", r.notes);
    let (_, cert) = x509_parser::parse_x509_certificate(&r.certificate).unwrap();
    let (_, parsed) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&csr).unwrap();
    assert_eq!(
        cert.tbs_certificate.subject_pki.raw,
        parsed.certification_request_info.subject_pki.raw
    );
    // One certificate per Enarx key.
    rejected(server.attest(csr).await, 409, "replay");
    server.stop().await;
}

use x509_parser::prelude::FromDer;

#[tokio::test]
async fn the_enarx_snp_vector_with_a_modified_byte_is_rejected() {
    let Some(csr) = enarx_csr() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = StewardConfig {
        clock: pinned(),
        ..config()
    };
    let server = Server::start(dir.path(), Policy::default(), cfg).await;
    // A byte of the SNP report, the last big thing in the signed CSR info (before
    // the ~120 bytes of signature algorithm and signature).
    let at = csr.len() - 700;
    let mut bad = csr.clone();
    bad[at] ^= 0x01;
    rejected(server.attest(bad).await, 400, "csr-signature-invalid");
    // A byte of the CSR's own signature.
    let mut bad = csr.clone();
    *bad.last_mut().unwrap() ^= 0x01;
    rejected(server.attest(bad).await, 400, "csr-signature-invalid");
    server.stop().await;
}

#[tokio::test]
async fn the_enarx_snp_vector_outside_its_window_or_with_strict_crls_is_rejected() {
    let Some(csr) = enarx_csr() else { return };
    // 2031: the VCEK has expired.
    let dir = tempfile::tempdir().unwrap();
    let cfg = StewardConfig {
        clock: Clock::Fixed(UNIX_EPOCH + Duration::from_secs(1_924_992_000)),
        ..config()
    };
    let server = Server::start(dir.path(), Policy::default(), cfg).await;
    rejected(
        server.attest(csr.clone()).await,
        403,
        "evidence-certificate-expired",
    );
    server.stop().await;
    // Current CRLs required: the 2023 CRLs are refused.
    let dir = tempfile::tempdir().unwrap();
    let cfg = StewardConfig {
        clock: pinned(),
        require_current_crls: true,
        ..config()
    };
    let server = Server::start(dir.path(), Policy::default(), cfg).await;
    let msg = rejected(server.attest(csr).await, 403, "crl-expired");
    assert!(msg.contains("2023-"), "{msg}");
    server.stop().await;
}

#[tokio::test]
async fn the_ca_endpoint_serves_the_ca_pem() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Policy::default(), config()).await;
    let (status, body) = server
        .client
        .request("GET", "/v1/ca", vec![])
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        server.steward.ca().cert_pem()
    );
    server.stop().await;
}

/// No byte of a CSR can be changed to get a certificate, and no change panics: every
/// single-byte mutation of a CSR is rejected with a reason other than replay (so
/// each was caught by a check on the bytes, not by the record).
#[test]
fn every_single_byte_mutation_is_rejected_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let steward = Steward::open(dir.path(), policy(INSECURE), config()).unwrap();
    let csr = software_csr(&[1; 32]);
    steward.attest(&csr).unwrap();
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..csr.len() {
        for bit in [0x01u8, 0x80] {
            let mut m = csr.clone();
            m[i] ^= bit;
            let r = steward
                .attest(&m)
                .expect_err(&format!("byte {i} ^ {bit:#x} was accepted"));
            assert!((400..500).contains(&r.status), "{r}");
            *codes.entry(r.code).or_default() += 1;
        }
    }
    assert_eq!(steward.issued_count(), 1);
    eprintln!("rejection codes: {codes:?}");
    assert!(!codes.contains_key("replay"), "{codes:?}");
}

#[test]
fn every_byte_of_the_enarx_vector_matters() {
    let Some(csr) = enarx_csr() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = StewardConfig {
        clock: pinned(),
        ..config()
    };
    let steward = Steward::open(dir.path(), Policy::default(), cfg).unwrap();
    for i in (0..csr.len()).step_by(7) {
        let mut m = csr.clone();
        m[i] ^= 0x01;
        let r = steward
            .attest(&m)
            .expect_err(&format!("byte {i} was accepted"));
        assert!((400..500).contains(&r.status), "{r}");
    }
    assert_eq!(steward.issued_count(), 0);
}
