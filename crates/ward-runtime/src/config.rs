//! `Ward.toml`: the user's workload configuration.
//!
//! Modeled on `Enarx.toml`. Parsing is strict: an unknown key, a wrong type or a value
//! that cannot be honoured is an error that names the line. The result is the wire
//! form, [`WorkloadConfig`], with every default filled in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use ward_proto::{
    FileKind, Limits, PreopenDir, SocketProtocol, StdioMode, WorkloadConfig, WorkloadSocket,
};

/// Largest `Ward.toml` accepted, in bytes.
pub const MAX_CONFIG_LEN: u64 = 1 << 20;

/// Why a `Ward.toml` was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is too large to be a config.
    #[error("{path} is {len} bytes; a Ward.toml may be at most {max} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// TOML syntax, an unknown key, or a wrong type.
    #[error("{path}: line {line}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WardToml {
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// The Steward that certifies `prot = "tls"` sockets: `https://host:port`.
    steward: Option<Spanned<String>>,
    /// The Steward's CA certificate (PEM or DER), relative to this file.
    steward_ca: Option<Spanned<String>>,
    files: Option<Vec<Spanned<FileEntry>>>,
    #[serde(default)]
    preopens: Vec<Spanned<PreopenEntry>>,
    limits: Option<Spanned<LimitsEntry>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum FileEntryKind {
    Stdin,
    Stdout,
    Stderr,
    Null,
    Listen,
    Connect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    kind: FileEntryKind,
    name: Option<String>,
    prot: Option<String>,
    addr: Option<String>,
    host: Option<String>,
    port: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreopenEntry {
    host: String,
    guest: String,
    #[serde(default)]
    writable: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsEntry {
    memory: Option<Spanned<SizeOrText>>,
    wall_time: Option<Spanned<String>>,
    fuel: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeOrText {
    Bytes(u64),
    Text(String),
}

/// Reads and validates a `Ward.toml`. Relative preopen paths are resolved against the
/// file's directory, and each must exist and be a directory.
pub fn load(path: &Path) -> Result<WorkloadConfig, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read_err)?.len();
    if len > MAX_CONFIG_LEN {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
            len,
            max: MAX_CONFIG_LEN,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|(line, message)| ConfigError::Invalid {
        path: path.to_owned(),
        line,
        message,
    })
}

/// Parses `Ward.toml` text. `base` is the directory relative preopen paths start from.
/// On error returns the 1-based line and a message.
pub fn parse(text: &str, base: &Path) -> Result<WorkloadConfig, (usize, String)> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let raw: WardToml = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(s.start)).unwrap_or(1);
        (line, e.message().to_string())
    })?;

    let mut cfg = WorkloadConfig {
        args: raw.args,
        env: raw.env.into_iter().collect(),
        ..WorkloadConfig::default()
    };
    for (k, _) in &cfg.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err((1, format!("invalid environment variable name {k:?}")));
        }
    }

    if let Some(files) = raw.files {
        // When [[files]] is given, it is the whole truth: stdio not listed is null.
        cfg.stdin = StdioMode::Null;
        cfg.stdout = StdioMode::Null;
        cfg.stderr = StdioMode::Null;
        for (index, entry) in files.into_iter().enumerate() {
            let line = line_of(entry.span().start);
            let entry = entry.into_inner();
            file_entry(&mut cfg, index, entry).map_err(|m| (line, m))?;
        }
    }

    for entry in raw.preopens {
        let line = line_of(entry.span().start);
        let entry = entry.into_inner();
        cfg.preopens
            .push(preopen_entry(entry, base).map_err(|m| (line, m))?);
    }
    check_unique_names(&cfg).map_err(|m| (1, m))?;
    steward_entry(&mut cfg, raw.steward, raw.steward_ca, base, &line_of)?;

    let (limits_line, limits) = match raw.limits {
        Some(l) => (line_of(l.span().start), l.into_inner()),
        None => (1, LimitsEntry::default()),
    };
    cfg.limits = Limits {
        memory_bytes: match limits.memory {
            None => ward_proto::config::DEFAULT_MEMORY_BYTES,
            Some(m) => {
                let line = line_of(m.span().start);
                match m.into_inner() {
                    SizeOrText::Bytes(b) => b,
                    SizeOrText::Text(t) => {
                        parse_size(&t).map_err(|e| (line, format!("[limits] memory: {e}")))?
                    }
                }
            }
        },
        wall_time_ms: match limits.wall_time {
            None => None,
            Some(t) => {
                let line = line_of(t.span().start);
                Some(
                    parse_duration_ms(t.get_ref())
                        .map_err(|e| (line, format!("[limits] wall_time: {e}")))?,
                )
            }
        },
        fuel: limits.fuel,
    };
    if cfg.limits.memory_bytes < 64 << 10 {
        return Err((
            limits_line,
            "limits.memory must be at least 64KiB (one Wasm page)".into(),
        ));
    }
    Ok(cfg)
}

