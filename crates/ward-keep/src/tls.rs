//! Remote deployments: TLS that terminates inside the Keep, with an RA-TLS
//! certificate whose evidence binds a fresh key and the client's nonce.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use sha2::{Digest, Sha384};
use ward_attest::{ratls, Evidence};
use ward_proto::{read_frame, KeepErrorKind, TunnelHello, PROTOCOL_VERSION};

use crate::agent::{serve_on, AgentError, AgentOptions};

/// Bounds on the client's nonce.
const NONCE_LEN: std::ops::RangeInclusive<usize> = 16..=64;

type Tls = StreamOwned<ServerConnection, UnixStream>;

/// The TLS stream, shared by the agent's reader and writer. All of the agent's
/// reads and writes happen on one thread, so the lock is never contended.
#[derive(Clone)]
struct Shared(Arc<Mutex<Tls>>);

impl Read for Shared {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("tls poisoned"))?
            .read(buf)
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("tls poisoned"))?
            .write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("tls poisoned"))?
            .flush()
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> AgentError {
    AgentError::new(KeepErrorKind::Internal, format!("{what}: {e}"))
}

/// Where a kvm Keep's shim serves the launch measurement the VMM computed over the
/// initial guest image (docs/kvm.md).
const KVM_MEASUREMENT: &str = "/dev/ward/launch-measurement";

/// The launch measurement, computed once per Keep (both RA-TLS and a Steward CSR need
/// it, and hashing a process Keep's own binary takes tens of milliseconds).
static MEASUREMENT: std::sync::OnceLock<Result<Vec<u8>, String>> = std::sync::OnceLock::new();

/// The launch measurement: for a kvm Keep, the guest image's SHA-384 (from the
/// shim); for a process Keep, SHA-384 of the agent binary (from the loader's
/// `--measurement`, else hashed here).
pub(crate) fn measurement(opts: &AgentOptions) -> Result<Vec<u8>, AgentError> {
    MEASUREMENT
        .get_or_init(|| compute_measurement(opts).map_err(|e| e.to_string()))
        .clone()
        .map_err(|m| AgentError::new(KeepErrorKind::Internal, m))
}

fn compute_measurement(opts: &AgentOptions) -> Result<Vec<u8>, AgentError> {
    if opts.vm {
        let m = std::fs::read(KVM_MEASUREMENT)
            .map_err(|e| internal("cannot read the launch measurement", e))?;
        if m.len() != 48 {
            return Err(internal(
                "launch measurement",
                format!("{} bytes, not 48", m.len()),
            ));
        }
        return Ok(m);
    }
    if let Some(m) = &opts.measurement {
        return Ok(m.clone());
    }
    let mut exe = std::fs::File::open("/proc/self/exe")
        .map_err(|e| internal("cannot read the agent binary", e))?;
    let mut hasher = Sha384::new();
    std::io::copy(&mut exe, &mut hasher)
        .map_err(|e| internal("cannot read the agent binary", e))?;
    Ok(hasher.finalize().to_vec())
}

/// Serves one remote deployment on `channel`.
pub(crate) fn serve(mut channel: UnixStream, opts: &AgentOptions) -> Result<(), AgentError> {
    let protocol = |m: String| AgentError::new(KeepErrorKind::Protocol, m);
    let hello: TunnelHello = read_frame(&mut channel)
        .map_err(|e| protocol(format!("tunnel hello: {e}")))?
        .ok_or_else(|| protocol("the tunnel closed before the client said hello".into()))?;
    if hello.version != PROTOCOL_VERSION || !NONCE_LEN.contains(&hello.nonce.len()) {
        return Err(protocol(format!(
            "bad tunnel hello (version {}, nonce of {} bytes; need {PROTOCOL_VERSION} and {NONCE_LEN:?})",
            hello.version,
            hello.nonce.len()
        )));
    }
    let launch = measurement(opts)?;
    let id = ratls::issue::identity(&hello.nonce, |rd| Evidence::software(launch, rd))
        .map_err(|e| internal("RA-TLS", e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| internal("TLS", e))?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(id.cert_der)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_der)),
        )
        .map_err(|e| internal("TLS", e))?;
    let conn = ServerConnection::new(Arc::new(config)).map_err(|e| internal("TLS", e))?;
    let mut tls = StreamOwned::new(conn, channel);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| protocol(format!("TLS handshake with the client failed: {e}")))?;
    }
    let shared = Shared(Arc::new(Mutex::new(tls)));
    let result = serve_on(shared.clone(), shared.clone(), opts);
    if let Ok(mut tls) = shared.0.lock() {
        tls.conn.send_close_notify();
        let _ = tls.flush();
    }
    result
}
