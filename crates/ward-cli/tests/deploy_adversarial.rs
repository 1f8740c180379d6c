//! `ward deploy` against a malicious host. The host is untrusted by design: it may
//! serve any certificate, rewrite anything outside the Keep's TLS, and run its own
//! fake Keep. These tests play that host, with the real `ward deploy` binary as the
//! client, and check that the client refuses before a workload byte leaves it.
//!
//! - A fake host (hyper, TLS) that speaks the host API and terminates the inner TLS
//!   itself, as a fake Keep with RA-TLS certificates the test issues (`none` evidence,
//!   so every deploy says `--insecure`).
//! - A TLS-terminating relay in front of the real daemon, which rewrites the client's
//!   plaintext `TunnelHello`.

mod common;
#[path = "common/host.rs"]
mod host;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use ward_attest::ratls::{check, issue};
use ward_attest::Evidence;
use ward_proto::host::{KeepInfo, KeepState};
use ward_proto::{
    encode_frame, ExitReport, HostToKeep, KeepToHost, TunnelHello, WorkloadOutcome,
    PROTOCOL_VERSION,
};

use common::*;
use host::*;

/// What the fake Keep prints when it "runs" a workload.
const FAKE_OUTPUT: &str = "FAKE-KEEP-OUTPUT";

/// How the fake host cheats.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cheat {
    /// Every session after the first gets the first session's certificate (bound to
    /// the first nonce): a replay, or Keep A's certificate on Keep B's tunnel.
    ReplayFirstCert,
    /// Every session after the first gets a fresh key for the right nonce, but the
    /// evidence of the first session's certificate.
    FirstEvidenceNewKey,
    /// An honest certificate, but the fake Keep reports a digest other than that of
    /// the module it received (it would run something else).
    WrongDigest,
}

/// What one tunnel session looked like from the fake Keep's side.
#[derive(Debug, Default, Clone)]
struct SessionLog {
    /// The client's nonce.
    nonce: Vec<u8>,
    /// Whether the TLS handshake completed.
    handshake: bool,
    /// Plaintext bytes received from the client after the handshake.
    plaintext: usize,
    /// The module the client sent.
    module: Vec<u8>,
}

struct Fake {
    cheat: Cheat,
    /// The first session's certificate and key.
    first: Mutex<Option<issue::RaTlsIdentity>>,
    sessions: Mutex<Vec<SessionLog>>,
}

fn software(rd: [u8; 64]) -> Evidence {
    Evidence::software(vec![0x4b; 48], rd)
}

impl Fake {
    /// The certificate and key for a session with `nonce`.
    fn identity(&self, nonce: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut first = self.first.lock().unwrap();
        let Some(a) = first.as_ref() else {
            let id = issue::identity(nonce, software).unwrap();
            let out = (id.cert_der.clone(), id.key_der.clone());
            *first = Some(id);
            return out;
        };
        match self.cheat {
            Cheat::ReplayFirstCert => (a.cert_der.clone(), a.key_der.clone()),
            Cheat::FirstEvidenceNewKey => {
                let (evidence, _) = check::evidence_from_cert(&a.cert_der).unwrap();
                let b = issue::identity(nonce, |_| evidence).unwrap();
                (b.cert_der, b.key_der)
            }
            Cheat::WrongDigest => {
                let id = issue::identity(nonce, software).unwrap();
                (id.cert_der, id.key_der)
            }
        }
    }
}

/// A running fake host.
struct FakeHost {
    addr: String,
    fake: Arc<Fake>,
    _rt: tokio::runtime::Runtime,
}

impl FakeHost {
    fn sessions(&self) -> Vec<SessionLog> {
        self.fake.sessions.lock().unwrap().clone()
    }
}

