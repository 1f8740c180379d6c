//! The wasmtime engine, configured for Keeps, and one workload run.

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use ward_proto::{ExitReport, Limits, StdioMode, WorkloadConfig, WorkloadOutcome};
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Config, Engine, Linker, Module, Store, Trap};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::config::human_bytes;
use crate::limits::MemoryLimiter;
use crate::p1_sockets::{self, SocketHost, SocketTable};
use crate::sockets::WorkloadSocketHandle;
use crate::stdio::{InputAdapter, OutputAdapter, WorkloadInput, WorkloadOutput};

/// Why a workload could not be started. (How a started workload ended is an
/// [`ExitReport`], not an error.)
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The bytes are not a valid module or component.
    #[error("invalid Wasm module: {0}")]
    InvalidModule(String),
    /// The module imports something Ward does not provide, or lacks an entry point.
    #[error("{0}")]
    Link(String),
    /// A preopened directory could not be opened.
    #[error("cannot preopen {path}: {message}")]
    Preopen {
        /// The host path.
        path: String,
        /// The cause.
        message: String,
    },
    /// The configuration cannot be honoured.
    #[error("{0}")]
    Config(String),
    /// The engine could not be set up.
    #[error("wasmtime: {0}")]
    Engine(String),
}

/// How the engine is set up. The defaults suit a process Keep.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Use signal handlers to catch out-of-bounds accesses (fast). VM Keeps without
    /// signal delivery turn this off and get explicit bounds checks instead.
    pub signals_based_traps: bool,
    /// Compile functions on several threads.
    pub parallel_compilation: bool,
    /// Reserve large virtual ranges (4 GiB + guards) per linear memory, so growth
    /// never moves it. VM Keeps, whose every mapped page is real guest memory, turn
    /// this off: memories are then sized to what they use and moved on growth.
    pub large_reservations: bool,
    /// The OS offers epoll, which wasmtime-wasi's shared tokio runtime needs for its
    /// I/O driver. The kvm shim does not: VM Keeps run WASI calls on a private
    /// timer-only runtime instead (one worker thread).
    pub epoll: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            signals_based_traps: true,
            parallel_compilation: true,
            large_reservations: true,
            epoll: true,
        }
    }
}

/// A wasmtime engine configured for one workload's limits.
pub struct Runtime {
    engine: Engine,
    /// The tokio runtime WASI calls run on when the ambient one (which needs epoll)
    /// cannot be used; see [`RuntimeOptions::epoll`].
    wasi_tokio: Option<tokio::runtime::Runtime>,
}

/// A compiled workload.
pub enum LoadedWorkload {
    /// A core module using WASI preview 1.
    Module(Module),
    /// A component using WASI preview 2 (`wasi:cli/run`).
    Component(Component),
}

