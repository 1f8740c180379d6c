//! Helpers for `ward deploy` tests: a real `ward host serve`, its processes, and a
//! small async client for its API and tunnels (which trusts any host certificate, as
//! the real client does, since the host is untrusted anyway).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt};
use ward_proto::host::{KeepInfo, KeepList};

use crate::common::{root, ward_with};

/// A running `ward host serve`, killed on drop. Its log lines are collected.
pub struct Daemon {
    pub child: Child,
    pub addr: String,
    pub log: Arc<Mutex<Vec<String>>>,
    _state: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM and waits for the daemon to exit (failing after `limit`).
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        signal(self.pid(), rustix::process::Signal::TERM);
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "the daemon did not exit within {limit:?} of SIGTERM; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Starts `ward host serve` on 127.0.0.1:0 with a fresh state directory.
pub fn daemon(max_keeps: &str) -> Daemon {
    daemon_with(max_keeps, &[])
}

/// [`daemon`] with more `ward host serve` arguments (e.g. `--backends process,kvm`).
pub fn daemon_with(max_keeps: &str, extra: &[&str]) -> Daemon {
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args([
            "host",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-keeps",
            max_keeps,
            "--state-dir",
        ])
        .arg(state.path())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = Arc::new(Mutex::new(Vec::new()));
    let addr = loop {
        let line = lines.next().expect("daemon exited").unwrap();
        log.lock().unwrap().push(line.clone());
        if let Some(rest) = line.split("listening on https://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining its log so it never blocks on a full pipe.
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Daemon {
        child,
        addr,
        log,
        _state: state,
    }
}

/// `ward deploy APP --host https://HOST EXTRA…`, with a 120 s limit.
pub fn deploy_app(host: &str, app: &Path, extra: &[&str]) -> Output {
    let url = format!("https://{host}");
    let mut args = vec!["deploy", app.to_str().unwrap(), "--host", url.as_str()];
    args.extend_from_slice(extra);
    ward_with(&args, b"", Duration::from_secs(120))
}

/// `ward deploy examples/hello.wasm --host https://HOST EXTRA…`.
pub fn deploy(host: &str, extra: &[&str]) -> Output {
    deploy_app(host, &root().join("examples/hello.wasm"), extra)
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    let _ = rustix::process::kill_process(pid, sig);
}

/// Kills `pid` with SIGKILL after `limit` unless the returned sender is dropped or
/// used first: only so that a stuck test cannot hang.
pub fn kill_after(pid: u32, limit: Duration) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("test watchdog: killing {pid} after {limit:?}");
            signal(pid, rustix::process::Signal::KILL);
        }
    });
    tx
}

/// Reads lines from `r` until one contains `needle`; false at end of stream.
pub fn read_until(r: &mut impl BufRead, needle: &str) -> bool {
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if line.contains(needle) => return true,
            Ok(_) => {}
        }
    }
}

pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The child processes of `pid` (all its threads').
pub fn child_pids(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .flat_map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

pub fn children(pid: u32) -> usize {
    child_pids(pid).len()
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Polls `cond` until it holds or `limit` passes (the limit only avoids a hang).
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A multi-threaded tokio runtime for a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Accepts any server certificate (checking only handshake signatures).
#[derive(Debug)]
pub struct AnyCert(rustls::crypto::WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client config that accepts any certificate.
pub fn any_cert_client() -> Arc<rustls::ClientConfig> {
    let p = provider();
    let algs = p.signature_verification_algorithms;
    Arc::new(
        rustls::ClientConfig::builder_with_provider(p)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(algs)))
            .with_no_client_auth(),
    )
}

/// A TLS server config with one certificate and its PKCS#8 key.
pub fn server_config(cert_der: Vec<u8>, key_der: Vec<u8>) -> Arc<rustls::ServerConfig> {
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert_der)],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into()),
            )
            .unwrap(),
    )
}

type HostStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn open(addr: &str) -> std::io::Result<HostStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(any_cert_client())
        .connect(ServerName::try_from("ward-host").unwrap(), tcp)
        .await
}

/// One host API request with an optional CBOR body.
pub async fn api(addr: &str, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, Bytes) {
    let io = open(addr).await.expect("connect to the host");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr)
        .header(hyper::header::CONTENT_TYPE, "application/cbor")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

/// `GET /v1/keeps`.
pub async fn list_keeps(addr: &str) -> Vec<KeepInfo> {
    let (status, body) = api(addr, Method::GET, "/v1/keeps", Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    ciborium::from_reader::<KeepList, _>(&body[..])
        .unwrap()
        .keeps
}

/// `GET /v1/keeps`, from synchronous code.
pub fn keeps_now(addr: &str) -> Vec<KeepInfo> {
    runtime().block_on(list_keeps(addr))
}

/// `POST /v1/keeps` for a process Keep.
pub async fn create_keep(addr: &str) -> KeepInfo {
    let mut body = Vec::new();
    ciborium::into_writer(
        &ward_proto::host::CreateKeep {
            backend: "process".into(),
            memory_bytes: None,
        },
        &mut body,
    )
    .unwrap();
    let (status, body) = api(addr, Method::POST, "/v1/keeps", body).await;
    assert_eq!(status, StatusCode::CREATED);
    ciborium::from_reader(&body[..]).unwrap()
}

/// Opens the byte tunnel to Keep `id`.
pub async fn tunnel(addr: &str, id: &str) -> TokioIo<hyper::upgrade::Upgraded> {
    let io = open(addr).await.expect("connect to the host");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!("/v1/keeps/{id}/connect"))
        .header(hyper::header::HOST, addr)
        .header(hyper::header::CONNECTION, "upgrade")
        .header(hyper::header::UPGRADE, "ward-keep")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    TokioIo::new(hyper::upgrade::on(resp).await.unwrap())
}

/// Reads one length-prefixed CBOR frame; `None` at a clean end of stream.
pub async fn read_frame_async<T: serde::de::DeserializeOwned>(
    r: &mut (impl AsyncRead + Unpin),
) -> std::io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > ward_proto::MAX_FRAME_LEN {
        return Err(std::io::Error::other(format!("frame of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    ward_proto::decode_frame_body(&body)
        .map(Some)
        .map_err(std::io::Error::other)
}
