//! The resolved workload configuration, as it travels to the Keep.
//!
//! `Ward.toml` (parsed by `ward-runtime`) is the user-facing form; this is the wire
//! form: explicit, with defaults filled in and nothing left to interpret.

use serde::{Deserialize, Serialize};

/// Everything a Keep needs to know to run a workload, apart from the module itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadConfig {
    /// Arguments after `argv[0]` (the Keep sets `argv[0]` to the workload's name).
    pub args: Vec<String>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// What the workload's fd 0 is.
    pub stdin: StdioMode,
    /// What the workload's fd 1 is.
    pub stdout: StdioMode,
    /// What the workload's fd 2 is.
    pub stderr: StdioMode,
    /// Host directories made visible to the workload, preopened from fd 3 on.
    pub preopens: Vec<PreopenDir>,
    /// Sockets, preopened after the directories, in this order.
    pub sockets: Vec<WorkloadSocket>,
    /// Resource limits.
    pub limits: Limits,
    /// The Steward that certifies the Keep's `Tls` sockets (Ward.toml `steward` +
    /// `steward_ca`). Absent when no socket needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steward: Option<StewardRef>,
}

/// Where a Keep gets the certificate for its TLS sockets (docs/steward.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StewardRef {
    /// `https://host:port` of `ward steward serve`.
    pub url: String,
    /// The Steward's CA certificate (DER): it must have issued the Steward's TLS
    /// certificate, and it is the root of the certificate the Keep gets.
    #[serde(with = "serde_bytes")]
    pub ca_der: Vec<u8>,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            args: Vec::new(),
            env: Vec::new(),
            stdin: StdioMode::Forward,
            stdout: StdioMode::Forward,
            stderr: StdioMode::Forward,
            preopens: Vec::new(),
            sockets: Vec::new(),
            limits: Limits::default(),
            steward: None,
        }
    }
}

/// Where a standard stream goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StdioMode {
    /// Relayed between the workload and the client over the Keep channel.
    Forward,
    /// Reads see end-of-file; writes are discarded.
    Null,
}

/// A host directory preopened for the workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreopenDir {
    /// Absolute path on the machine that runs the Keep.
    pub host: String,
    /// The path the workload sees, e.g. `/data`.
    pub guest: String,
    /// Whether the workload may create, write and delete files there.
    pub writable: bool,
}

/// Kind of a preopened socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    /// A listening socket; the workload calls `accept()` on it.
    Listen,
    /// A connected socket; the workload reads and writes it.
    Connect,
}

/// Protocol spoken on a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SocketProtocol {
    /// Plain TCP.
    Tcp,
    /// TLS terminated inside the Keep, with a certificate from the Steward
    /// (`WorkloadConfig::steward`). On a connect socket the Keep is the client: it
    /// verifies the server against the Steward's CA and presents its certificate.
    Tls,
}

/// A socket preopened for the workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSocket {
    /// Listen or connect.
    pub kind: FileKind,
    /// Name the workload finds it by (in `FD_NAMES`).
    pub name: String,
    /// Protocol.
    pub prot: SocketProtocol,
    /// For `Listen`: the local address; for `Connect`: the peer's host name or address.
    pub host: String,
    /// Port (0 for `Listen` picks a free one; the Keep reports which).
    pub port: u16,
}

impl WorkloadSocket {
    /// `host:port`, with a bare IPv6 address bracketed, for resolving or binding.
    pub fn addr(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Resource limits for one workload run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Maximum total linear memory, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock deadline in milliseconds, if any.
    pub wall_time_ms: Option<u64>,
    /// Fuel (roughly, Wasm instructions), if metered.
    pub fuel: Option<u64>,
}

/// Default memory limit: 512 MiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 512 << 20;

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            wall_time_ms: None,
            fuel: None,
        }
    }
}

/// The `host:port` of a `https://host[:port][/]` Steward URL (port 443 by default).
pub fn steward_authority(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("steward {url:?} must start with https://"))?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "steward {url:?} must be https://host[:port], no path"
        ));
    }
    let bad_port = |p: &str| format!("steward {url:?}: bad port {p:?}");
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        // [IPv6]:port or [IPv6]
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("steward {url:?}: unclosed ["))?;
        let port = match after {
            "" => 443,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or_else(|| bad_port(p))?,
        };
        (h, port)
    } else {
        match authority.split_once(':') {
            None => (authority, 443),
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad_port(p))?),
        }
    };
    if host.is_empty() {
        return Err(format!("steward {url:?} has no host"));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steward_urls() {
        assert_eq!(
            steward_authority("https://a.example:8444"),
            Ok(("a.example".into(), 8444))
        );
        assert_eq!(
            steward_authority("https://a.example/"),
            Ok(("a.example".into(), 443))
        );
        assert_eq!(steward_authority("https://[::1]:9"), Ok(("::1".into(), 9)));
        assert!(steward_authority("https://a/b").is_err());
        assert!(steward_authority("https://:1").is_err());
        assert!(steward_authority("https://a:x").is_err());
        assert!(steward_authority("https://a:").is_err());
        assert!(steward_authority("https://[::1").is_err());
    }

    #[test]
    fn socket_addresses_bracket_bare_ipv6() {
        let mut s = WorkloadSocket {
            kind: FileKind::Listen,
            name: "x".into(),
            prot: SocketProtocol::Tcp,
            host: "::1".into(),
            port: 7,
        };
        assert_eq!(s.addr(), "[::1]:7");
        s.host = "[::1]".into();
        assert_eq!(s.addr(), "[::1]:7");
        s.host = "example.com".into();
        assert_eq!(s.addr(), "example.com:7");
    }
}
