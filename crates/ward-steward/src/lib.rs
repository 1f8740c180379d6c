//! The Steward: Ward's attestation CA.
//!
//! A Keep sends a PKCS#10 certificate signing request (CSR) whose extension carries
//! its attestation evidence. The Steward checks the CSR's self-signature, verifies the
//! evidence with `ward-attest` against its policy, checks that the evidence binds the
//! CSR's public key (and a fresh, never-seen nonce), and issues a short-lived
//! certificate, chained to its CA, that carries the verified claims. The workload's
//! own clients then need to trust only the Steward's CA.
//!
//! - [`ca`]: the CA key and certificate in a directory, created on first start.
//! - [`record`]: the durable record of every issued certificate (also the replay
//!   memory).
//! - [`request`]: parsing a CSR (Ward or Enarx format) and building Ward CSRs.
//! - [`steward`]: the checks and the issuing, without I/O ([`Steward::attest`]).
//! - [`server`]: `POST /v1/attest` over HTTPS.
//! - [`client`]: a small client for that endpoint (tests, benchmarks, Keeps).
//!
//! See `docs/steward.md` for the wire format and the rules.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ca;
pub mod claims;
pub mod client;
mod der;
pub mod error;
pub mod record;
pub mod request;
pub mod server;
pub mod steward;

pub use ca::Ca;
pub use claims::IssuedClaims;
pub use error::{Rejection, StewardError};
pub use request::CsrContext;
pub use steward::{Clock, Issued, Steward, StewardConfig};

/// Largest CSR accepted, in bytes (the body of `POST /v1/attest`).
pub const MAX_CSR_LEN: usize = 64 << 10;

/// OID of the CSR context extension (`1.3.6.1.4.1.59999.77.2`): the CBOR
/// [`CsrContext`] whose exact bytes are the nonce in the report data.
pub const CONTEXT_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 59_999, 77, 2];

/// OID of the claims extension in issued certificates (`1.3.6.1.4.1.59999.77.3`):
/// the CBOR [`IssuedClaims`].
pub const CLAIMS_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 59_999, 77, 3];

/// Dotted form of [`CONTEXT_OID`].
pub const CONTEXT_OID_STR: &str = "1.3.6.1.4.1.59999.77.2";

/// Dotted form of [`CLAIMS_OID`].
pub const CLAIMS_OID_STR: &str = "1.3.6.1.4.1.59999.77.3";

/// SHA-256 fingerprint of a certificate (DER), as lowercase hex.
pub fn fingerprint(cert_der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(cert_der))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dotted(arcs: &[u64]) -> String {
        arcs.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(".")
    }

    #[test]
    fn oid_forms_agree() {
        assert_eq!(dotted(CONTEXT_OID), CONTEXT_OID_STR);
        assert_eq!(dotted(CLAIMS_OID), CLAIMS_OID_STR);
    }
}
