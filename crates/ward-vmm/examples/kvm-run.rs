//! Runs a static x86_64 ELF in a kvm Keep: `kvm-run [--mem MiB] [--timeout SECS] ELF [ARGS...]`.
//! The guest's fd 3 is connected to this program's stdin/stdout; the exit is printed last.

use std::io::{Read, Write};
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut mem = 256u64;
    let mut timeout = None;
    loop {
        match args.first().map(String::as_str) {
            Some("--mem") => {
                mem = args[1].parse()?;
                args.drain(..2);
            }
            Some("--timeout") => {
                timeout = Some(Duration::from_secs_f64(args[1].parse()?));
                args.drain(..2);
            }
            _ => break,
        }
    }
    if args.is_empty() {
        eprintln!("usage: kvm-run [--mem MiB] [--timeout SECS] ELF [ARGS...]");
        std::process::exit(2);
    }
    if let Err(why) = ward_vmm::kvm_available() {
        eprintln!("skipping: /dev/kvm not available ({why})");
        return Ok(());
    }
    let mut cfg =
        ward_vmm::KvmKeepConfig::from_path(args[0].as_ref(), mem << 20)?.args(args.clone());
    cfg.timeout = timeout;
    let t0 = std::time::Instant::now();
    let mut keep = ward_vmm::launch(&cfg)?;
    let mut ch = keep.take_channel().expect("channel");
    let mut ch_in = ch.try_clone()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || ch_in.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = ch_in.shutdown(std::net::Shutdown::Write);
    });
    let out = std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        let mut stdout = std::io::stdout();
        while let Ok(n) = ch.read(&mut buf) {
            if n == 0 || stdout.write_all(&buf[..n]).is_err() {
                break;
            }
            let _ = stdout.flush();
        }
    });
    let (exit, timings) = keep.wait_with_timings()?;
    let _ = out.join();
    eprintln!("kvm-run: {exit}");
    eprintln!(
        "kvm-run: total {:.1} ms, first user instruction {:?}",
        t0.elapsed().as_secs_f64() * 1e3,
        timings.first_user_instruction
    );
    Ok(())
}