fn fake_host(cheat: Cheat) -> FakeHost {
    let rt = runtime();
    let fake = Arc::new(Fake {
        cheat,
        first: Mutex::new(None),
        sessions: Mutex::new(Vec::new()),
    });
    // The host's own API certificate: any self-signed one will do.
    let api_id = issue::identity(b"api", software).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(api_id.cert_der, api_id.key_der));
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let f = fake.clone();
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, f) = (acceptor.clone(), f.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req| api(f.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    FakeHost {
        addr,
        fake,
        _rt: rt,
    }
}

fn cbor_response<T: serde::Serialize>(status: StatusCode, v: &T) -> Response<Full<Bytes>> {
    let mut body = Vec::new();
    ciborium::into_writer(v, &mut body).unwrap();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

/// The fake host's API: `POST /v1/keeps` and the `connect` upgrade.
async fn api(
    fake: Arc<Fake>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if req.method() == Method::POST && path == "/v1/keeps" {
        return Ok(cbor_response(
            StatusCode::CREATED,
            &KeepInfo {
                id: "00000000000000aa".into(),
                backend: "process".into(),
                state: KeepState::Waiting,
                created: 0,
            },
        ));
    }
    if req.method() == Method::GET && path.ends_with("/connect") {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on_upgrade.await {
                fake_keep(fake, TokioIo::new(up)).await;
            }
        });
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        resp.headers_mut()
            .insert(hyper::header::CONNECTION, "upgrade".parse().unwrap());
        resp.headers_mut()
            .insert(hyper::header::UPGRADE, "ward-keep".parse().unwrap());
        return Ok(resp);
    }
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NOT_FOUND;
    Ok(resp)
}

async fn send(w: &mut (impl AsyncWrite + Unpin), msg: &KeepToHost) -> std::io::Result<()> {
    w.write_all(&encode_frame(msg).unwrap()).await?;
    w.flush().await
}

/// The fake Keep behind one tunnel: the client's hello, TLS with the certificate the
/// cheat chooses, then the Keep protocol, faithfully except for the cheat.
async fn fake_keep(fake: Arc<Fake>, mut io: TokioIo<hyper::upgrade::Upgraded>) {
    let Ok(Some(hello)) = read_frame_async::<TunnelHello>(&mut io).await else {
        return;
    };
    let index = {
        let mut s = fake.sessions.lock().unwrap();
        s.push(SessionLog {
            nonce: hello.nonce.clone(),
            ..SessionLog::default()
        });
        s.len() - 1
    };
    let log = |f: &dyn Fn(&mut SessionLog)| f(&mut fake.sessions.lock().unwrap()[index]);
    let (cert, key) = fake.identity(&hello.nonce);
    let Ok(tls) = tokio_rustls::TlsAcceptor::from(server_config(cert, key))
        .accept(io)
        .await
    else {
        return; // the client refused the certificate
    };
    log(&|s| s.handshake = true);
    let (mut r, mut w) = tokio::io::split(tls);
    let mut r = Counting {
        inner: &mut r,
        n: 0,
    };
    let spec = match read_frame_async::<HostToKeep>(&mut r).await {
        Ok(Some(HostToKeep::Launch(spec))) => spec,
        _ => {
            let n = r.n;
            log(&|s| s.plaintext = n);
            return;
        }
    };
    if send(
        &mut w,
        &KeepToHost::Ready {
            version: PROTOCOL_VERSION,
            sandbox: Vec::new(),
        },
    )
    .await
    .is_err()
    {
        return;
    }
    let mut module = Vec::new();
    while (module.len() as u64) < spec.workload_len {
        match read_frame_async::<HostToKeep>(&mut r).await {
            Ok(Some(HostToKeep::WorkloadChunk(c))) => module.extend_from_slice(&c),
            _ => break,
        }
    }
    let n = r.n;
    let got = module.clone();
    log(&|s| {
        s.plaintext = n;
        s.module = got.clone();
    });
    let digest = if fake.cheat == Cheat::WrongDigest {
        Sha256::digest(b"a module the host substituted").to_vec()
    } else {
        Sha256::digest(&module).to_vec()
    };
    let _ = send(&mut w, &KeepToHost::WorkloadAccepted { sha256: digest }).await;
    let _ = send(
        &mut w,
        &KeepToHost::Stdout(format!("{FAKE_OUTPUT}\n").into_bytes()),
    )
    .await;
    let _ = send(
        &mut w,
        &KeepToHost::Exit(ExitReport {
            outcome: WorkloadOutcome::Exited(0),
            memory_denied_at: None,
        }),
    )
    .await;
    let _ = w.shutdown().await;
    // Drain until the client goes, so it reads everything before the tunnel closes.
    let mut sink = Vec::new();
    let _ = r.read_to_end(&mut sink).await;
}