fn file_entry(cfg: &mut WorkloadConfig, index: usize, e: FileEntry) -> Result<(), String> {
    let socket_only = |field: &str, present: bool| {
        if present {
            Err(format!(
                "`{field}` only applies to listen and connect files"
            ))
        } else {
            Ok(())
        }
    };
    match e.kind {
        FileEntryKind::Stdin | FileEntryKind::Stdout | FileEntryKind::Stderr => {
            socket_only("prot", e.prot.is_some())?;
            socket_only("port", e.port.is_some())?;
            socket_only("addr", e.addr.is_some())?;
            socket_only("host", e.host.is_some())?;
            let slot = match e.kind {
                FileEntryKind::Stdin => &mut cfg.stdin,
                FileEntryKind::Stdout => &mut cfg.stdout,
                _ => &mut cfg.stderr,
            };
            *slot = StdioMode::Forward;
        }
        FileEntryKind::Null => {
            if index > 2 {
                return Err(
                    "kind = \"null\" is only meaningful for fds 0-2 (the first three files)".into(),
                );
            }
        }
        FileEntryKind::Listen | FileEntryKind::Connect => {
            let name = e
                .name
                .ok_or_else(|| "a listen/connect file needs a `name`".to_string())?;
            if name.is_empty() || name.contains(':') || name.contains('\0') {
                return Err(format!("invalid file name {name:?} (no ':' allowed)"));
            }
            let prot = match e.prot.as_deref().unwrap_or("tcp") {
                "tcp" => SocketProtocol::Tcp,
                "tls" => SocketProtocol::Tls,
                other => {
                    return Err(format!(
                        "unknown prot {other:?}; expected \"tcp\" or \"tls\""
                    ))
                }
            };
            let port = e
                .port
                .ok_or_else(|| format!("file {name:?} needs a `port`"))?;
            let (kind, host) = if e.kind == FileEntryKind::Listen {
                socket_only("host (use addr for listen)", e.host.is_some())?;
                (
                    FileKind::Listen,
                    e.addr.unwrap_or_else(|| "127.0.0.1".to_string()),
                )
            } else {
                socket_only("addr (use host for connect)", e.addr.is_some())?;
                let host = e
                    .host
                    .ok_or_else(|| format!("connect file {name:?} needs a `host`"))?;
                if port == 0 {
                    return Err(format!("connect file {name:?} needs a non-zero port"));
                }
                (FileKind::Connect, host)
            };
            cfg.sockets.push(WorkloadSocket {
                kind,
                name,
                prot,
                host,
                port,
            });
        }
    }
    Ok(())
}

