//! Helpers for end-to-end tests that drive the `ward` binary.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `ward` with the given arguments, stdin from `stdin`, killed after `limit`.
pub fn ward_with(args: &[&str], stdin: &[u8], limit: Duration) -> Output {
    let mut child = spawn(args);
    {
        use std::io::Write;
        let mut sin = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        std::thread::spawn(move || {
            let _ = sin.write_all(&data);
        });
    }
    wait_with_limit(child, limit)
}

/// `ward` with empty stdin and a 60 s limit.
pub fn ward(args: &[&str]) -> Output {
    ward_with(args, b"", Duration::from_secs(60))
}

/// Starts `ward` with piped stdio.
pub fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ward")
}

/// Waits for `child`, killing it (and failing) after `limit`.
pub fn wait_with_limit(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("ward did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// Writes `text` to a fresh temp file named `name`; returns (dir guard, path).
pub fn temp_file(name: &str, text: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// A built example, or `None` after printing why it is skipped. With
/// `WARD_REQUIRE_EXAMPLES=1` (CI) a missing example is a failure instead.
pub fn example(name: &str) -> Option<PathBuf> {
    let path = root().join("examples").join(name);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var_os("WARD_REQUIRE_EXAMPLES").is_some() {
        panic!("{} is missing; run examples/build.sh", path.display());
    }
    eprintln!(
        "skipping: {} is not built (run examples/build.sh; needs clang-14 and wasi-libc)",
        path.display()
    );
    None
}

/// Stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a clean failure: the given exit code, one `ward:` line that contains
/// `needle`, and no panic.
pub fn assert_clean_failure(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("ward:") && !l.to_lowercase().contains("warning"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one ward: line, got: {err}");
    assert!(lines[0].contains(needle), "expected {needle:?} in: {err}");
}

/// Reads `child`'s stderr until ward's "NAME listening on ADDR" notice and returns
/// ADDR; the rest of stderr stays readable. Kills the child and fails if it exits
/// first. (Byte by byte, so nothing after the notice is consumed.)
pub fn listening_addr(child: &mut Child, name: &str) -> String {
    let mut err = child.stderr.take().unwrap();
    let needle = format!("{name} listening on ");
    let mut seen = Vec::new();
    let addr = loop {
        let mut b = [0u8; 1];
        if err.read(&mut b).unwrap() == 0 {
            let _ = child.kill();
            panic!(
                "ward exited before listening: {}",
                String::from_utf8_lossy(&seen)
            );
        }
        seen.push(b[0]);
        let text = String::from_utf8_lossy(&seen);
        if let Some(line) = text.lines().find(|l| l.contains(&needle)) {
            if text.ends_with('\n') {
                break line.rsplit(' ').next().unwrap().to_string();
            }
        }
    };
    child.stderr = Some(err);
    addr
}
