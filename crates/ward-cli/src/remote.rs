//! Talking to an untrusted `ward host serve`: its API over HTTPS (whose certificate
//! is *not* trusted for anything that matters), and the tunnel to a Keep.

use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use ward_proto::host::{ApiError, MAX_API_BODY};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Verifies handshake signatures properly but accepts any host certificate, recording
/// its fingerprint (optionally pinned). The host is untrusted by design: this TLS only
/// hides API metadata from passive observers.
#[derive(Debug)]
pub(crate) struct HostCert {
    algs: WebPkiSupportedAlgorithms,
    pin: Option<String>,
    pub(crate) seen: Mutex<Option<String>>,
}

impl ServerCertVerifier for HostCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = ward_host::daemon::fingerprint(end_entity.as_ref());
        if let Some(pin) = &self.pin {
            if !pin.eq_ignore_ascii_case(&fp) {
                return Err(rustls::Error::General(format!(
                    "host certificate sha256 {fp} does not match --host-fingerprint {pin}"
                )));
            }
        }
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(fp);
        }
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A host's API address.
pub(crate) struct Host {
    pub(crate) authority: String,
    tls: Arc<rustls::ClientConfig>,
    pub(crate) verifier: Arc<HostCert>,
}

impl Host {
    /// Parses `https://HOST:PORT`.
    pub(crate) fn new(url: &str, pin: Option<String>) -> anyhow::Result<Self> {
        let authority = url
            .strip_prefix("https://")
            .with_context(|| format!("--host must be https://HOST:PORT, not {url:?}"))?
            .trim_end_matches('/')
            .to_string();
        if authority.is_empty() || authority.contains('/') {
            bail!("--host must be https://HOST:PORT, not {url:?}");
        }
        let p = provider();
        let verifier = Arc::new(HostCert {
            algs: p.signature_verification_algorithms,
            pin,
            seen: Mutex::new(None),
        });
        let tls = rustls::ClientConfig::builder_with_provider(p)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        Ok(Self {
            authority,
            tls: Arc::new(tls),
            verifier,
        })
    }

    async fn open(&self) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("cannot reach the host at {}", self.authority))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("ward-host")?;
        tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .context("TLS with the host")
    }

    /// One API request with a CBOR body; returns the decoded CBOR response.
    pub(crate) async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Req>,
    ) -> anyhow::Result<Resp> {
        let (status, bytes) = self.raw(method, path, body).await?;
        if !status.is_success() {
            let msg = ciborium::from_reader::<ApiError, _>(&bytes[..])
                .map(|e| e.message)
                .unwrap_or_else(|_| status.to_string());
            bail!("the host refused: {msg}");
        }
        ciborium::from_reader(&bytes[..])
            .with_context(|| format!("malformed response from the host to {path}"))
    }

    /// A request whose response has no body of interest.
    pub(crate) async fn raw<Req: serde::Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Req>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let io = self.open().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(conn);
        let mut bytes = Vec::new();
        if let Some(b) = body {
            ciborium::into_writer(b, &mut bytes)?;
        }
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/cbor")
            .body(Full::new(Bytes::from(bytes)))?;
        let resp = sender.send_request(req).await.context("host API request")?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_API_BODY)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("host response: {e}"))?
            .to_bytes();
        Ok((status, body))
    }

    /// Opens the byte tunnel to a Keep.
    pub(crate) async fn tunnel(
        &self,
        id: &str,
    ) -> anyhow::Result<TokioIo<hyper::upgrade::Upgraded>> {
        let io = self.open().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(conn.with_upgrades());
        let req = Request::builder()
            .method(Method::GET)
            .uri(format!("/v1/keeps/{id}/connect"))
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONNECTION, "upgrade")
            .header(hyper::header::UPGRADE, "ward-keep")
            .body(Full::new(Bytes::new()))?;
        let resp = sender.send_request(req).await.context("tunnel request")?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            bail!(
                "the host would not open a tunnel to keep {id}: {}",
                resp.status()
            );
        }
        let upgraded = hyper::upgrade::on(resp).await.context("tunnel upgrade")?;
        Ok(TokioIo::new(upgraded))
    }
}

/// Verifies the Keep's RA-TLS certificate during the handshake, *before* any
/// workload byte is sent: its evidence must satisfy the policy and bind this
/// certificate's key and our nonce.
#[derive(Debug)]
pub(crate) struct KeepCert {
    algs: WebPkiSupportedAlgorithms,
    nonce: Vec<u8>,
    policy: ward_attest::verify::Policy,
    pub(crate) claims: Mutex<Option<ward_attest::verify::VerifiedClaims>>,
}

impl KeepCert {
    pub(crate) fn new(nonce: Vec<u8>, policy: ward_attest::verify::Policy) -> Self {
        Self {
            algs: provider().signature_verification_algorithms,
            nonce,
            policy,
            claims: Mutex::new(None),
        }
    }
}

impl ServerCertVerifier for KeepCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let claims = ward_attest::ratls::check::verify_cert(
            end_entity.as_ref(),
            &self.nonce,
            &self.policy,
            std::time::SystemTime::now(),
            &ward_attest::verify::ChainCache::new(),
        )
        .map_err(|e| {
            let why = match &e {
                ward_attest::verify::VerifyError::ReportDataMismatch { .. } => {
                    "the evidence does not bind this certificate's key and our nonce (a replayed or swapped certificate, or a changed nonce): "
                }
                _ => "",
            };
            rustls::Error::General(format!("keep attestation refused: {why}{e}"))
        })?;
        if let Ok(mut c) = self.claims.lock() {
            *c = Some(claims);
        }
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("keeps speak TLS 1.3 only".into()))
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A TLS 1.3 client config that trusts a Keep only through `verifier`.
pub(crate) fn keep_tls(verifier: Arc<KeepCert>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    ))
}
