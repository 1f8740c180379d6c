//! The README's "Attested TLS services (Steward)" demo, end to end: the three `ward`
//! commands are read from README.md and run as written, except that the Steward and
//! the host listen on 127.0.0.1:0, the example config is copied into a temporary
//! directory with the Steward's real address and port 0 for the echo socket, and the
//! deploy gets `-- N` (the echo example then serves N connections and exits, so every
//! process stops by itself). Every process is killed when its test ends.

mod common;
#[path = "common/steward.rs"]
mod steward_server;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const SECTION: &str = "## Attested TLS services (Steward)";

/// The `ward …` lines of the first `sh` block of the README's demo section.
fn readme_commands() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let section = readme
        .split(SECTION)
        .nth(1)
        .unwrap_or_else(|| panic!("README.md has no {SECTION:?} section"));
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block in the demo section");
    block
        .lines()
        .map(|l| l.split(" #").next().unwrap().trim())
        .filter(|l| l.starts_with("ward "))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// A child process whose stderr lines are collected; killed on drop.
struct Proc {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// Starts `ward ARGS` in `dir` and reads its stderr until a line contains `needle`;
/// returns the process and what follows the needle on that line.
fn start(args: &[String], dir: &Path, needle: &str) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .current_dir(dir)
        // `ward host serve` keeps its identity under $XDG_STATE_HOME/ward.
        .env("XDG_STATE_HOME", dir.join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut proc = Proc {
        child,
        log: log.clone(),
    };
    let rest = loop {
        let Some(Ok(line)) = lines.next() else {
            let status = proc.child.wait();
            panic!(
                "ward {} ended ({status:?}) before saying {needle:?}:\n{}",
                args.join(" "),
                proc.log()
            );
        };
        log.lock().unwrap().push(line.clone());
        if let Some(rest) = line.split(needle).nth(1) {
            break rest.trim().to_string();
        }
    };
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            log.lock().unwrap().push(line);
        }
    });
    (proc, rest)
}

/// Replaces `from` by `to` in `args`, once at least.
fn substitute(args: &mut [String], from: &str, to: &str) {
    let mut n = 0;
    for a in args.iter_mut() {
        if a.contains(from) {
            *a = a.replace(from, to);
            n += 1;
        }
    }
    assert!(n > 0, "{from:?} not in the README command {args:?}");
}

/// The README's demo, running: the Steward, the host, and a deployed TLS echo Keep
/// that serves `connections` connections.
struct Demo {
    dir: tempfile::TempDir,
    steward: Proc,
    host: Proc,
    deploy: Option<Proc>,
    /// Where the Keep's TLS echo listens.
    echo: SocketAddr,
    wasm: Vec<u8>,
}

impl Demo {
    fn start(connections: usize) -> Option<Demo> {
        let echo = common::example("echo.wasm")?;
        let cmds = readme_commands();
        assert_eq!(cmds.len(), 3, "three ward commands in the README: {cmds:?}");
        let dir = tempfile::tempdir().unwrap();
        let examples = dir.path().join("examples");
        std::fs::create_dir(&examples).unwrap();
        let wasm = std::fs::read(&echo).unwrap();
        std::fs::write(examples.join("echo.wasm"), &wasm).unwrap();
        let policy = "tls-echo-steward-policy.toml";
        std::fs::copy(
            common::root().join("examples").join(policy),
            examples.join(policy),
        )
        .unwrap();

        let mut steward_cmd = cmds[0][1..].to_vec();
        assert_eq!(steward_cmd[..2], ["steward", "serve"]);
        substitute(&mut steward_cmd, "127.0.0.1:8444", "127.0.0.1:0");
        let (steward, url) = start(&steward_cmd, dir.path(), "listening on https://");
        let steward_addr = url.split('/').next().unwrap().to_string();

        // The example config, pointed at this Steward, echo on a free port.
        let cfg = std::fs::read_to_string(common::root().join("examples/tls-echo.toml")).unwrap();
        assert!(cfg.contains("https://127.0.0.1:8444") && cfg.contains("port = 8445"));
        let cfg = cfg
            .replace("https://127.0.0.1:8444", &format!("https://{steward_addr}"))
            .replace("port = 8445", "port = 0");
        std::fs::write(examples.join("tls-echo.toml"), cfg).unwrap();

        let mut host_cmd = cmds[1][1..].to_vec();
        assert_eq!(host_cmd[..2], ["host", "serve"]);
        substitute(&mut host_cmd, "127.0.0.1:8443", "127.0.0.1:0");
        let (host, rest) = start(&host_cmd, dir.path(), "listening on https://");
        let host_addr = rest.split_whitespace().next().unwrap().to_string();

        let mut deploy_cmd = cmds[2][1..].to_vec();
        assert_eq!(deploy_cmd[0], "deploy");
        substitute(
            &mut deploy_cmd,
            "https://127.0.0.1:8443",
            &format!("https://{host_addr}"),
        );
        deploy_cmd.extend(["--".into(), connections.to_string()]);
        let (deploy, addr) = start(&deploy_cmd, dir.path(), "ingest listening on ");
        Some(Demo {
            dir,
            steward,
            host,
            deploy: Some(deploy),
            echo: addr.parse().unwrap(),
            wasm,
        })
    }

