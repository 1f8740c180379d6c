//! Runtime behaviour on small WAT workloads: output, exit codes, traps, limits,
//! bad modules and WASI p1 sockets.

use std::io::{Read, Write};
use std::sync::Arc;

use ward_proto::{Limits, WorkloadConfig, WorkloadOutcome};
use ward_runtime::sockets::WorkloadSocketHandle;
use ward_runtime::stdio::{MemoryInput, MemoryOutput};
use ward_runtime::{Runtime, RuntimeError, RuntimeOptions, WorkloadIo};

const PRINT_HELLO: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello, keep\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 12))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

struct Run {
    outcome: WorkloadOutcome,
    denied: Option<u64>,
    stdout: Vec<u8>,
}

fn run_with(
    wat: &str,
    cfg: WorkloadConfig,
    stdin: &[u8],
    sockets: Vec<WorkloadSocketHandle>,
) -> Result<Run, RuntimeError> {
    let rt = Runtime::new(&cfg.limits, &RuntimeOptions::default())?;
    let out = MemoryOutput::default();
    let io = WorkloadIo {
        stdin: Some(Box::new(MemoryInput::new(stdin.to_vec()))),
        stdout: Some(Arc::new(out.clone())),
        stderr: Some(Arc::new(MemoryOutput::default())),
    };
    let prepared = rt.prepare("test.wasm", &cfg, io, sockets)?;
    let loaded = rt.load(wat.as_bytes())?;
    let report = rt.run(&loaded, prepared)?;
    Ok(Run {
        outcome: report.outcome,
        denied: report.memory_denied_at,
        stdout: out.contents(),
    })
}

fn run(wat: &str) -> Result<Run, RuntimeError> {
    run_with(wat, WorkloadConfig::default(), b"", Vec::new())
}