/// `steward` + `steward_ca`: both or neither; required by `prot = "tls"` connect sockets.
fn steward_entry(
    cfg: &mut WorkloadConfig,
    url: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
    base: &Path,
    line_of: &dyn Fn(usize) -> usize,
) -> Result<(), (usize, String)> {
    // Without a Steward, TLS listen sockets serve a self-signed RA-TLS certificate;
    // TLS connect sockets have no roots to verify their server against.
    let tls_connect = cfg
        .sockets
        .iter()
        .find(|s| s.prot == SocketProtocol::Tls && s.kind == FileKind::Connect)
        .map(|s| s.name.clone());
    match (url, ca) {
        (None, None) => match tls_connect {
            Some(name) => Err((
                1,
                format!(
                    "file {name:?} connects with prot = \"tls\": set `steward = \"https://...\"` and `steward_ca` (the Steward's CA certificate, from `ward steward ca`): the server is verified against it and the Keep presents its Steward certificate"
                ),
            )),
            None => Ok(()),
        },
        (Some(u), None) => Err((
            line_of(u.span().start),
            "`steward` needs `steward_ca`: the Steward's CA certificate (PEM), from `ward steward ca`".into(),
        )),
        (None, Some(c)) => Err((line_of(c.span().start), "`steward_ca` without `steward`".into())),
        (Some(u), Some(c)) => {
            let (url_line, ca_line) = (line_of(u.span().start), line_of(c.span().start));
            let url = u.into_inner();
            steward_authority(&url).map_err(|m| (url_line, m))?;
            let path = base.join(c.into_inner());
            let bytes = std::fs::read(&path)
                .map_err(|e| (ca_line, format!("steward_ca {}: {e}", path.display())))?;
            let ca_der = pem_or_der_certificate(&bytes).ok_or_else(|| {
                (
                    ca_line,
                    format!("steward_ca {} is not a certificate (PEM or DER)", path.display()),
                )
            })?;
            cfg.steward = Some(ward_proto::StewardRef { url, ca_der });
            Ok(())
        }
    }
}

use ward_proto::config::steward_authority;

/// The DER of a certificate given as PEM (the first CERTIFICATE block) or DER.
fn pem_or_der_certificate(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.first() == Some(&0x30) {
        return Some(bytes.to_vec());
    }
    let text = std::str::from_utf8(bytes).ok()?;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    let start = text.find(BEGIN)? + BEGIN.len();
    let end = start + text[start..].find("-----END CERTIFICATE-----")?;
    let b64: Vec<u8> = text[start..end]
        .bytes()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let b64 = b64
        .strip_suffix(b"==")
        .or_else(|| b64.strip_suffix(b"="))
        .unwrap_or(&b64);
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(b64.len() * 3 / 4);
    for chunk in b64.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c)? << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    (out.first() == Some(&0x30)).then_some(out)
}

fn preopen_entry(e: PreopenEntry, base: &Path) -> Result<PreopenDir, String> {
    if !e.guest.starts_with('/') || e.guest.contains(':') || e.guest.contains('\0') {
        return Err(format!(
            "preopen guest path {:?} must be absolute and contain no ':'",
            e.guest
        ));
    }
    let host = base.join(&e.host);
    let meta = std::fs::metadata(&host)
        .map_err(|err| format!("preopened dir {} does not exist: {err}", host.display()))?;
    if !meta.is_dir() {
        return Err(format!(
            "preopened path {} is not a directory",
            host.display()
        ));
    }
    let host = std::fs::canonicalize(&host)
        .map_err(|err| format!("cannot resolve {}: {err}", host.display()))?;
    Ok(PreopenDir {
        host: host
            .to_str()
            .ok_or_else(|| format!("preopen path {} is not UTF-8", host.display()))?
            .to_string(),
        guest: e.guest,
        writable: e.writable,
    })
}

fn check_unique_names(cfg: &WorkloadConfig) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for name in cfg
        .preopens
        .iter()
        .map(|p| &p.guest)
        .chain(cfg.sockets.iter().map(|s| &s.name))
    {
        if !seen.insert(name) {
            return Err(format!("{name:?} is used twice in [[files]]/[[preopens]]"));
        }
    }
    Ok(())
}

