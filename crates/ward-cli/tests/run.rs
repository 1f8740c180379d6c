//! `ward run` end to end: the process Keep, its outputs, exit codes and every
//! bad-input case the issue names.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

const HELLO_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from wat\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 15))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

#[test]
fn wat_hello_runs() {
    let (_d, app) = temp_file("hello.wat", HELLO_WAT.as_bytes());
    let o = ward(&["run", app.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(o.stdout, b"hello from wat\n");
}

#[test]
fn proc_exit_code_becomes_wards() {
    let (_d, app) = temp_file(
        "exit.wat",
        br#"(module (import "wasi_snapshot_preview1" "proc_exit" (func $e (param i32)))
            (memory (export "memory") 1) (func (export "_start") (call $e (i32.const 7))))"#,
    );
    let o = ward(&["run", app.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
}

#[test]
fn trap_has_its_own_code_and_names_the_trap() {
    let (_d, app) = temp_file(
        "trap.wat",
        br#"(module (memory (export "memory") 1) (func (export "_start") (drop (i32.div_u (i32.const 1) (i32.const 0)))))"#,
    );
    let o = ward(&["run", app.to_str().unwrap()]);
    assert_clean_failure(&o, 134, "integer divide by zero");
}

#[test]
fn not_wasm_is_a_one_line_error() {
    let (_d, app) = temp_file("junk.wasm", b"\x7fELF this is not wasm at all");
    assert_clean_failure(
        &ward(&["run", app.to_str().unwrap()]),
        125,
        "invalid Wasm module",
    );
}

#[test]
fn truncated_module_is_a_one_line_error() {
    // A valid module cut in the middle of its code section.
    let wasm = b"\0asm\x01\x00\x00\x00\x01\x04\x01\x60\x00\x00\x03\x02\x01\x00\x0a\x09\x01\x07\x00";
    let (_d, app) = temp_file("cut.wasm", wasm);
    assert_clean_failure(
        &ward(&["run", app.to_str().unwrap()]),
        125,
        "invalid Wasm module",
    );
}

#[test]
fn empty_file_is_a_one_line_error() {
    let (_d, app) = temp_file("empty.wasm", b"");
    assert_clean_failure(&ward(&["run", app.to_str().unwrap()]), 125, "empty");
}

#[test]
fn missing_file_is_a_one_line_error() {
    assert_clean_failure(
        &ward(&["run", "/definitely/not/here.wasm"]),
        125,
        "cannot read",
    );
}

#[test]
fn unknown_import_is_a_one_line_error() {
    let (_d, app) = temp_file(
        "import.wat",
        br#"(module (import "env" "open_the_pod_bay_doors" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
    );
    assert_clean_failure(
        &ward(&["run", app.to_str().unwrap()]),
        125,
        "open_the_pod_bay_doors",
    );
}

#[test]
fn missing_preopen_dir_is_a_one_line_error() {
    let (d, app) = temp_file("hello.wat", HELLO_WAT.as_bytes());
    let cfg = d.path().join("Ward.toml");
    std::fs::write(&cfg, "[[preopens]]\nhost = \"./nope\"\nguest = \"/data\"\n").unwrap();
    assert_clean_failure(
        &ward(&[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            app.to_str().unwrap(),
        ]),
        125,
        "line 1: preopened dir",
    );
}

#[test]
fn malformed_config_names_the_line() {
    let (d, app) = temp_file("hello.wat", HELLO_WAT.as_bytes());
    let cfg = d.path().join("Ward.toml");
    std::fs::write(
        &cfg,
        "args = [\"a\"]\n\n[limits]\nmemory = \"64MiB\"\nwall_tme = \"1s\"\n",
    )
    .unwrap();
    assert_clean_failure(
        &ward(&[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            app.to_str().unwrap(),
        ]),
        125,
        "line 5: unknown field `wall_tme`",
    );
}

#[test]
fn memory_limit_is_reported() {
    let (d, app) = temp_file(
        "grow.wat",
        br#"(module (memory (export "memory") 1)
          (func (export "_start")
            (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
            unreachable))"#,
    );
    let cfg = d.path().join("Ward.toml");
    std::fs::write(&cfg, "[limits]\nmemory = \"4MiB\"\n").unwrap();
    let o = ward(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        app.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(134), "{err}");
    assert!(err.contains("over its limit of 4 MiB"), "{err}");
    assert!(err.contains("after hitting its memory limit"), "{err}");
}

#[test]
fn infinite_loop_stops_at_deadline() {
    let (d, app) = temp_file(
        "spin.wat",
        br#"(module (memory (export "memory") 1) (func (export "_start") (loop br 0)))"#,
    );
    let cfg = d.path().join("Ward.toml");
    std::fs::write(&cfg, "[limits]\nwall_time = \"300ms\"\n").unwrap();
    let o = ward(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        app.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, 124, "wall-time limit of 300ms exceeded");
}

#[test]
fn stdin_is_relayed() {
    // cat: copy stdin to stdout until EOF.
    let (_d, app) = temp_file(
        "cat.wat",
        br#"(module
          (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 1024))
            (loop $l
              (i32.store (i32.const 4) (i32.const 4096))
              (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
              (if (i32.load (i32.const 8)) (then
                (i32.store (i32.const 4) (i32.load (i32.const 8)))
                (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))
                (br $l))))))"#,
    );
    let input: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let o = ward_with(
        &["run", app.to_str().unwrap()],
        &input,
        Duration::from_secs(60),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(o.stdout.len(), input.len());
    assert!(o.stdout == input, "stdin was not relayed byte for byte");
}

#[test]
fn args_after_double_dash_reach_the_workload() {
    // Exits with argc.
    let (_d, app) = temp_file(
        "argc.wat",
        br#"(module
          (import "wasi_snapshot_preview1" "args_sizes_get" (func $a (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $e (param i32)))
          (memory (export "memory") 1)
          (func (export "_start") (drop (call $a (i32.const 0) (i32.const 4))) (call $e (i32.load (i32.const 0)))))"#,
    );
    let o = ward(&["run", app.to_str().unwrap(), "--", "x", "y", "z"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
}

#[test]
fn sandbox_confines_the_filesystem() {
    // The workload may only see its preopens: a path outside is not reachable even
    // through `..`.
    let (d, app) = temp_file(
        "escape.wat",
        br#"(module
          (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $e (param i32)))
          (memory (export "memory") 1)
          (data (i32.const 100) "../../../../etc/passwd")
          (func (export "_start")
            (call $e (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 22) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200)))))"#,
    );
    std::fs::create_dir(d.path().join("data")).unwrap();
    let cfg = d.path().join("Ward.toml");
    std::fs::write(&cfg, "[[preopens]]\nhost = \"data\"\nguest = \"/data\"\n").unwrap();
    let o = ward(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        app.to_str().unwrap(),
    ]);
    // ENOTCAPABLE (76) or EPERM (63): anything but success.
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn config_init_writes_a_template_that_parses() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("Ward.toml");
    let o = ward(&["config", "init", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = ward(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // And refuses to clobber it.
    let o = ward(&["config", "init", path.to_str().unwrap()]);
    assert_clean_failure(&o, 125, "--force");
}

#[test]
fn c_hello_example_prints_its_greeting() {
    let Some(app) = example("hello.wasm") else {
        return;
    };
    let o = ward(&["run", app.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Hello"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn c_echo_example_answers_over_tcp() {
    let Some(app) = example("echo.wasm") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("Ward.toml");
    // Port 0: the Keep picks a free port and ward prints it.
    std::fs::write(
        &cfg,
        "args = [\"1\"]\n[[files]]\nkind = \"stderr\"\n[[files]]\nkind = \"listen\"\nname = \"ingest\"\nprot = \"tcp\"\naddr = \"127.0.0.1\"\nport = 0\n",
    )
    .unwrap();
    let mut child = spawn(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        app.to_str().unwrap(),
    ]);
    let addr = listening_addr(&mut child, "ingest");
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"ping over tcp\n").unwrap();
    let mut buf = [0u8; 14];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping over tcp\n");
    drop(s);
    let o = wait_with_limit(child, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn c_filetool_example_round_trips_through_a_preopen() {
    let Some(app) = example("filetool.wasm") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("data")).unwrap();
    let cfg = d.path().join("Ward.toml");
    std::fs::write(
        &cfg,
        "args = [\"note.txt\"]\n[[preopens]]\nhost = \"data\"\nguest = \"/data\"\nwritable = true\n",
    )
    .unwrap();
    let o = ward_with(
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            app.to_str().unwrap(),
        ],
        b"kept safe\n",
        Duration::from_secs(60),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(o.stdout, b"kept safe\n");
    assert_eq!(
        std::fs::read(d.path().join("data/note.txt")).unwrap(),
        b"kept safe\n"
    );
}