#[test]
fn fd_write_to_stdout_succeeds() {
    let r = run(r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello, keep\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 12))
    (call $exit (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#)
    .unwrap();
    assert_eq!(r.outcome, WorkloadOutcome::Exited(0));
}

#[test]
fn prints_and_exits_zero() {
    let r = run(PRINT_HELLO).unwrap();
    assert_eq!(r.outcome, WorkloadOutcome::Exited(0));
    assert_eq!(r.stdout, b"hello, keep\n");
}

#[test]
fn proc_exit_code_is_reported() {
    let r = run(r#"(module
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start") (call $exit (i32.const 42))))"#)
    .unwrap();
    assert_eq!(r.outcome, WorkloadOutcome::Exited(42));
    assert_eq!(r.outcome.exit_status(), 42);
}

#[test]
fn trap_is_named() {
    let r =
        run(r#"(module (memory (export "memory") 1) (func $boom (export "_start") unreachable))"#)
            .unwrap();
    match &r.outcome {
        WorkloadOutcome::Trapped { trap, .. } => assert!(trap.contains("unreachable"), "{trap}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_eq!(r.outcome.exit_status(), ward_proto::keep::EXIT_TRAP);
}

#[test]
fn infinite_loop_stops_at_deadline() {
    let cfg = WorkloadConfig {
        limits: Limits {
            wall_time_ms: Some(200),
            ..Limits::default()
        },
        ..WorkloadConfig::default()
    };
    let r = run_with(
        r#"(module (memory (export "memory") 1) (func (export "_start") (loop br 0)))"#,
        cfg,
        b"",
        vec![],
    )
    .unwrap();
    assert_eq!(
        r.outcome,
        WorkloadOutcome::DeadlineExceeded { limit_ms: 200 }
    );
}

#[test]
fn fuel_runs_out() {
    let cfg = WorkloadConfig {
        limits: Limits {
            fuel: Some(10_000),
            ..Limits::default()
        },
        ..WorkloadConfig::default()
    };
    let r = run_with(
        r#"(module (memory (export "memory") 1) (func (export "_start") (loop br 0)))"#,
        cfg,
        b"",
        vec![],
    )
    .unwrap();
    assert_eq!(r.outcome, WorkloadOutcome::OutOfFuel { fuel: 10_000 });
}

#[test]
fn memory_growth_past_limit_is_denied_and_reported() {
    // Grows one page at a time until memory.grow fails, then traps.
    let wat = r#"(module (memory (export "memory") 1)
      (func (export "_start")
        (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
        unreachable))"#;
    let cfg = WorkloadConfig {
        limits: Limits {
            memory_bytes: 1 << 20,
            ..Limits::default()
        },
        ..WorkloadConfig::default()
    };
    let r = run_with(wat, cfg, b"", vec![]).unwrap();
    assert!(
        matches!(r.outcome, WorkloadOutcome::Trapped { .. }),
        "{:?}",
        r.outcome
    );
    assert_eq!(r.denied, Some((1 << 20) + 65536));
}

#[test]
fn initial_memory_over_limit_is_an_error() {
    let cfg = WorkloadConfig {
        limits: Limits {
            memory_bytes: 1 << 20,
            ..Limits::default()
        },
        ..WorkloadConfig::default()
    };
    let err = run_with(
        r#"(module (memory (export "memory") 100) (func (export "_start")))"#,
        cfg,
        b"",
        vec![],
    )
    .err()
    .expect("must fail");
    assert!(err.to_string().contains("over its limit"), "{err}");
}

#[test]
fn unknown_import_is_a_link_error() {
    let err = run(r#"(module (import "env" "launch_missiles" (func)) (memory (export "memory") 1) (func (export "_start")))"#)
        .err()
        .expect("must fail");
    assert!(matches!(err, RuntimeError::Link(_)), "{err}");
    assert!(err.to_string().contains("launch_missiles"), "{err}");
}

#[test]
fn missing_start_is_a_link_error() {
    let err = run(r#"(module (memory (export "memory") 1))"#)
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("_start"), "{err}");
}

#[test]
fn not_wasm_and_truncated_are_invalid() {
    let rt = Runtime::new(&Limits::default(), &RuntimeOptions::default()).unwrap();
    for bytes in [
        &b"\x7fELF\x02\x01\x01\x00\xff\xfe"[..],
        b"\0asm\x01\x00",
        b"\0asm\x01\x00\x00\x00\x01\x05\x01\x60",
    ] {
        let err = rt.load(bytes).err().expect("must fail");
        assert!(matches!(err, RuntimeError::InvalidModule(_)), "{err}");
    }
    let wasm = wat::parse_str(PRINT_HELLO).unwrap();
    for cut in [9, wasm.len() / 2, wasm.len() - 1] {
        let err = rt
            .load(&wasm[..cut])
            .err()
            .expect("truncated module must fail");
        assert!(
            matches!(err, RuntimeError::InvalidModule(_)),
            "cut {cut}: {err}"
        );
    }
}

#[test]
fn stdin_reaches_the_workload() {
    // Reads up to 64 bytes of stdin and writes them to stdout.
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 64))
        (i32.store (i32.const 4) (i32.const 64))
        (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (i32.store (i32.const 4) (i32.load (i32.const 8)))
        (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))))"#;
    let r = run_with(wat, WorkloadConfig::default(), b"ping", vec![]).unwrap();
    assert_eq!(r.stdout, b"ping");
}

#[test]
fn env_and_args_reach_the_workload() {
    // environ_sizes_get → (count, bufsize); exit with count so the test can see it.
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "args_sizes_get" (func $args (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (drop (call $args (i32.const 0) (i32.const 4)))
        (drop (call $env (i32.const 8) (i32.const 12)))
        (call $exit (i32.add (i32.mul (i32.load (i32.const 0)) (i32.const 10)) (i32.load (i32.const 8))))))"#;
    let cfg = WorkloadConfig {
        args: vec!["a".into(), "b".into()],
        env: vec![("X".into(), "1".into())],
        ..WorkloadConfig::default()
    };
    // argv = [name, a, b] → 3; env = X, FD_COUNT, FD_NAMES → 3.
    let r = run_with(wat, cfg, b"", vec![]).unwrap();
    assert_eq!(r.outcome, WorkloadOutcome::Exited(33));
}

/// A WAT echo server: sock_accept on fd 3, sock_recv, sock_send, fd_close.
const ECHO_ONCE: &str = r#"(module
  (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_recv" (func $recv (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_send" (func $send (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fdstat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $conn i32) (local $n i32)
    ;; fd 3 must look like a socket, and must not look like a preopened dir.
    (if (i32.ne (call $prestat (i32.const 3) (i32.const 200)) (i32.const 8)) (then (call $exit (i32.const 10))))
    (drop (call $fdstat (i32.const 3) (i32.const 200)))
    (if (i32.ne (i32.load8_u (i32.const 200)) (i32.const 6)) (then (call $exit (i32.const 11))))
    (if (call $accept (i32.const 3) (i32.const 0) (i32.const 0)) (then (call $exit (i32.const 12))))
    (local.set $conn (i32.load (i32.const 0)))
    (i32.store (i32.const 16) (i32.const 1024))
    (i32.store (i32.const 20) (i32.const 1024))
    (loop $l
      (if (call $recv (local.get $conn) (i32.const 16) (i32.const 1) (i32.const 0) (i32.const 24) (i32.const 28))
        (then (call $exit (i32.const 13))))
      (local.set $n (i32.load (i32.const 24)))
      (if (i32.gt_u (local.get $n) (i32.const 0)) (then
        (i32.store (i32.const 36) (i32.const 1024))
        (i32.store (i32.const 40) (local.get $n))
        (drop (call $send (local.get $conn) (i32.const 36) (i32.const 1) (i32.const 0) (i32.const 44)))
        (br $l))))
    (drop (call $close (local.get $conn)))
    ;; the closed fd is gone
    (if (i32.ne (call $close (local.get $conn)) (i32.const 8)) (then (call $exit (i32.const 14))))))"#;

#[test]
fn p1_socket_echo() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = WorkloadConfig {
        sockets: vec![ward_proto::WorkloadSocket {
            kind: ward_proto::FileKind::Listen,
            name: "ingest".into(),
            prot: ward_proto::SocketProtocol::Tcp,
            host: "127.0.0.1".into(),
            port: addr.port(),
        }],
        ..WorkloadConfig::default()
    };
    let client = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"echo me").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        back
    });
    let r = run_with(
        ECHO_ONCE,
        cfg,
        b"",
        vec![WorkloadSocketHandle::Listener(listener)],
    )
    .unwrap();
    assert_eq!(r.outcome, WorkloadOutcome::Exited(0));
    assert_eq!(client.join().unwrap(), b"echo me");
}