/// Counts the bytes read through it.
struct Counting<'a, R> {
    inner: &'a mut R,
    n: usize,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<'_, R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut *self.inner).poll_read(cx, buf);
        self.n += buf.filled().len() - before;
        r
    }
}

fn hello_module() -> Option<std::path::PathBuf> {
    example("hello.wasm")
}

/// First a deploy the fake host serves honestly: it succeeds, so the fake Keep is
/// good enough to pass for a real one. Returns the session log.
fn honest_first_session(h: &FakeHost, app: &std::path::Path) {
    let o = deploy_app(&h.addr, app, &["--insecure"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(FAKE_OUTPUT),
        "the honest fake session ran"
    );
    let s = h.sessions();
    assert_eq!(s.len(), 1);
    assert!(s[0].handshake);
    assert_eq!(s[0].module, std::fs::read(app).unwrap());
}

/// Asserts that a deploy was refused at the certificate: a one-line error naming the
/// binding, nothing ran, and the fake Keep got no plaintext byte.
fn assert_refused_at_the_certificate(o: &std::process::Output, session: &SessionLog) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains(FAKE_OUTPUT),
        "it ran: {err}"
    );
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("ward: error"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("keep attestation refused")
            && lines[0].contains("does not bind this certificate's key and our nonce")
            && lines[0].contains("report data mismatch"),
        "{err}"
    );
    assert!(!err.contains("sending"), "the upload began: {err}");
    assert!(!session.handshake, "the handshake completed: {session:?}");
    assert_eq!(session.plaintext, 0, "workload bytes reached the fake keep");
}

/// Replay / certificate swap: the host serves session 1's certificate (Keep A's,
/// bound to nonce 1) on session 2's tunnel.
///
/// Exercises the client's check that the evidence binds *its* nonce:
/// `KeepCert::verify_server_cert` -> `ratls::check::verify_cert(cert, nonce, ..)`
/// (report data = SHA-512(SPKI ‖ nonce)). Without it, session 2 would run.
#[test]
fn replayed_certificate_from_an_earlier_session_is_refused() {
    let Some(app) = hello_module() else { return };
    let h = fake_host(Cheat::ReplayFirstCert);
    honest_first_session(&h, &app);
    let o = deploy_app(&h.addr, &app, &["--insecure"]);
    let s = h.sessions();
    assert_eq!(s.len(), 2);
    assert_ne!(s[0].nonce, s[1].nonce, "each deploy has a fresh nonce");
    assert_refused_at_the_certificate(&o, &s[1]);
}

/// Keep A's evidence in a certificate with another key (B's), for the right nonce.
///
/// Exercises the same client check, on its other half: the report data must bind
/// the key of the certificate the TLS handshake proved (the SPKI in
/// `verify_cert`), not merely carry valid evidence.
#[test]
fn evidence_moved_to_another_key_is_refused() {
    let Some(app) = hello_module() else { return };
    let h = fake_host(Cheat::FirstEvidenceNewKey);
    honest_first_session(&h, &app);
    let o = deploy_app(&h.addr, &app, &["--insecure"]);
    let s = h.sessions();
    assert_eq!(s.len(), 2);
    assert_refused_at_the_certificate(&o, &s[1]);
}

