use crate::TeeKind;

/// What verified evidence says about a TEE. Every field was checked against the
/// signature chain (or, for `none`, comes from an unsigned software report:
/// `insecure_software` is then true).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClaims {
    /// The kind of TEE.
    pub kind: TeeKind,
    /// Launch measurement (SNP MEASUREMENT, TDX MRTD, SGX MRENCLAVE, Nitro PCR0).
    pub measurement: Vec<u8>,
    /// The report data the TEE bound to this evidence.
    pub report_data: Vec<u8>,
    /// TCB / security version numbers, by name.
    pub tcb: Vec<(String, u64)>,
    /// Whether the TEE runs in debug mode.
    pub debug: bool,
    /// Chip or platform identity (SNP CHIP_ID), if the evidence carries one.
    pub platform_id: Vec<u8>,
    /// Signer / ID key digests, by name.
    pub signers: Vec<(String, Vec<u8>)>,
    /// Nitro: platform configuration registers, by index.
    pub pcrs: Vec<(u32, Vec<u8>)>,
    /// Other facts, by name (product, VMPL, guest policy...).
    pub details: Vec<(String, String)>,
    /// True when the evidence has no hardware protection and the policy accepted it.
    pub insecure_software: bool,
}