/// Whether `bytes` start like a component rather than a core module.
pub fn is_component(bytes: &[u8]) -> bool {
    // Both start with "\0asm"; the next four bytes are a version and a layer.
    // Core modules: 01 00 00 00. Components: 0d 00 01 00 (layer 1).
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

/// The I/O a run is wired to. `None` streams are null (EOF / discarded).
#[derive(Default)]
pub struct WorkloadIo {
    /// Source of stdin.
    pub stdin: Option<Box<dyn WorkloadInput>>,
    /// Sink for stdout.
    pub stdout: Option<Arc<dyn WorkloadOutput>>,
    /// Sink for stderr.
    pub stderr: Option<Arc<dyn WorkloadOutput>>,
}

/// Host resources opened for a run, before any workload byte is seen: the preopened
/// dirs are opened here, so the caller can sandbox itself afterwards.
pub struct PreparedRun {
    p1: WasiP1Ctx,
    p2: WasiCtx,
    sockets: SocketTable,
    limits: Limits,
}

struct P1State {
    wasi: WasiP1Ctx,
    sockets: SocketTable,
    limiter: MemoryLimiter,
}

impl SocketHost for P1State {
    fn wasi(&mut self) -> &mut WasiP1Ctx {
        &mut self.wasi
    }
    fn sockets(&mut self) -> &mut SocketTable {
        &mut self.sockets
    }
}

struct P2State {
    ctx: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
}

impl WasiView for P2State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl Runtime {
    /// An engine for a workload with these limits.
    pub fn new(limits: &Limits, opts: &RuntimeOptions) -> Result<Self, RuntimeError> {
        let mut config = Config::new();
        config
            .signals_based_traps(opts.signals_based_traps)
            .parallel_compilation(opts.parallel_compilation)
            // Interruption checks cost a little in every loop: only pay when asked to.
            .epoch_interruption(limits.wall_time_ms.is_some())
            .consume_fuel(limits.fuel.is_some())
            .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(20));
        if !opts.large_reservations {
            config
                .memory_reservation(0)
                .memory_guard_size(0)
                .guard_before_linear_memory(false)
                .memory_reservation_for_growth(1 << 20);
        }
        let engine = Engine::new(&config).map_err(|e| RuntimeError::Engine(e.to_string()))?;
        let wasi_tokio = if opts.epoll {
            None
        } else {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(4)
                .enable_time()
                .build()
                .map_err(|e| RuntimeError::Engine(format!("tokio runtime for WASI: {e}")))?;
            Some(rt)
        };
        Ok(Self { engine, wasi_tokio })
    }

    /// Compiles a module or component (binary, or WAT text).
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedWorkload, RuntimeError> {
        let invalid = |e: wasmtime::Error| RuntimeError::InvalidModule(one_line(&e));
        if bytes.len() < 8 && bytes.starts_with(b"\0asm") {
            return Err(RuntimeError::InvalidModule(format!(
                "truncated: {} bytes is shorter than a Wasm header",
                bytes.len()
            )));
        }
        if !bytes.starts_with(b"\0asm") && std::str::from_utf8(bytes).is_err() {
            return Err(RuntimeError::InvalidModule(
                "not a Wasm file (no \\0asm magic) and not WAT text".into(),
            ));
        }
        if is_component(bytes) {
            Component::new(&self.engine, bytes)
                .map(LoadedWorkload::Component)
                .map_err(invalid)
        } else {
            Module::new(&self.engine, bytes)
                .map(LoadedWorkload::Module)
                .map_err(invalid)
        }
    }

    /// Opens the host resources `cfg` names (preopened dirs; `sockets` must already be
    /// open, in `cfg.sockets` order) and wires up `io`.
    pub fn prepare(
        &self,
        name: &str,
        cfg: &WorkloadConfig,
        io: WorkloadIo,
        sockets: Vec<WorkloadSocketHandle>,
    ) -> Result<PreparedRun, RuntimeError> {
        if sockets.len() != cfg.sockets.len() {
            return Err(RuntimeError::Config(format!(
                "{} sockets configured but {} opened",
                cfg.sockets.len(),
                sockets.len()
            )));
        }
        let stdin = io.stdin.map(|s| InputAdapter(Arc::new(Mutex::new(s))));
        let stdout = io.stdout.map(OutputAdapter);
        let stderr = io.stderr.map(OutputAdapter);

        let mut fd_names: Vec<&str> = vec!["stdin", "stdout", "stderr"];
        fd_names.extend(cfg.preopens.iter().map(|p| p.guest.as_str()));
        fd_names.extend(cfg.sockets.iter().map(|s| s.name.as_str()));
        let fd_count = fd_names.len().to_string();
        let fd_names = fd_names.join(":");

        let build = |with_placeholders: bool| -> Result<WasiCtxBuilder, RuntimeError> {
            let mut b = WasiCtxBuilder::new();
            let mut args = vec![name.to_string()];
            args.extend(cfg.args.iter().cloned());
            b.args(&args);
            for (k, v) in &cfg.env {
                b.env(k, v);
            }
            // The Enarx convention for finding preopened sockets by name.
            b.env("FD_COUNT", &fd_count).env("FD_NAMES", &fd_names);
            if let (StdioMode::Forward, Some(s)) = (cfg.stdin, &stdin) {
                b.stdin(s.clone());
            }
            if let (StdioMode::Forward, Some(s)) = (cfg.stdout, &stdout) {
                b.stdout(s.clone());
            }
            if let (StdioMode::Forward, Some(s)) = (cfg.stderr, &stderr) {
                b.stderr(s.clone());
            }
            for p in &cfg.preopens {
                let perms = if p.writable {
                    FsPerms::ReadWrite
                } else {
                    FsPerms::ReadOnly
                };
                b.preopened_dir(&p.host, &p.guest, perms)
                    .map_err(|e| RuntimeError::Preopen {
                        path: p.host.clone(),
                        message: one_line(&e),
                    })?;
            }
            if with_placeholders && !cfg.sockets.is_empty() {
                // Reserve the socket fd numbers in wasmtime-wasi's table (see
                // `p1_sockets`) with read-only preopens of a directory that is deleted
                // right after it is opened: nothing can be read or created through it.
                let hole = tempfile::Builder::new()
                    .prefix("ward-placeholder-")
                    .tempdir()
                    .map_err(|e| RuntimeError::Preopen {
                        path: std::env::temp_dir().display().to_string(),
                        message: e.to_string(),
                    })?;
                for s in &cfg.sockets {
                    b.preopened_dir(
                        hole.path(),
                        format!("/.ward-socket-{}", s.name),
                        FsPerms::ReadOnly,
                    )
                    .map_err(|e| RuntimeError::Preopen {
                        path: hole.path().display().to_string(),
                        message: one_line(&e),
                    })?;
                }
                hole.close().map_err(|e| RuntimeError::Preopen {
                    path: "placeholder".into(),
                    message: e.to_string(),
                })?;
            }
            Ok(b)
        };
        let p1 = build(true)?.build_p1();
        let p2 = build(false)?.build();
        let first_socket_fd = 3 + cfg.preopens.len() as u32;
        Ok(PreparedRun {
            p1,
            p2,
            sockets: SocketTable::new(first_socket_fd, sockets),
            limits: cfg.limits,
        })
    }

    /// Runs a prepared workload to completion.
    pub fn run(
        &self,
        workload: &LoadedWorkload,
        prepared: PreparedRun,
    ) -> Result<ExitReport, RuntimeError> {
        let limits = prepared.limits;
        let _deadline = self.arm_deadline(&limits);
        // wasmtime-wasi runs its calls on the current tokio runtime when there is one.
        let _tokio = self.wasi_tokio.as_ref().map(|rt| rt.enter());
        match workload {
            LoadedWorkload::Module(module) => {
                let state = P1State {
                    wasi: prepared.p1,
                    sockets: prepared.sockets,
                    limiter: MemoryLimiter::new(limits.memory_bytes),
                };
                let mut store = Store::new(&self.engine, state);
                store.limiter(|s| &mut s.limiter);
                self.set_store_limits(&mut store, &limits)?;
                let mut linker: Linker<P1State> = Linker::new(&self.engine);
                wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s| &mut s.wasi)
                    .map_err(|e| RuntimeError::Engine(one_line(&e)))?;
                p1_sockets::add_to_linker(&mut linker)
                    .map_err(|e| RuntimeError::Engine(one_line(&e)))?;
                let instance = linker
                    .instantiate(&mut store, module)
                    .map_err(|e| instantiate_error(&e, &store.data().limiter))?;
                let start = instance
                    .get_typed_func::<(), ()>(&mut store, "_start")
                    .map_err(|_| {
                        RuntimeError::Link(
                            "the module exports no `_start` function: is it a WASI command?".into(),
                        )
                    })?;
                let result = start.call(&mut store, ());
                let denied = store.data().limiter.denied_at;
                Ok(report(result.err(), &limits, denied))
            }
            LoadedWorkload::Component(component) => {
                let state = P2State {
                    ctx: prepared.p2,
                    table: ResourceTable::new(),
                    limiter: MemoryLimiter::new(limits.memory_bytes),
                };
                let mut store = Store::new(&self.engine, state);
                store.limiter(|s| &mut s.limiter);
                self.set_store_limits(&mut store, &limits)?;
                let mut linker = wasmtime::component::Linker::<P2State>::new(&self.engine);
                wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
                    .map_err(|e| RuntimeError::Engine(one_line(&e)))?;
                let command = wasmtime_wasi::p2::bindings::sync::Command::instantiate(
                    &mut store, component, &linker,
                )
                .map_err(|e| instantiate_error(&e, &store.data().limiter))?;
                let result = command.wasi_cli_run().call_run(&mut store);
                let denied = store.data().limiter.denied_at;
                let err = match result {
                    Ok(Ok(())) => None,
                    Ok(Err(())) => Some(wasmtime::Error::new(I32Exit(1))),
                    Err(e) => Some(e),
                };
                Ok(report(err, &limits, denied))
            }
        }
    }

    fn set_store_limits<T>(
        &self,
        store: &mut Store<T>,
        limits: &Limits,
    ) -> Result<(), RuntimeError> {
        if let Some(fuel) = limits.fuel {
            store
                .set_fuel(fuel)
                .map_err(|e| RuntimeError::Engine(one_line(&e)))?;
        }
        if limits.wall_time_ms.is_some() {
            // The deadline thread bumps the epoch once, when time is up.
            store.set_epoch_deadline(1);
            store.epoch_deadline_trap();
        }
        Ok(())
    }

    /// Starts a thread that interrupts the workload at its deadline. Dropping the
    /// returned guard cancels it.
    fn arm_deadline(&self, limits: &Limits) -> Option<mpsc::Sender<()>> {
        let ms = limits.wall_time_ms?;
        let (tx, rx) = mpsc::channel::<()>();
        let engine = self.engine.clone();
        std::thread::Builder::new()
            .name("ward-deadline".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) =
                    rx.recv_timeout(Duration::from_millis(ms))
                {
                    engine.increment_epoch();
                }
            })
            .ok()?;
        Some(tx)
    }
}