/// Workload substitution: a Keep with a valid certificate for the right nonce that
/// reports the SHA-256 of another module.
///
/// Exercises the client's digest check in `Session::launch` (ward-host
/// `session.rs`: the `WorkloadAccepted` digest must equal the spec's). Without it,
/// the client would print the fake Keep's output and exit 0.
#[test]
fn substituted_workload_digest_is_refused() {
    let Some(app) = hello_module() else { return };
    let h = fake_host(Cheat::WrongDigest);
    let o = deploy_app(&h.addr, &app, &["--insecure"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains(FAKE_OUTPUT),
        "{err}"
    );
    assert!(
        err.contains("verified: none measurement"),
        "attested: {err}"
    );
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("ward: error"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("reports workload sha256")
            && lines[0].contains(&hex::encode(Sha256::digest(std::fs::read(&app).unwrap()))),
        "{err}"
    );
    let s = h.sessions();
    assert_eq!(s.len(), 1);
    assert!(s[0].handshake);
}

/// A relay that plays the host: it terminates the API TLS (the client accepts any
/// host certificate, by design), forwards to the real daemon, and rewrites the
/// client's plaintext `TunnelHello` to carry the first session's nonce from the
/// second session on.
struct Mitm {
    addr: String,
    nonces: Arc<Mutex<Vec<Vec<u8>>>>,
    _rt: tokio::runtime::Runtime,
}

fn mitm(daemon: String) -> Mitm {
    let rt = runtime();
    let id = issue::identity(b"mitm", software).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(id.cert_der, id.key_der));
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let nonces = Arc::new(Mutex::new(Vec::new()));
    let seen = nonces.clone();
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, daemon, seen) = (acceptor.clone(), daemon.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(client) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(tcp) = TcpStream::connect(&daemon).await else {
                    return;
                };
                let Ok(upstream) = tokio_rustls::TlsConnector::from(any_cert_client())
                    .connect(
                        rustls::pki_types::ServerName::try_from("ward-host").unwrap(),
                        tcp,
                    )
                    .await
                else {
                    return;
                };
                let (mut cr, mut cw) = tokio::io::split(client);
                let (mut ur, mut uw) = tokio::io::split(upstream);
                let down = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut ur, &mut cw).await;
                    let _ = cw.shutdown().await;
                });
                if rewrite_hello(&mut cr, &mut uw, &seen).await.is_ok() {
                    let _ = tokio::io::copy(&mut cr, &mut uw).await;
                }
                let _ = uw.shutdown().await;
                let _ = down.await;
            });
        }
    });
    Mitm {
        addr,
        nonces,
        _rt: rt,
    }
}

/// Forwards one request head; on a tunnel, also the `TunnelHello`, with the nonce
/// rewritten to the first one seen.
async fn rewrite_hello(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    seen: &Mutex<Vec<Vec<u8>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = from.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let first_line = String::from_utf8_lossy(&buf[..head_end])
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    if !(first_line.starts_with("GET ") && first_line.contains("/connect")) {
        return to.write_all(&buf).await;
    }
    to.write_all(&buf[..head_end]).await?;
    let mut rest = buf[head_end..].to_vec();
    // The client sends its hello once the upgrade is answered.
    let want = |rest: &[u8]| {
        (rest.len() >= 4)
            .then(|| 4 + u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize)
    };
    while want(&rest).is_none_or(|w| rest.len() < w) {
        let n = from.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        rest.extend_from_slice(&tmp[..n]);
    }
    let len = want(&rest).unwrap();
    let mut hello: TunnelHello =
        ward_proto::decode_frame_body(&rest[4..len]).map_err(std::io::Error::other)?;
    {
        let mut seen = seen.lock().unwrap();
        seen.push(hello.nonce.clone());
        hello.nonce = seen[0].clone();
    }
    to.write_all(&encode_frame(&hello).unwrap()).await?;
    to.write_all(&rest[len..]).await
}

/// Replay through the real daemon: the relay makes the real Keep of session 2 bind
/// session 1's nonce, so its certificate is genuine but answers the wrong nonce.
///
/// Exercises the client's nonce check (`verify_cert` with the client's own nonce,
/// not one the tunnel echoes back). Without it, session 2 would run.
#[test]
fn rewritten_tunnel_nonce_is_refused_by_the_client() {
    if hello_module().is_none() {
        return;
    }
    let d = daemon("8");
    let m = mitm(d.addr.clone());
    // Session 1 passes through unchanged (its nonce is the first one).
    let o = deploy(&m.addr, &["--insecure"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Hello from a Ward Keep!"));
    // Session 2's hello is rewritten to session 1's nonce.
    let o = deploy(&m.addr, &["--insecure"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("Hello"),
        "it ran: {err}"
    );
    assert!(
        err.contains("keep attestation refused")
            && err.contains("does not bind this certificate's key and our nonce"),
        "{err}"
    );
    assert!(!err.contains("sending"), "the upload began: {err}");
    let nonces = m.nonces.lock().unwrap().clone();
    assert_eq!(nonces.len(), 2, "two tunnels");
    assert_ne!(nonces[0], nonces[1], "each deploy has a fresh nonce");
    // The real Keep of the refused session is gone too.
    assert!(
        eventually(std::time::Duration::from_secs(30), || keeps_now(&d.addr)
            .is_empty()
            && children(d.pid()) == 0),
        "keeps left: {:?}",
        keeps_now(&d.addr)
    );
}
