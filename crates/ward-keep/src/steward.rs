//! Getting a certificate from the Steward for the workload's `prot = "tls"` sockets
//! (docs/steward.md): a fresh P-256 key, evidence whose report data is
//! SHA-512(SPKI ‖ context), a Ward CSR carrying both, `POST /v1/attest` over TLS
//! pinned to the Steward's CA, and a rustls server configuration with the result.
//!
//! Runs before the sandbox (the seccomp filter forbids new sockets afterwards). The
//! workload digest in the context is the one the launch spec announces; the agent
//! refuses to run a module whose digest differs.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::PublicKeyData;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde::{Deserialize, Serialize};
use ward_attest::ratls::der_octet_string as octet_string;
use ward_attest::Evidence;
use ward_proto::StewardRef;

/// The Steward's OID for the CSR context (`1.3.6.1.4.1.59999.77.2`).
const CONTEXT_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 59_999, 77, 2];
/// Largest answer read from the Steward.
const MAX_RESPONSE: usize = 1 << 20;
/// How long the Steward may take to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What the CSR binds besides the key; its CBOR bytes are the report data's nonce.
#[derive(Serialize)]
struct Context<'a> {
    time: u64,
    #[serde(with = "serde_bytes")]
    random: &'a [u8],
    #[serde(with = "serde_bytes")]
    workload: &'a [u8],
}

/// The parts of the Steward's answer the Keep uses.
#[derive(Deserialize)]
struct Issued {
    #[serde(with = "serde_bytes")]
    certificate: Vec<u8>,
    #[serde(with = "serde_bytes")]
    ca: Vec<u8>,
}

/// The Steward's rejection body.
#[derive(Deserialize)]
struct Rejected {
    #[serde(rename = "reason-code")]
    reason_code: String,
    message: String,
}

/// The Keep's TLS identity from the Steward, for its `prot = "tls"` sockets.
pub struct KeepTls {
    /// For listen sockets: serves the issued certificate (+ the CA).
    pub server: Arc<rustls::ServerConfig>,
    /// For connect sockets: verifies servers against the Steward's CA (the
    /// configured roots) and presents the issued certificate as a client certificate.
    /// `None` without a Steward (no roots to verify servers against).
    pub client: Option<Arc<rustls::ClientConfig>>,
}

/// Without a Steward: a self-signed RA-TLS certificate for the listen sockets, whose
/// evidence binds its key and the workload's SHA-256 (the RA-TLS "nonce", see
/// docs/ra-tls.md), so an RA-TLS client that knows which workload it expects can check
/// both. No connect sockets: there would be no roots to verify servers against.
pub fn self_signed(measurement: Vec<u8>, workload_sha256: &[u8]) -> Result<KeepTls, String> {
    let id = ward_attest::ratls::issue::identity(workload_sha256, |rd| {
        Evidence::software(measurement, rd)
    })
    .map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(id.cert_der)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_der)),
        )
        .map_err(|e| format!("the RA-TLS certificate does not fit its key: {e}"))?;
    Ok(KeepTls {
        server: Arc::new(server),
        client: None,
    })
}