    /// The Steward's CA certificate, from the CA directory the README's command made.
    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("steward-ca/ca-cert.pem")
    }

    fn ca_der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(self.ca_path()).unwrap()
    }

    /// Waits for `ward deploy` to end; its exit code and everything it logged.
    fn finish(mut self) -> (Option<i32>, String) {
        let mut deploy = self.deploy.take().unwrap();
        let status = deploy.child.wait().unwrap();
        // (The log thread may still be adding the last lines: for diagnostics only.)
        let log = deploy.log();
        let all = format!(
            "{log}\n--- steward:\n{}\n--- host:\n{}",
            self.steward.log(),
            self.host.log()
        );
        (status.code(), all)
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_connect(addr: SocketAddr, roots: &[CertificateDer<'static>]) -> Tls {
    let conn = rustls::ClientConnection::new(
        steward_server::client_trusting(roots),
        ServerName::try_from("127.0.0.1").unwrap(),
    )
    .unwrap();
    rustls::StreamOwned::new(conn, TcpStream::connect(addr).unwrap())
}

/// Sends `data` and reads it back, 4 KiB at a time (each chunk is echoed before the
/// next is written, so neither side's buffers fill up).
fn echo_round_trip(mut tls: Tls, data: &[u8]) -> (Tls, Vec<u8>) {
    let mut back = Vec::with_capacity(data.len());
    for chunk in data.chunks(4096) {
        tls.write_all(chunk).unwrap();
        let mut got = vec![0u8; chunk.len()];
        tls.read_exact(&mut got).unwrap();
        back.extend(got);
    }
    (tls, back)
}

fn close(mut tls: Tls) {
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// A fresh CA that has nothing to do with the Steward: (DER, PEM).
fn other_ca() -> (CertificateDer<'static>, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    (cert.der().clone(), cert.pem())
}

/// `openssl s_client` trusting only `ca_file`: the echoed line, or Err(what it said).
fn openssl_round_trip(addr: SocketAddr, ca_file: &Path, line: &str) -> Result<String, String> {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-CAfile"])
        .arg(ca_file)
        .args(["-verify_return_error", "-verify_ip", "127.0.0.1", "-quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A hang guard only (not a timed assertion): a stuck s_client is killed.
    let (done, watchdog) = std::sync::mpsc::channel::<()>();
    let pid = rustix::process::Pid::from_child(&child);
    let guard = std::thread::spawn(move || {
        if watchdog
            .recv_timeout(std::time::Duration::from_secs(120))
            .is_err()
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(line.as_bytes());
    let _ = stdin.flush();
    // Read until the echo is back (or s_client gave up and closed its stdout), then
    // stop it (it does not reliably quit at the end of a piped input).
    let mut echoed = String::new();
    let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut echoed);
    let _ = child.kill();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let status = child.wait().unwrap();
    let _ = done.send(());
    let _ = guard.join();
    drop(stdin);
    if echoed.is_empty() {
        Err(format!("{status}: {err}"))
    } else {
        Ok(echoed)
    }
}

/// `openssl s_client` trusting only `ca_file`, with no input: its stderr after it
/// failed (it must fail).
fn openssl_refused(addr: SocketAddr, ca_file: &Path) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-CAfile"])
        .arg(ca_file)
        .args([
            "-verify_return_error",
            "-verify_ip",
            "127.0.0.1",
            "-quiet",
            "-no_ign_eof",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "s_client accepted another CA: {err}");
    err
}

fn have_openssl() -> bool {
    Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The README demo: a client that trusts only the Steward's CA completes a round
/// trip with echo.wasm in a process Keep, and sees the attested claims (the
/// workload's digest) in the certificate; a client trusting another CA is refused.
/// The same with `openssl s_client` when openssl is installed.
#[test]
fn readme_demo_attested_tls_echo_trusting_only_the_steward_ca() {
    let openssl = have_openssl();
    if !openssl {
        eprintln!("skipping the openssl s_client part: no openssl on PATH");
    }
    let Some(demo) = Demo::start(if openssl { 4 } else { 2 }) else {
        return;
    };
    let ca = demo.ca_der();

    // 1. rustls, trusting only the Steward's CA.
    let tls = tls_connect(demo.echo, std::slice::from_ref(&ca));
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (tls, back) = echo_round_trip(tls, &data);
    assert!(back == data, "the echo differs");
    let chain = tls.conn.peer_certificates().unwrap();
    assert_eq!(chain.last().unwrap().as_ref(), ca.as_ref());
    let claims = ward_steward::IssuedClaims::from_cert_der(&chain[0])
        .unwrap()
        .expect("the Steward's claims extension");
    assert_eq!(
        (claims.kind.as_str(), claims.insecure_software),
        ("none", true)
    );
    use sha2::Digest;
    assert_eq!(claims.workload, sha2::Sha256::digest(&demo.wasm).to_vec());
    close(tls);

    // 2. A client that trusts another CA refuses the Keep's certificate.
    let mut tls = tls_connect(demo.echo, &[other_ca().0]);
    let err = tls.write_all(b"x").and_then(|_| tls.flush()).unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    drop(tls);

    // 3. openssl s_client, with the Steward's CA and then with another one.
    if openssl {
        let line = "hello from openssl s_client\n";
        let echoed = openssl_round_trip(demo.echo, &demo.ca_path(), line).unwrap();
        assert_eq!(echoed, line);
        let other = demo.dir.path().join("other-ca.pem");
        std::fs::write(&other, other_ca().1).unwrap();
        let refused = openssl_refused(demo.echo, &other);
        assert!(refused.contains("verify"), "{refused}");
    }

    let (code, log) = demo.finish();
    assert_eq!(code, Some(0), "{log}");
}

/// The TLS echo's traffic, as the host's network relays it, holds no plaintext: a
/// recording TCP relay (standing for the untrusted host between the client and the
/// Keep's socket) sees only ciphertext, in both directions, while the round trip
/// through it succeeds.
#[test]
fn the_host_side_of_the_tls_echo_carries_no_plaintext() {
    let Some(demo) = Demo::start(1) else {
        return;
    };
    let (relay, recorded) = recording_relay(demo.echo);
    let marker = b"PLAINTEXT-ONLY-THE-KEEP-MAY-SEE ";
    let data: Vec<u8> = marker.iter().copied().cycle().take(64 * 1024).collect();
    let tls = tls_connect(relay, &[demo.ca_der()]);
    let (tls, back) = echo_round_trip(tls, &data);
    assert!(back == data, "the echo differs");
    close(tls);
    let (code, log) = demo.finish();
    assert_eq!(code, Some(0), "{log}");

    let (to_keep, from_keep) = recorded.join().unwrap();
    // Both directions carried at least the data (plus TLS overhead)...
    assert!(to_keep.len() > data.len() && from_keep.len() > data.len());
    // ...and no piece of it in the clear (any 16 bytes of the marker).
    for bytes in [&to_keep, &from_keep] {
        assert!(!contains(bytes, &marker[..16]), "plaintext on the wire");
        assert!(!contains(bytes, &marker[16..]), "plaintext on the wire");
    }
    // The check itself finds plaintext where there is some.
    assert!(contains(&data, &marker[8..24]));
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A one-connection TCP relay to `to` on 127.0.0.1:0 that records both directions;
/// the handle yields (client → Keep, Keep → client) once both sides closed.
/// What a relay saw: (client → Keep, Keep → client).
type Recorded = std::thread::JoinHandle<(Vec<u8>, Vec<u8>)>;

fn recording_relay(to: SocketAddr) -> (SocketAddr, Recorded) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let keep = TcpStream::connect(to).unwrap();
        let pump = |mut from: TcpStream, mut to: TcpStream| {
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut buf = [0u8; 16384];
                loop {
                    match from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            seen.extend_from_slice(&buf[..n]);
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = to.shutdown(std::net::Shutdown::Write);
                seen
            })
        };
        let up = pump(client.try_clone().unwrap(), keep.try_clone().unwrap());
        let down = pump(keep, client);
        (up.join().unwrap(), down.join().unwrap())
    });
    (addr, handle)
}
