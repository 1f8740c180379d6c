//! A small client for the Steward's API: one TLS connection per request, the
//! server authenticated by the Steward's CA certificate only.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::RejectionBody;
use crate::server::IssueResponse;

/// Largest response body read, bytes.
const MAX_RESPONSE: usize = 1 << 20;

/// Why a request could not be made or understood.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or reading failed.
    #[error("cannot reach the Steward: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS setup or handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// HTTP failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// The answer is not what the API promises.
    #[error("unexpected answer: {0}")]
    Decode(String),
}

/// What the Steward answered to a CSR.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A certificate.
    Issued(IssueResponse),
    /// A rejection.
    Rejected {
        /// HTTP status.
        status: u16,
        /// `{reason-code, message}`.
        body: RejectionBody,
    },
}

/// A Steward client.
#[derive(Clone)]
pub struct Client {
    connector: TlsConnector,
    addr: SocketAddr,
    server_name: ServerName<'static>,
}

impl Client {
    /// A client for the Steward at `addr`, whose server certificate must be
    /// issued for `server_name` by the CA `ca_der`.
    pub fn new(addr: SocketAddr, server_name: &str, ca_der: &[u8]) -> Result<Self, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca_der.to_vec()))
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            addr,
            server_name,
        })
    }

    /// Sends `body` to `path` with `method`; returns (status, body).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let tcp = TcpStream::connect(self.addr).await?;
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let driver = tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.addr.to_string())
            .header(hyper::header::CONTENT_TYPE, "application/pkcs10")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes()
            .to_vec();
        drop(sender);
        driver.abort();
        Ok((status, bytes))
    }

    /// Sends a CSR (DER) to `POST /v1/attest`.
    pub async fn attest(&self, csr_der: Vec<u8>) -> Result<Outcome, ClientError> {
        let (status, body) = self.request("POST", "/v1/attest", csr_der).await?;
        decode(status, &body)
    }
}

/// Decodes an answer of `POST /v1/attest`.
pub fn decode(status: u16, body: &[u8]) -> Result<Outcome, ClientError> {
    if status == 200 {
        ciborium::from_reader(body)
            .map(Outcome::Issued)
            .map_err(|e| {
                ClientError::Decode(format!("200 with a body that is not an IssueResponse: {e}"))
            })
    } else {
        ciborium::from_reader(body)
            .map(|body| Outcome::Rejected { status, body })
            .map_err(|e| {
                ClientError::Decode(format!(
                    "HTTP {status} with a body that is not {{reason-code, message}}: {e}"
                ))
            })
    }
}
