//! `ward-keep`: the in-Keep agent.
//!
//! Started by a Keep loader with one bidirectional byte stream (the channel) on an
//! inherited file descriptor. It receives a [`LaunchSpec`](ward_proto::LaunchSpec),
//! sandboxes itself (process Keeps), receives the module, and runs it, relaying stdio
//! as CBOR frames. Diagnostics go to its own stderr; nothing else leaves the Keep.
//!
//! Usage: `ward-keep --channel-fd N [--sandbox] [--tls] [--backend process|kvm]
//! [--measurement HEX] [--confine [--allow-dir DIR] [--allow-dir-rw DIR] [--allow-sockets]]`
//!
//! `--confine` (remote Keeps started by `ward host serve`): the workload's config may
//! reach only the host directories and sockets the operator allows (`confine.rs`).
//!
//! With `--tls` (remote deployments) the channel first carries the client's
//! [`TunnelHello`](ward_proto::TunnelHello), then TLS that terminates here, with an
//! RA-TLS certificate; the usual CBOR conversation runs inside it.

#![warn(missing_docs)]

mod agent;
mod channel;
mod tls;

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("usage: ward-keep --channel-fd N [--sandbox] [--tls] [--backend process|kvm] [--measurement HEX] [--confine [--allow-dir DIR] [--allow-dir-rw DIR] [--allow-sockets]]");
    eprintln!("ward-keep is started by `ward run` / `ward host serve`, not by hand.");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut channel_fd: Option<i32> = None;
    let mut opts = agent::AgentOptions::default();
    let mut tls = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--channel-fd" => match args.next().and_then(|v| v.parse().ok()) {
                Some(fd) => channel_fd = Some(fd),
                None => return usage(),
            },
            "--sandbox" => opts.sandbox = true,
            "--tls" => tls = true,
            "--backend" => match args.next().as_deref() {
                Some("process") => opts.vm = false,
                Some("kvm") => opts.vm = true,
                _ => return usage(),
            },
            "--measurement" => match args.next().and_then(|v| hex::decode(v).ok()) {
                Some(m) if m.len() == 48 => opts.measurement = Some(m),
                _ => {
                    eprintln!("ward-keep: --measurement takes 96 hex digits (SHA-384)");
                    return usage();
                }
            },
            "--confine" => {
                opts.confine.get_or_insert_with(Default::default);
            }
            "--allow-dir" | "--allow-dir-rw" => {
                let writable = arg == "--allow-dir-rw";
                let Some(dir) = args.next() else {
                    return usage();
                };
                let allow = opts.confine.get_or_insert_with(Default::default);
                if let Err(e) = allow.allow_dir(std::path::Path::new(&dir), writable) {
                    eprintln!("ward-keep: {e}");
                    return usage();
                }
            }
            "--allow-sockets" => opts.confine.get_or_insert_with(Default::default).sockets = true,
            "--version" => {
                println!("ward-keep {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            _ => return usage(),
        }
    }
    let Some(fd) = channel_fd else {
        return usage();
    };
    if opts.vm && opts.measurement.is_some() {
        // A VM Keep's measurement is the VMM's, read from the shim, never an argument.
        eprintln!("ward-keep: --measurement is for process Keeps only");
        return usage();
    }
    // A Keep never outlives its loader.
    if let Err(e) =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
    {
        eprintln!("ward-keep: warning: cannot tie this Keep's lifetime to its loader: {e}");
    }
    if rustix::io::fcntl_getfd(unsafe_borrow(fd)).is_err() {
        eprintln!("ward-keep: fd {fd} is not open; it must be the Keep channel");
        return ExitCode::from(2);
    }
    // SAFETY: the loader hands this fd to the agent at exec time for its exclusive use;
    // nothing else in this process owns it, it was just checked to be open, and
    // ownership is taken exactly once, here.
    let channel = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let result = if tls {
        tls::serve(channel, &opts)
    } else {
        agent::serve(channel, &opts)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ward-keep: {e}");
            ExitCode::from(1)
        }
    }
}

fn unsafe_borrow(fd: i32) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: used only for the F_GETFD probe above, which is harmless on any fd
    // number; a closed fd yields EBADF rather than undefined behaviour.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}