/// Asks the Steward for a certificate for a fresh key, for `names` (the TLS listen
/// sockets' addresses), attesting `measurement` and `workload_sha256`; returns the
/// TLS configurations for the workload's TLS sockets.
pub fn certify(
    steward: &StewardRef,
    names: &[String],
    measurement: Vec<u8>,
    workload_sha256: &[u8],
) -> Result<KeepTls, String> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("cannot generate the TLS key: {e}"))?;
    let mut random = [0u8; 32];
    let mut filled = 0;
    while filled < random.len() {
        filled +=
            rustix::rand::getrandom(&mut random[filled..], rustix::rand::GetRandomFlags::empty())
                .map_err(|e| format!("getrandom: {e}"))?;
    }
    let mut context = Vec::new();
    ciborium::into_writer(
        &Context {
            time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            random: &random,
            workload: workload_sha256,
        },
        &mut context,
    )
    .map_err(|e| format!("context: {e}"))?;
    let report_data = ward_attest::report_data_for(&key.subject_public_key_info(), Some(&context));
    // Process and kvm Keeps have no hardware evidence: `none`, which the Steward
    // accepts only under an insecure policy.
    let evidence = Evidence::software(measurement, report_data);
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| format!("certificate names {names:?}: {e}"))?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CommonName,
        names.first().map(String::as_str).unwrap_or("ward-keep"),
    );
    params.distinguished_name = dn;
    params.custom_extensions = vec![
        rcgen::CustomExtension::from_oid_content(
            ward_attest::ratls::EVIDENCE_OID,
            octet_string(&evidence.to_cbor()),
        ),
        rcgen::CustomExtension::from_oid_content(CONTEXT_OID, octet_string(&context)),
    ];
    let csr = params
        .serialize_request(&key)
        .map_err(|e| format!("cannot make the CSR: {e}"))?
        .der()
        .to_vec();
    let (status, body) = post(steward, &csr)?;
    if status != 200 {
        return Err(match ciborium::from_reader::<Rejected, _>(&body[..]) {
            Ok(r) => format!(
                "the Steward {} refused the certificate ({}): {}",
                steward.url, r.reason_code, r.message
            ),
            Err(_) => format!("the Steward {} answered HTTP {status}", steward.url),
        });
    }
    let issued: Issued = ciborium::from_reader(&body[..])
        .map_err(|e| format!("the Steward's answer does not parse: {e}"))?;
    if issued.ca != steward.ca_der {
        return Err("the Steward's certificate chains to another CA than steward_ca".into());
    }
    let chain = vec![
        CertificateDer::from(issued.certificate),
        CertificateDer::from(issued.ca),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| format!("the issued certificate does not fit the key: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(steward.ca_der.clone()))
        .map_err(|e| format!("steward_ca: {e}"))?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("the issued certificate does not fit the key: {e}"))?;
    Ok(KeepTls {
        server: Arc::new(server),
        client: Some(Arc::new(client)),
    })
}

/// errno for an unsupported socket option.
const ENOPROTOOPT: i32 = 92;

/// `POST /v1/attest` with `csr` over TLS pinned to the Steward's CA; (status, body).
fn post(steward: &StewardRef, csr: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let (host, port) = ward_proto::config::steward_authority(&steward.url)?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(steward.ca_der.clone()))
        .map_err(|e| format!("steward_ca: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.clone()).map_err(|e| format!("steward host: {e}"))?;
    let conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| format!("TLS: {e}"))?;
    let unreachable = |e: std::io::Error| format!("cannot reach the Steward {}: {e}", steward.url);
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(unreachable)?
        .next()
        .ok_or_else(|| format!("the Steward {} has no address", steward.url))?;
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(unreachable)?;
    for set in [TcpStream::set_read_timeout, TcpStream::set_write_timeout] {
        match set(&tcp, Some(TIMEOUT)) {
            Ok(()) => {}
            // A kvm Keep's shim has no socket timeouts (ENOPROTOOPT): there, the VMM's
            // deadline (wall_time) is what bounds a Steward that stops answering.
            Err(e) if e.raw_os_error() == Some(ENOPROTOOPT) => {}
            Err(e) => return Err(unreachable(e)),
        }
    }
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let head = format!(
        "POST /v1/attest HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/pkcs10\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        csr.len()
    );
    tls.write_all(head.as_bytes())
        .and_then(|_| tls.write_all(csr))
        .and_then(|_| tls.flush())
        .map_err(unreachable)?;
    let mut answer = Vec::new();
    match (&mut tls)
        .take(MAX_RESPONSE as u64 + 1)
        .read_to_end(&mut answer)
    {
        Ok(_) => {}
        // Some servers close without close_notify after a complete answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(unreachable(e)),
    }
    if answer.len() > MAX_RESPONSE {
        return Err("the Steward's answer is too large".into());
    }
    parse_http(&answer)
}

/// (status, body) of an HTTP/1.1 response with a Content-Length (or read to EOF).
fn parse_http(answer: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let bad = || "the Steward's answer is not HTTP/1.1".to_string();
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = std::str::from_utf8(&answer[..end]).map_err(|_| bad())?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1.1 "))
        .and_then(|l| l.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    let mut body = &answer[end + 4..];
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if k.eq_ignore_ascii_case("content-length") {
            let n: usize = v.trim().parse().map_err(|_| bad())?;
            body = body.get(..n).ok_or("the Steward's answer is truncated")?;
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            return Err("the Steward's answer uses a transfer encoding".into());
        }
    }
    Ok((status, body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_answers() {
        let (s, b) = parse_http(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabcdef").unwrap();
        assert_eq!((s, &b[..]), (200, &b"abc"[..]));
        let (s, b) = parse_http(b"HTTP/1.1 403 Forbidden\r\n\r\nxy").unwrap();
        assert_eq!((s, &b[..]), (403, &b"xy"[..]));
        assert!(parse_http(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nab").is_err());
        assert!(parse_http(b"garbage").is_err());
        assert!(parse_http(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
    }
}