fn instantiate_error(e: &wasmtime::Error, limiter: &MemoryLimiter) -> RuntimeError {
    if let Some(bytes) = limiter.denied_at {
        return RuntimeError::Config(format!(
            "the workload needs {} of linear memory at start, over its limit ({})",
            human_bytes(bytes),
            one_line(e)
        ));
    }
    let msg = one_line(e);
    if msg.contains("unknown import") || msg.contains("has not been defined") {
        RuntimeError::Link(msg)
    } else {
        RuntimeError::Engine(msg)
    }
}

fn report(err: Option<wasmtime::Error>, limits: &Limits, denied: Option<u64>) -> ExitReport {
    let outcome = match err {
        None => WorkloadOutcome::Exited(0),
        Some(e) => outcome_of(&e, limits),
    };
    ExitReport {
        outcome,
        memory_denied_at: denied,
    }
}

fn outcome_of(e: &wasmtime::Error, limits: &Limits) -> WorkloadOutcome {
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return WorkloadOutcome::Exited(exit.0);
    }
    let func = e.downcast_ref::<wasmtime::WasmBacktrace>().and_then(|bt| {
        bt.frames()
            .first()
            .map(|f| f.func_name().unwrap_or("<unnamed>").to_string())
    });
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => WorkloadOutcome::DeadlineExceeded {
            limit_ms: limits.wall_time_ms.unwrap_or(0),
        },
        Some(Trap::OutOfFuel) => WorkloadOutcome::OutOfFuel {
            fuel: limits.fuel.unwrap_or(0),
        },
        Some(trap) => WorkloadOutcome::Trapped {
            trap: trap.to_string(),
            detail: match func {
                Some(f) => format!("in function `{}`", demangle_short(&f)),
                None => String::new(),
            },
        },
        None => WorkloadOutcome::Trapped {
            trap: "host error".into(),
            detail: one_line(e),
        },
    }
}

fn demangle_short(name: &str) -> String {
    name.chars().take(120).collect()
}

/// An error and its causes on one line.
fn one_line(e: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        let first = s.lines().next().unwrap_or("").trim().to_string();
        if !first.is_empty() && !parts.iter().any(|p| p.contains(&first)) {
            parts.push(first);
        }
    }
    parts.join(": ")
}
