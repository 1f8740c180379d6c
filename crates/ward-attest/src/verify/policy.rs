//! The verifier's policy: what evidence to accept. A TOML file.

use serde::{Deserialize, Deserializer};

use super::{VerifiedClaims, VerifyError};

/// Bytes written in TOML as a hex string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hex(pub Vec<u8>);

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let s = s.trim().trim_start_matches("0x");
        hex::decode(s)
            .map(Hex)
            .map_err(|e| serde::de::Error::custom(format!("invalid hex {s:?}: {e}")))
    }
}

/// What a verifier accepts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Accept `none` evidence (Keeps without hardware protection). For testing only.
    #[serde(default)]
    pub insecure_allow_software: bool,
    /// Accept TEEs in debug mode (the host can read their memory).
    #[serde(default)]
    pub allow_debug: bool,
    /// If non-empty, the measurement must be one of these.
    #[serde(default)]
    pub measurements: Vec<Hex>,
    /// If set, the report data must equal this (64 bytes).
    #[serde(default)]
    pub report_data: Option<Hex>,
    /// SEV-SNP specifics.
    #[serde(default)]
    pub snp: SnpPolicy,
    /// Intel TDX and SGX (DCAP) specifics.
    #[serde(default)]
    pub dcap: DcapPolicy,
    /// AWS Nitro Enclaves specifics.
    #[serde(default)]
    pub nitro: NitroPolicy,
}

/// AWS Nitro Enclaves policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NitroPolicy {
    /// Allowed PCR values by index: `"0" = "hex..."` or `"0" = ["hex...", "hex..."]`.
    /// A listed PCR must equal one of its values; unlisted PCRs may be anything.
    #[serde(default)]
    pub pcrs: std::collections::BTreeMap<String, AllowedValues>,
}

/// One allowed value, or a list of them (TOML: a hex string or an array of them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowedValues(pub Vec<Hex>);

impl AllowedValues {
    /// Whether `value` is one of the allowed values.
    pub fn allows(&self, value: &[u8]) -> bool {
        self.0.iter().any(|h| h.0 == value)
    }
}

impl<'de> Deserialize<'de> for AllowedValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(Hex),
            Many(Vec<Hex>),
        }
        match OneOrMany::deserialize(d)? {
            OneOrMany::One(h) => Ok(AllowedValues(vec![h])),
            OneOrMany::Many(v) if !v.is_empty() => Ok(AllowedValues(v)),
            OneOrMany::Many(_) => Err(serde::de::Error::custom(
                "an empty list of allowed PCR values would reject everything",
            )),
        }
    }
}

/// Intel DCAP (TDX, SGX) policy: which TCB statuses and advisories to accept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DcapPolicy {
    /// TCB statuses accepted besides `UpToDate` (e.g. "SWHardeningNeeded",
    /// "ConfigurationAndSWHardeningNeeded").
    #[serde(default)]
    pub allow_statuses: Vec<String>,
    /// Security advisories accepted by id (e.g. "INTEL-SA-00615").
    #[serde(default)]
    pub allow_advisories: Vec<String>,
}

/// SEV-SNP policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpPolicy {
    /// Only accept this product's roots: "milan", "genoa" or "turin". Default: any.
    #[serde(default)]
    pub product: Option<String>,
    /// Minimum reported TCB components.
    #[serde(default)]
    pub min_tcb: SnpTcb,
    /// Guest policy bits that may be set; a report with other bits set is rejected.
    /// Default: any (the debug bit is governed by `allow_debug`).
    #[serde(default)]
    pub guest_policy_mask: Option<u64>,
}

/// SEV-SNP TCB components (security version numbers).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SnpTcb {
    /// PSP bootloader SVN.
    #[serde(default)]
    pub bootloader: u8,
    /// PSP OS (TEE) SVN.
    #[serde(default)]
    pub tee: u8,
    /// SNP firmware SVN.
    #[serde(default)]
    pub snp: u8,
    /// Microcode SVN.
    #[serde(default)]
    pub microcode: u8,
    /// FMC SVN (Turin).
    #[serde(default)]
    pub fmc: u8,
}

/// A commented policy template, written by `ward attest policy init`.
pub const POLICY_TEMPLATE: &str = r#"# Ward attestation policy: what evidence a verifier accepts.
# Unknown keys are an error.

# Accept Keeps with no hardware protection (process and kvm backends). Their
# evidence is unsigned: the host could forge it. For testing only.
insecure_allow_software = false