#[test]
fn socket_calls_on_a_plain_fd_fail_cleanly() {
    // sock_accept on stdout (fd 1) must be refused with an errno, not a trap.
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start") (call $exit (call $accept (i32.const 1) (i32.const 0) (i32.const 0)))))"#;
    let r = run(wat).unwrap();
    assert_eq!(r.outcome, WorkloadOutcome::Exited(8)); // EBADF
}

#[test]
fn hostile_iovec_is_efault() {
    // fd_write on a socket fd with an iovec pointing past memory → EFAULT (21).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let conn = std::thread::spawn(move || std::net::TcpStream::connect(addr).unwrap());
    let cfg = WorkloadConfig {
        sockets: vec![ward_proto::WorkloadSocket {
            kind: ward_proto::FileKind::Listen,
            name: "s".into(),
            prot: ward_proto::SocketProtocol::Tcp,
            host: "127.0.0.1".into(),
            port: addr.port(),
        }],
        ..WorkloadConfig::default()
    };
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (drop (call $accept (i32.const 3) (i32.const 0) (i32.const 0)))
        (i32.store (i32.const 16) (i32.const 65500))
        (i32.store (i32.const 20) (i32.const 100))
        (call $exit (call $write (i32.load (i32.const 0)) (i32.const 16) (i32.const 1) (i32.const 32)))))"#;
    let r = run_with(
        wat,
        cfg,
        b"",
        vec![WorkloadSocketHandle::Listener(listener)],
    )
    .unwrap();
    drop(conn.join());
    assert_eq!(r.outcome, WorkloadOutcome::Exited(21));
}

/// A component exporting `wasi:cli/run@0.2.0` whose `run` returns `$ret` (0 = ok).
fn run_component(ret: i32) -> String {
    format!(
        r#"(component
  (core module $m (func (export "run") (result i32) i32.const {ret}))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $inst (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $inst)))"#
    )
}

#[test]
fn component_runs_with_wasi_p2() {
    let wasm = wat::parse_str(run_component(0)).unwrap();
    assert!(ward_runtime::is_component(&wasm));
    let rt = Runtime::new(&Limits::default(), &RuntimeOptions::default()).unwrap();
    let prepared = rt
        .prepare(
            "c.wasm",
            &WorkloadConfig::default(),
            WorkloadIo::default(),
            vec![],
        )
        .unwrap();
    let report = rt.run(&rt.load(&wasm).unwrap(), prepared).unwrap();
    assert_eq!(report.outcome, WorkloadOutcome::Exited(0));
}

#[test]
fn component_returning_err_exits_one() {
    let wasm = wat::parse_str(run_component(1)).unwrap();
    let rt = Runtime::new(&Limits::default(), &RuntimeOptions::default()).unwrap();
    let prepared = rt
        .prepare(
            "c.wasm",
            &WorkloadConfig::default(),
            WorkloadIo::default(),
            vec![],
        )
        .unwrap();
    let report = rt.run(&rt.load(&wasm).unwrap(), prepared).unwrap();
    assert_eq!(report.outcome, WorkloadOutcome::Exited(1));
}

#[test]
fn component_without_run_export_is_a_link_error() {
    let wasm = wat::parse_str("(component)").unwrap();
    let rt = Runtime::new(&Limits::default(), &RuntimeOptions::default()).unwrap();
    let prepared = rt
        .prepare(
            "c.wasm",
            &WorkloadConfig::default(),
            WorkloadIo::default(),
            vec![],
        )
        .unwrap();
    assert!(rt.run(&rt.load(&wasm).unwrap(), prepared).is_err());
}
