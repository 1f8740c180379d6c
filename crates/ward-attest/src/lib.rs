//! Ward attestation: what a Keep claims about itself, and how a client checks it.
//!
//! - [`evidence`] (always available, no verifier dependencies, so the in-Keep agent can
//!   link it): the [`Evidence`] envelope `{kind, evidence, collateral}` carried in CBOR,
//!   software evidence for Keeps without hardware protection, and the report-data
//!   binding [`report_data_for`].
//! - [`verify`] (feature `verify`, default): [`verify::verify`] checks evidence against
//!   vendor roots, a [`verify::Policy`] and an explicit `now`, returning
//!   [`verify::VerifiedClaims`] or a [`verify::VerifyError`] that names the reason.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod evidence;
pub mod ratls;
#[cfg(feature = "verify")]
pub mod verify;

pub use evidence::{report_data_for, Collateral, Evidence, EvidenceError, SoftwareReport, TeeKind};
#[cfg(feature = "verify")]
pub use ratls::check::evidence_from_cert_der;
pub use ratls::EVIDENCE_EXTENSION_OID;
