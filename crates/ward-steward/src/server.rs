//! The Steward's HTTPS API.
//!
//! - `POST /v1/attest`: body = a DER CSR (`Content-Type: application/pkcs10`), at
//!   most [`crate::MAX_CSR_LEN`] bytes. `200` with the CBOR [`IssueResponse`], or a
//!   4xx (`500` if the Steward itself failed) with the CBOR
//!   [`crate::error::RejectionBody`] `{reason-code, message}`.
//! - `GET /v1/ca`: the CA certificate, PEM.
//!
//! TLS uses a server certificate signed by the Steward's own CA (a fresh key at each
//! start), so a client needs only the CA certificate, which it must get out of band
//! (`ward steward ca`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::claims::IssuedClaims;
use crate::error::{Rejection, StewardError};
use crate::steward::Steward;
use crate::MAX_CSR_LEN;

/// Most CSRs verified at once (verification is CPU-bound); others wait.
const MAX_CONCURRENT_VERIFICATIONS: usize = 16;
/// Most open connections; further ones wait in the listen backlog.
const MAX_CONNECTIONS: usize = 512;
/// How long a connection may take for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may live.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The CBOR body of a successful `POST /v1/attest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IssueResponse {
    /// The issued certificate (DER).
    #[serde(with = "serde_bytes")]
    pub certificate: Vec<u8>,
    /// The CA certificate it chains to (DER).
    #[serde(with = "serde_bytes")]
    pub ca: Vec<u8>,
    /// Serial number, hex.
    pub serial: String,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: u64,
    /// The claims the certificate carries.
    pub claims: IssuedClaims,
    /// Notes for the requester (e.g. stale CRLs in an Enarx CSR).
    pub notes: Vec<String>,
}

struct AppState {
    steward: Arc<Steward>,
    verifying: Semaphore,
}

/// The HTTP routes, without TLS (for embedding or tests).
pub fn router(steward: Arc<Steward>) -> Router {
    Router::new()
        .route("/v1/attest", post(attest))
        .route("/v1/ca", get(ca))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(Arc::new(AppState {
            steward,
            verifying: Semaphore::new(MAX_CONCURRENT_VERIFICATIONS),
        }))
}

fn cbor<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let mut body = Vec::new();
    if ciborium::into_writer(value, &mut body).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (status, [(header::CONTENT_TYPE, "application/cbor")], body).into_response()
}

fn reject(r: &Rejection) -> Response {
    cbor(
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
        &r.body(),
    )
}

async fn not_found() -> Response {
    reject(&Rejection::new(
        404,
        "not-found",
        "no such endpoint; the Steward serves POST /v1/attest and GET /v1/ca",
    ))
}

async fn method_not_allowed() -> Response {
    reject(&Rejection::new(
        405,
        "method-not-allowed",
        "wrong method; the Steward serves POST /v1/attest and GET /v1/ca",
    ))
}

async fn ca(State(s): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        s.steward.ca().cert_pem().to_string(),
    )
        .into_response()
}

fn too_large() -> Rejection {
    Rejection::new(
        413,
        "body-too-large",
        format!("the request body is larger than {MAX_CSR_LEN} bytes"),
    )
}

async fn attest(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_CSR_LEN as u64) {
        return reject(&too_large());
    }
    let bytes = match Limited::new(body, MAX_CSR_LEN).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return reject(&too_large()),
        Err(e) => {
            return reject(&Rejection::new(
                400,
                "body-unreadable",
                format!("cannot read the request body: {e}"),
            ))
        }
    };
    let Ok(_permit) = s.verifying.acquire().await else {
        return reject(&Rejection::new(500, "internal", "shutting down"));
    };
    let steward = s.steward.clone();
    match tokio::task::spawn_blocking(move || steward.attest(&bytes)).await {
        Ok(Ok(issued)) => cbor(
            StatusCode::OK,
            &IssueResponse {
                certificate: issued.cert_der,
                ca: issued.ca_der,
                serial: issued.serial,
                not_after: issued.not_after,
                claims: issued.claims,
                notes: issued.notes,
            },
        ),
        Ok(Err(r)) => reject(&r),
        Err(_) => reject(&Rejection::new(
            500,
            "internal",
            "the verification task failed",
        )),
    }
}

/// The TLS configuration: a server certificate for `names` signed by the CA.
pub fn tls_config(
    steward: &Steward,
    names: &[String],
) -> Result<rustls::ServerConfig, StewardError> {
    // The TLS identity lives in real time, even when evidence is checked at a
    // pinned time.
    let (chain, key) = steward
        .ca()
        .server_identity(names, std::time::SystemTime::now())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StewardError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(
            chain
                .into_iter()
                .map(rustls::pki_types::CertificateDer::from)
                .collect(),
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .map_err(|e| StewardError::Tls(e.to_string()))
}

/// Serves the API over TLS on `listener` until `shutdown` completes, then closes
/// every open connection. `names` are the DNS names / IP addresses the server
/// certificate is issued for.
pub async fn serve(
    listener: TcpListener,
    steward: Arc<Steward>,
    names: &[String],
    shutdown: impl Future<Output = ()>,
) -> Result<(), StewardError> {
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&steward, names)?));
    let app = router(steward);
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tasks.spawn(async move {
            let _permit = permit;
            serve_connection(acceptor, app, tcp, peer).await;
        });
    }
    // Open connections end with the server, so that the Steward (and the lock on
    // its record) is released when this returns.
    tasks.shutdown().await;
    Ok(())
}

async fn serve_connection(
    acceptor: TlsAcceptor,
    app: Router,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let service = hyper_util::service::TowerToHyperService::new(app);
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%peer, "connection ended: {e}"),
        Err(_) => tracing::debug!(%peer, "connection timed out"),
    }
}
