//! The `process` backend: `ward-keep` as a child process, sandboxing itself.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// Environment variable naming the `ward-keep` binary, overriding the search.
pub const KEEP_BIN_ENV: &str = "WARD_KEEP";

/// Finds `ward-keep`: `$WARD_KEEP`, else next to the running executable (and its
/// parent, for test binaries in `target/*/deps`).
pub fn find_keep_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(KEEP_BIN_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{KEEP_BIN_ENV}={} is not a file", p.display()))
        };
    }
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot locate the running binary: {e}"))?;
    let mut looked = Vec::new();
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("ward-keep");
        if candidate.is_file() {
            return Ok(candidate);
        }
        looked.push(dir.display().to_string());
    }
    Err(format!(
        "cannot find the ward-keep binary (looked in {}); build it with `cargo build -p ward-keep` or set {KEEP_BIN_ENV}",
        looked.join(", ")
    ))
}

/// A running process Keep.
pub struct ProcessKeep {
    child: Child,
    channel: Option<UnixStream>,
}

impl ProcessKeep {
    /// Starts `keep_bin` with a fresh channel on its fd 0. The agent sandboxes itself
    /// before it reads the workload.
    pub fn spawn(keep_bin: &Path) -> io::Result<Self> {
        let (ours, theirs) = UnixStream::pair()?;
        let child = Command::new(keep_bin)
            .args(["--channel-fd", "0", "--sandbox", "--backend", "process"])
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .env_clear()
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start {}: {e}", keep_bin.display()),
                )
            })?;
        Ok(Self {
            child,
            channel: Some(ours),
        })
    }

    /// Takes the host end of the channel (once).
    pub fn take_channel(&mut self) -> Option<UnixStream> {
        self.channel.take()
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Stops the Keep now.
    pub fn kill(&mut self) -> io::Result<()> {
        match self.child.kill() {
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()), // already exited
            r => r,
        }
    }

    /// Waits for the Keep to exit.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait()
    }
}

impl Drop for ProcessKeep {
    fn drop(&mut self) {
        // Never leave a Keep behind: kill it if still running, and reap it.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Sends SIGKILL to a Keep process by pid (for watchdogs that do not own the
/// [`ProcessKeep`]).
pub fn kill_pid(pid: u32) -> io::Result<()> {
    let pid = rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid 0"))?;
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).map_err(io::Error::from)
}

/// The launch measurement of a process Keep: SHA-384 of the `ward-keep` binary.
/// Computed once per file version (path, size, mtime, inode) and remembered, since
/// hashing a static binary of tens of MiB costs tens of milliseconds per Keep. The
/// loader hands it to the Keep (`--measurement`): a process Keep is entirely in the
/// host's hands, so this is no weaker than the Keep hashing itself, and its evidence
/// is kind `none` either way.
pub fn keep_binary_measurement(keep_bin: &Path) -> io::Result<[u8; 48]> {
    use sha2::{Digest, Sha384};
    use std::collections::HashMap;
    use std::os::unix::fs::MetadataExt;
    use std::sync::{Mutex, OnceLock};

    type Version = (PathBuf, u64, i64, i64, u64);
    static CACHE: OnceLock<Mutex<HashMap<Version, [u8; 48]>>> = OnceLock::new();
    let meta = std::fs::metadata(keep_bin)?;
    let version = (
        keep_bin.to_path_buf(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino(),
    );
    let cache = CACHE.get_or_init(Default::default);
    if let Some(m) = cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&version)
    {
        return Ok(*m);
    }
    let mut file = std::fs::File::open(keep_bin)?;
    let mut hasher = Sha384::new();
    io::copy(&mut file, &mut hasher)?;
    let digest: [u8; 48] = hasher.finalize().into();
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(version, digest);
    Ok(digest)
}