/// Parses a size such as `64MiB`, `1GiB`, `4096` or `512KiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {text:?}; write e.g. \"64MiB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" | "k" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?}; use KiB, MiB or GiB")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Parses a duration such as `30s`, `500ms`, `2m` or `1h` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {text:?}; write e.g. \"30s\""))?;
    let mult = match unit.trim() {
        "ms" => 1,
        "s" | "" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        other => {
            return Err(format!(
                "unknown duration unit {other:?}; use ms, s, m or h"
            ))
        }
    };
    let ms = n
        .checked_mul(mult)
        .ok_or_else(|| format!("duration {text:?} is too large"))?;
    if ms == 0 {
        return Err("a wall_time of zero would stop the workload at once".into());
    }
    Ok(ms)
}

/// Formats a byte count for people: `64 MiB`, `1.5 GiB`, `512 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v.fract() == 0.0 {
        format!("{} {}", v as u64, UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A commented `Ward.toml` template, written by `ward config init`.
pub const TEMPLATE: &str = r#"# Ward.toml: how Ward runs your workload inside a Keep.
# Every key is optional. Unknown keys are an error.

# Arguments passed to the workload after argv[0].
args = []

# Environment variables the workload sees (nothing is inherited from the host).
[env]
# GREETING = "hello"

# Standard streams and sockets. If [[files]] is present it is complete: a standard
# stream that is not listed reads as empty / writes to nowhere. Without [[files]],
# stdin, stdout and stderr are all relayed.
[[files]]
kind = "stdin"      # stdin | stdout | stderr | null | listen | connect

[[files]]
kind = "stdout"

[[files]]
kind = "stderr"

# A listening TCP socket, preopened for the workload (after the preopened dirs).
# The workload finds it through FD_NAMES / FD_COUNT in its environment.
# [[files]]
# kind = "listen"
# name = "ingest"
# prot = "tcp"      # "tls": TLS terminated in the Keep, certificate from the Steward
# addr = "127.0.0.1"
# port = 8080       # 0 picks a free port; Ward prints it

# The Steward (`ward steward serve`) that certifies prot = "tls" sockets, and its CA
# certificate (from `ward steward ca`, relative to this file). Needed only for tls.
# steward = "https://127.0.0.1:8444"
# steward_ca = "steward-ca.pem"

# A host directory the workload can use (relative to this file).
# [[preopens]]
# host = "./data"
# guest = "/data"
# writable = true

[limits]
memory = "512MiB"   # maximum linear memory
# wall_time = "30s" # stop the workload after this long
# fuel = 1000000000 # stop after roughly this many Wasm instructions
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_here(text: &str) -> Result<WorkloadConfig, (usize, String)> {
        parse(text, Path::new("."))
    }

    #[test]
    fn template_parses() {
        let cfg = parse_here(TEMPLATE).unwrap();
        assert_eq!(cfg.stdin, StdioMode::Forward);
        assert_eq!(cfg.limits.memory_bytes, 512 << 20);
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse_here("").unwrap(), WorkloadConfig::default());
    }

    #[test]
    fn unknown_key_names_its_line() {
        let (line, msg) = parse_here("args = []\n\n[limits]\nmemroy = \"1MiB\"\n").unwrap_err();
        assert_eq!(line, 4, "{msg}");
        assert!(msg.contains("memroy"), "{msg}");
    }

    #[test]
    fn syntax_error_names_its_line() {
        let (line, _) = parse_here("args = [\"a\"]\nenv = \n").unwrap_err();
        assert_eq!(line, 2);
    }

    #[test]
    fn tls_connect_needs_a_steward_tls_listen_does_not() {
        // Without a Steward a TLS listen socket gets a self-signed RA-TLS certificate.
        let t = "[[files]]\nkind = \"stdin\"\n[[files]]\nkind = \"listen\"\nname = \"x\"\nprot = \"tls\"\nport = 1\n";
        let cfg = parse_here(t).unwrap();
        assert!(cfg.steward.is_none());
        assert_eq!(cfg.sockets[0].prot, SocketProtocol::Tls);
        let t =
            "[[files]]\nkind = \"connect\"\nname = \"x\"\nprot = \"tls\"\nhost = \"a\"\nport = 1\n";
        // A TLS client needs the Steward too: its CA is the roots, its
        // certificate the client certificate.
        let (line, msg) = parse_here(t).unwrap_err();
        assert_eq!(line, 1);
        assert!(msg.contains("steward"), "{msg}");
    }

    #[test]
    fn tls_with_a_steward() {
        let dir = tempfile::tempdir().unwrap();
        // A DER "certificate" is taken as it is; PEM is decoded.
        std::fs::write(
            dir.path().join("ca.pem"),
            "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let t = "steward = \"https://127.0.0.1:8444\"\nsteward_ca = \"ca.pem\"\n[[files]]\nkind = \"listen\"\nname = \"x\"\nprot = \"tls\"\nport = 0\n";
        let cfg = parse(t, dir.path()).unwrap();
        let s = cfg.steward.unwrap();
        assert_eq!(s.url, "https://127.0.0.1:8444");
        assert_eq!(s.ca_der, vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        assert_eq!(cfg.sockets[0].prot, SocketProtocol::Tls);
        let (line, msg) = parse("steward = \"https://x:1\"\n", dir.path()).unwrap_err();
        assert_eq!(line, 1);
        assert!(msg.contains("steward_ca"), "{msg}");
        let bad = "steward = \"http://x\"\nsteward_ca = \"ca.pem\"\n";
        assert!(parse(bad, dir.path()).unwrap_err().1.contains("https://"));
    }

    #[test]
    fn files_make_unlisted_stdio_null() {
        let cfg = parse_here("[[files]]\nkind = \"stdout\"\n").unwrap();
        assert_eq!(cfg.stdin, StdioMode::Null);
        assert_eq!(cfg.stdout, StdioMode::Forward);
        assert_eq!(cfg.stderr, StdioMode::Null);
    }

    #[test]
    fn listen_socket_defaults() {
        let cfg =
            parse_here("[[files]]\nkind = \"listen\"\nname = \"ingest\"\nport = 0\n").unwrap();
        assert_eq!(cfg.sockets[0].host, "127.0.0.1");
        assert_eq!(cfg.sockets[0].kind, FileKind::Listen);
    }

    #[test]
    fn missing_preopen_is_an_error() {
        let t = "[[preopens]]\nhost = \"./definitely-not-here\"\nguest = \"/data\"\n";
        let (line, msg) = parse_here(t).unwrap_err();
        assert_eq!(line, 1);
        assert!(msg.contains("does not exist"), "{msg}");
    }

    #[test]
    fn preopen_resolved_relative_to_base() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let cfg = parse(
            "[[preopens]]\nhost = \"data\"\nguest = \"/data\"\nwritable = true\n",
            dir.path(),
        )
        .unwrap();
        assert!(cfg.preopens[0].host.ends_with("/data"));
        assert!(cfg.preopens[0].writable);
    }

    #[test]
    fn duplicate_names_rejected() {
        let t = "[[files]]\nkind = \"listen\"\nname = \"a\"\nport = 0\n[[files]]\nkind = \"listen\"\nname = \"a\"\nport = 0\n";
        assert!(parse_here(t).unwrap_err().1.contains("twice"));
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
        assert_eq!(parse_duration_ms("30s").unwrap(), 30_000);
        assert_eq!(parse_duration_ms("250ms").unwrap(), 250);
        assert!(parse_duration_ms("0s").is_err());
        assert!(parse_duration_ms("soon").is_err());
    }

    #[test]
    fn memory_limit_line_reported() {
        let (line, msg) = parse_here("\n[limits]\nmemory = \"lots\"\n").unwrap_err();
        assert_eq!(line, 3, "{msg}");
    }

    #[test]
    fn null_only_for_stdio_slots() {
        let t = "[[files]]\nkind=\"stdin\"\n[[files]]\nkind=\"stdout\"\n[[files]]\nkind=\"stderr\"\n[[files]]\nkind=\"null\"\n";
        let (line, _) = parse_here(t).unwrap_err();
        assert_eq!(line, 7);
    }
}
