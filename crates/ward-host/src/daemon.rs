//! `ward host serve`: the Keep manager. An HTTPS API with CBOR bodies:
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/keeps` | start a Keep (one loader process each); returns its [`KeepInfo`] |
//! | `GET /v1/keeps`, `GET /v1/keeps/{id}` | list / show |
//! | `DELETE /v1/keeps/{id}` | stop it |
//! | `GET /v1/platform` | backends, TEE kinds, collateral |
//! | `GET /v1/keeps/{id}/connect` + `Upgrade: ward-keep` | relay raw bytes to the Keep (once) |
//!
//! The host is untrusted: it relays ciphertext between the client and TLS that
//! terminates inside the Keep. Its own certificate is self-signed, generated on first
//! start, and only protects the API from passive observers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};
use ward_proto::host::{
    ApiError, CreateKeep, KeepInfo, KeepList, KeepState, Platform, MAX_API_BODY,
};

/// How long a new Keep waits for its client's tunnel before it is stopped.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a Keep that closed its channel gets to exit by itself before it is killed.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Backends offered.
    pub backends: Vec<String>,
    /// Most Keeps at once.
    pub max_keeps: usize,
    /// Where the host certificate lives.
    pub state_dir: PathBuf,
    /// The `ward-keep` binary.
    pub keep_bin: PathBuf,
    /// Verification collateral this host offers its clients in `GET /v1/platform`
    /// (e.g. its VCEK/VLEK chain, TCB info), as the operator supplied it. Clients
    /// verify it against their own roots; the host is not trusted for it.
    pub collateral: Vec<Vec<u8>>,
    /// What remote workloads may reach on this host (nothing by default).
    pub allow: crate::loader::RemoteAllow,
}

/// Most bytes of collateral a host may offer: all of it must fit one API body.
pub const MAX_COLLATERAL: usize = ward_proto::host::MAX_API_BODY - 1024;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// I/O (listening, the state directory).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// TLS set-up.
    #[error("TLS: {0}")]
    Tls(String),
}

struct Keep {
    info: KeepInfo,
    channel: Option<std::os::unix::net::UnixStream>,
    child: Option<crate::loader::RunningKeep>,
}

#[derive(Clone)]
struct AppState {
    config: Arc<DaemonConfig>,
    keeps: Arc<Mutex<HashMap<String, Keep>>>,
}

fn cbor<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    let mut bytes = Vec::new();
    match ciborium::into_writer(body, &mut bytes) {
        Ok(()) => (status, [(header::CONTENT_TYPE, "application/cbor")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    cbor(
        status,
        &ApiError {
            message: message.into(),
        },
    )
}

/// The host certificate and key, created on first start (key file mode 0600).
fn host_identity(dir: &std::path::Path) -> Result<(Vec<u8>, Vec<u8>), DaemonError> {
    let io = |what: &str| {
        let what = format!("{what} in {}", dir.display());
        move |source| DaemonError::Io { what, source }
    };
    let cert_path = dir.join("host-cert.der");
    let key_path = dir.join("host-key.der");
    if let (Ok(c), Ok(k)) = (std::fs::read(&cert_path), std::fs::read(&key_path)) {
        return Ok((c, k));
    }
    std::fs::create_dir_all(dir).map_err(io("cannot create the state directory"))?;
    let key = rcgen::KeyPair::generate().map_err(|e| DaemonError::Tls(e.to_string()))?;
    let cert = rcgen::CertificateParams::new(vec!["ward-host".to_string()])
        .and_then(|p| p.self_signed(&key))
        .map_err(|e| DaemonError::Tls(e.to_string()))?;
    let key_der = key.serialize_der();
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key_path)
            .map_err(io("cannot write the host key"))?;
        f.write_all(&key_der)
            .map_err(io("cannot write the host key"))?;
    }
    std::fs::write(&cert_path, cert.der()).map_err(io("cannot write the host certificate"))?;
    Ok((cert.der().to_vec(), key_der))
}

/// SHA-256 fingerprint of a certificate, as hex.
pub fn fingerprint(cert_der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(cert_der))
}

/// Runs the daemon until SIGTERM or Ctrl-C; then stops every Keep.
pub async fn serve(config: DaemonConfig) -> Result<(), DaemonError> {
    let (cert, key) = host_identity(&config.state_dir)?;
    eprintln!(
        "ward host: certificate sha256 {} (clients need not trust it)",
        fingerprint(&cert)
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DaemonError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(cert)],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .map_err(|e| DaemonError::Tls(e.to_string()))?;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| DaemonError::Io {
            what: format!("cannot listen on {}", config.listen),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| DaemonError::Io {
        what: "local address".into(),
        source,
    })?;
    eprintln!(
        "ward host: listening on https://{local} (backends: {})",
        config.backends.join(",")
    );

    let state = AppState {
        config: Arc::new(config),
        keeps: Arc::new(Mutex::new(HashMap::new())),
    };
    let app = router(state.clone());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| DaemonError::Io {
            what: "SIGTERM handler".into(),
            source,
        })?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                // Small frames (a Keep's Ready, its digest, output) go out at once,
                // not after a delayed ACK.
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(t)) => t,
                        Ok(Err(e)) => { warn!(%peer, "TLS handshake failed: {e}"); return; }
                        Err(_) => { warn!(%peer, "TLS handshake timed out"); return; }
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .with_upgrades()
                        .await
                    {
                        info!(%peer, "connection ended: {e}");
                    }
                });
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let keeps: Vec<Keep> = state
        .keeps
        .lock()
        .map(|mut m| m.drain().map(|(_, k)| k).collect())
        .unwrap_or_default();
    eprintln!("ward host: shutting down, stopping {} keep(s)", keeps.len());
    // Stopped and reaped here: none outlives the daemon. (A Keep whose tunnel is
    // closing is owned by its relay task; dropping that task kills it too, through
    // `kill_on_drop`.)
    for mut k in keeps {
        if let Some(c) = k.child.as_mut() {
            let _ = c.kill().await;
        }
    }
    eprintln!("ward host: stopped");
    Ok(())
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/keeps", get(list_keeps).post(create_keep))
        .route("/v1/keeps/{id}", get(show_keep).delete(delete_keep))
        .route("/v1/keeps/{id}/connect", get(connect))
        .route("/v1/platform", get(platform))
        .with_state(state)
}

async fn platform(State(s): State<AppState>) -> Response {
    cbor(
        StatusCode::OK,
        &Platform {
            backends: s.config.backends.clone(),
            tee_kinds: vec!["none".into()],
            collateral: s
                .config
                .collateral
                .iter()
                .map(|c| serde_bytes::ByteBuf::from(c.clone()))
                .collect(),
            max_keeps: s.config.max_keeps as u32,
        },
    )
}

async fn list_keeps(State(s): State<AppState>) -> Response {
    let keeps = s
        .keeps
        .lock()
        .map(|m| m.values().map(|k| k.info.clone()).collect())
        .unwrap_or_default();
    cbor(StatusCode::OK, &KeepList { keeps })
}

async fn show_keep(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match s
        .keeps
        .lock()
        .ok()
        .and_then(|m| m.get(&id).map(|k| k.info.clone()))
    {
        Some(info) => cbor(StatusCode::OK, &info),
        None => error(StatusCode::NOT_FOUND, format!("no keep {id}")),
    }
}

async fn delete_keep(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let keep = s.keeps.lock().ok().and_then(|mut m| m.remove(&id));
    match keep {
        Some(mut k) => {
            if let Some(c) = k.child.as_mut() {
                let _ = c.kill().await;
            }
            info!(%id, "keep deleted");
            StatusCode::NO_CONTENT.into_response()
        }
        None => error(StatusCode::NOT_FOUND, format!("no keep {id}")),
    }
}

async fn create_keep(State(s): State<AppState>, body: axum::body::Bytes) -> Response {
    if body.len() > MAX_API_BODY {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    let req: CreateKeep = match ciborium::from_reader(&body[..]) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("malformed request: {e}")),
    };
    if !s.config.backends.contains(&req.backend) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "backend {:?} is not offered here (offered: {})",
                req.backend,
                s.config.backends.join(",")
            ),
        );
    }
    let id = {
        let mut b = [0u8; 8];
        if getrandom(&mut b).is_err() {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "no randomness");
        }
        hex::encode(b)
    };
    // Reserve the slot before starting the loader, so a burst cannot overshoot.
    {
        let Ok(mut m) = s.keeps.lock() else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned");
        };
        if m.len() >= s.config.max_keeps {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("this host runs at most {} keeps", s.config.max_keeps),
            );
        }
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        m.insert(
            id.clone(),
            Keep {
                info: KeepInfo {
                    id: id.clone(),
                    backend: req.backend.clone(),
                    state: KeepState::Waiting,
                    created,
                },
                channel: None,
                child: None,
            },
        );
    }
    let memory = req
        .memory_bytes
        .unwrap_or(ward_proto::config::DEFAULT_MEMORY_BYTES);
    // The loader starts a VM or a process; a slow VM launch must not stall the API.
    // A process Keep is started here, on a runtime worker, not in the blocking pool:
    // ward-keep's parent-death signal (SIGKILL) fires when the *thread* that spawned
    // it ends, and an idle blocking-pool thread ends after 10 s.
    let keep_bin = s.config.keep_bin.clone();
    let backend = req.backend.clone();
    let started = if backend == "process" {
        crate::loader::start(&backend, &keep_bin, memory, &s.config.allow)
    } else {
        let allow = s.config.allow.clone();
        tokio::task::spawn_blocking(move || {
            crate::loader::start(&backend, &keep_bin, memory, &allow)
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
    };
    let (child, ours) = match started {
        Ok(started) => started,
        Err(e) => {
            remove(&s, &id);
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot start the keep loader: {e}"),
            );
        }
    };
    let info = {
        let Ok(mut m) = s.keeps.lock() else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned");
        };
        let Some(k) = m.get_mut(&id) else {
            return error(StatusCode::GONE, "keep deleted while starting");
        };
        k.channel = Some(ours);
        k.child = Some(child);
        k.info.clone()
    };
    // The reaper: a Keep that exits (or crashes) is reported and forgotten; it never
    // takes the daemon down. A Keep no client connects to in time is stopped, so a
    // client that vanished between creating a Keep and opening its tunnel leaves
    // nothing behind.
    let reaper_state = s.clone();
    let reaper_id = id.clone();
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let abandoned = {
                let Ok(mut m) = reaper_state.keeps.lock() else {
                    return;
                };
                let Some(k) = m.get_mut(&reaper_id) else {
                    return;
                };
                let waiting = k.info.state == KeepState::Waiting;
                let Some(child) = k.child.as_mut() else {
                    continue;
                };
                match child.try_wait() {
                    Ok(Some(end)) => {
                        report_exit(&reaper_id, &end);
                        m.remove(&reaper_id);
                        return;
                    }
                    Ok(None) if waiting && tokio::time::Instant::now() >= deadline => {
                        m.remove(&reaper_id)
                    }
                    Ok(None) => None,
                    Err(e) => {
                        warn!(id = %reaper_id, "cannot wait for keep: {e}");
                        m.remove(&reaper_id);
                        return;
                    }
                }
            };
            if let Some(mut k) = abandoned {
                if let Some(c) = k.child.as_mut() {
                    let _ = c.kill().await;
                }
                info!(id = %reaper_id, "keep stopped: no client connected within {CONNECT_TIMEOUT:?}");
                return;
            }
        }
    });
    info!(%id, backend = %req.backend, "keep started");
    cbor(StatusCode::CREATED, &info)
}

/// Relays bytes between a client tunnel and a Keep's channel until either side is
/// done; returns why it ended, and whether the Keep's side ended first.
///
/// The Keep's output is relayed to the client until the Keep closes its end. The
/// client never half-closes a deployment (stdin ends with a `StdinClosed` frame
/// inside TLS), so the end of its direction, an EOF or an error (a client that
/// disconnected, or was killed mid-upload), means the client is gone: the relay
/// ends at once and the caller stops the Keep, instead of waiting for a workload
/// that may never write again.
async fn relay<C>(client: C, channel: std::os::unix::net::UnixStream) -> (String, bool)
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if let Err(e) = channel.set_nonblocking(true) {
        return (format!("keep channel: {e}"), false);
    }
    let keep = match tokio::net::UnixStream::from_std(channel) {
        Ok(k) => k,
        Err(e) => return (format!("keep channel: {e}"), false),
    };
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut keep_r, mut keep_w) = keep.into_split();
    let up = tokio::io::copy(&mut client_r, &mut keep_w);
    let down = async {
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0u64;
        let end = loop {
            let n = match keep_r.read(&mut buf).await {
                Ok(0) => {
                    break (
                        format!("the keep closed its channel ({total} bytes down)"),
                        true,
                    )
                }
                // A Keep that exits with input unread (stdin its workload never
                // read) resets the channel; its output was all read before that.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    break (
                        format!("the keep closed its channel ({total} bytes down)"),
                        true,
                    )
                }
                Err(e) => break (format!("reading from the keep failed: {e}"), true),
                Ok(n) => n,
            };
            let sent = async {
                client_w.write_all(&buf[..n]).await?;
                client_w.flush().await
            };
            if let Err(e) = sent.await {
                break (format!("the client is gone: {e}"), false);
            }
            total += n as u64;
        };
        let _ = client_w.shutdown().await;
        end
    };
    tokio::select! {
        r = up => (match r {
            Ok(n) => format!("the client closed the tunnel ({n} bytes up)"),
            Err(e) => format!("the client is gone: {e}"),
        }, false),
        end = down => end,
    }
}

/// Forgets a Keep and stops its loader (if it has not exited already), reporting how
/// it ended. A Keep that closed its channel first gets [`EXIT_GRACE`] to exit.
async fn stop_keep(s: &AppState, id: &str, keep_closed: bool) {
    let keep = s.keeps.lock().ok().and_then(|mut m| m.remove(id));
    let Some(mut child) = keep.and_then(|k| k.child) else {
        return;
    };
    let exited = if keep_closed {
        tokio::time::timeout(EXIT_GRACE, child.wait()).await.ok()
    } else {
        child.try_wait().transpose()
    };
    match exited {
        Some(Ok(end)) => report_exit(id, &end),
        _ => {
            let _ = child.kill().await;
            info!(%id, "keep stopped");
        }
    }
}

/// Logs how a Keep loader ended: killed by a signal (or a guest fault) is a crash;
/// an exit status is its own report (it told its client why, inside TLS).
fn report_exit(id: &str, end: &crate::loader::KeepEnd) {
    if end.crashed {
        warn!(%id, "keep crashed: {}", end.how);
    } else {
        info!(%id, "keep exited: {}", end.how);
    }
}

fn remove(s: &AppState, id: &str) {
    if let Ok(mut m) = s.keeps.lock() {
        m.remove(id);
    }
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    rustix::rand::getrandom(buf, rustix::rand::GetRandomFlags::empty())
        .map(|_| ())
        .map_err(std::io::Error::from)
}

async fn connect(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    mut req: Request<Body>,
) -> Response {
    let wants_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("ward-keep"));
    if !wants_upgrade {
        return error(
            StatusCode::BAD_REQUEST,
            "connect needs `Upgrade: ward-keep`",
        );
    }
    let channel = {
        let Ok(mut m) = s.keeps.lock() else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned");
        };
        let Some(k) = m.get_mut(&id) else {
            return error(StatusCode::NOT_FOUND, format!("no keep {id}"));
        };
        let Some(ch) = k.channel.take() else {
            return error(
                StatusCode::CONFLICT,
                format!("keep {id} already has a client"),
            );
        };
        k.info.state = KeepState::Connected;
        ch
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let (why, keep_closed) = match on_upgrade.await {
            Ok(upgraded) => relay(TokioIo::new(upgraded), channel).await,
            Err(e) => (format!("upgrade failed: {e}"), false),
        };
        info!(%id, "tunnel closed: {why}");
        // Either end is gone: the Keep goes too, so nothing is left behind.
        stop_keep(&s, &id, keep_closed).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "ward-keep")
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