# Accept TEEs running in debug mode (the host can read their memory).
allow_debug = false

# Accept only these launch measurements (hex). Empty: any measurement.
measurements = [
  # "8f2e...",
]

# Require this exact report data (64 bytes, hex). Usually set by the client
# itself, to bind the TLS key and its nonce.
# report_data = "00..."

[snp]
# Only trust this product's AMD roots: "milan", "genoa" or "turin".
# product = "milan"

# Guest policy bits allowed to be set (the debug bit is governed by allow_debug).
# guest_policy_mask = 0x30000

# Minimum security version numbers of the platform's reported TCB.
[snp.min_tcb]
bootloader = 0
tee = 0
snp = 0
microcode = 0

[dcap]
# Intel TDX/SGX: TCB statuses accepted besides "UpToDate", by name, e.g.
# "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded".
allow_statuses = []
# Security advisories accepted by id, e.g. "INTEL-SA-00615".
allow_advisories = []

[nitro.pcrs]
# AWS Nitro Enclaves: allowed PCR values by index (hex, 48 bytes each): one value,
# or a list of acceptable values. Unlisted PCRs are not checked.
# "0" = "..."
# "8" = ["...", "..."]
"#;

impl Policy {
    /// Parses a policy file's text.
    pub fn from_toml(text: &str) -> Result<Self, VerifyError> {
        let p: Policy = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            VerifyError::Policy(match line {
                Some(l) => format!("line {l}: {}", e.message()),
                None => e.message().to_string(),
            })
        })?;
        if let Some(rd) = &p.report_data {
            if rd.0.len() != 64 {
                return Err(VerifyError::Policy(format!(
                    "report_data must be 64 bytes, not {}",
                    rd.0.len()
                )));
            }
        }
        for key in p.nitro.pcrs.keys() {
            if !matches!(key.parse::<u32>(), Ok(0..=31)) {
                return Err(VerifyError::Policy(format!(
                    "nitro.pcrs key {key:?} is not a PCR index (0 to 31)"
                )));
            }
        }
        if let Some(prod) = &p.snp.product {
            if !["milan", "genoa", "turin"].contains(&prod.as_str()) {
                return Err(VerifyError::Policy(format!(
                    "unknown snp.product {prod:?}; use milan, genoa or turin"
                )));
            }
        }
        Ok(p)
    }

    /// Checks that apply to every kind of evidence.
    pub(super) fn check_common(&self, claims: &VerifiedClaims) -> Result<(), VerifyError> {
        if claims.debug && !self.allow_debug {
            return Err(VerifyError::DebugNotAllowed);
        }
        if !self.measurements.is_empty()
            && !self.measurements.iter().any(|m| m.0 == claims.measurement)
        {
            return Err(VerifyError::MeasurementNotAllowed {
                got: hex::encode(&claims.measurement),
            });
        }
        if let Some(expected) = &self.report_data {
            if expected.0 != claims.report_data {
                return Err(VerifyError::ReportDataMismatch {
                    expected: hex::encode(&expected.0),
                    got: hex::encode(&claims.report_data),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses() {
        let p = Policy::from_toml(POLICY_TEMPLATE).unwrap();
        assert!(!p.insecure_allow_software && !p.allow_debug);
    }

    #[test]
    fn unknown_key_names_line() {
        let err = Policy::from_toml("allow_debug = false\nalow_debug = true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn bad_hex_and_length_rejected() {
        assert!(Policy::from_toml("measurements = [\"zz\"]").is_err());
        assert!(Policy::from_toml("report_data = \"00\"").is_err());
        assert!(Policy::from_toml("[snp]\nproduct = \"naples\"").is_err());
        assert!(Policy::from_toml("[nitro.pcrs]\n\"x\" = \"00\"").is_err());
        assert!(Policy::from_toml("[nitro.pcrs]\n\"32\" = \"00\"").is_err());
        assert!(Policy::from_toml("[nitro.pcrs]\n\"0\" = []").is_err());
    }

    #[test]
    fn pcr_values_one_or_many() {
        let p =
            Policy::from_toml("[nitro.pcrs]\n\"0\" = \"aa\"\n\"1\" = [\"bb\", \"cc\"]\n").unwrap();
        assert!(p.nitro.pcrs["0"].allows(&[0xaa]));
        assert!(p.nitro.pcrs["1"].allows(&[0xcc]));
        assert!(!p.nitro.pcrs["1"].allows(&[0xaa]));
    }
}
