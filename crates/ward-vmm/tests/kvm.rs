//! End-to-end tests of the kvm Keep with small static guest programs compiled here.
//! Tests that need /dev/kvm print why they skip when it is absent.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ward_vmm::{GuestExit, KvmKeepConfig};

include!("../src/shim_build.rs");

fn kvm() -> bool {
    match ward_vmm::kvm_available() {
        Ok(()) => true,
        Err(why) => {
            println!("skipping: /dev/kvm not available ({why})");
            false
        }
    }
}

/// Compiles a static guest program from Rust source.
fn guest(dir: &Path, name: &str, src: &str) -> PathBuf {
    let rs = dir.join(format!("{name}.rs"));
    std::fs::write(&rs, src).unwrap();
    let out = dir.join(name);
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let st = std::process::Command::new(rustc)
        .args([
            "--edition=2021",
            "-O",
            "-C",
            "target-feature=+crt-static",
            "-C",
            "debuginfo=0",
        ])
        .args(["--target", "x86_64-unknown-linux-gnu", "-o"])
        .arg(&out)
        .arg(&rs)
        .env_remove("RUSTFLAGS")
        .status()
        .unwrap();
    assert!(st.success(), "compiling guest {name}");
    out
}

const HELLO: &str = r#"
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
fn main() {
    let mut ch = unsafe { std::fs::File::from_raw_fd(3) };
    let args: Vec<String> = std::env::args().collect();
    let v: Vec<u64> = (0..100_000).collect();
    let t = std::thread::spawn(|| { std::thread::sleep(std::time::Duration::from_millis(5)); 7u64 });
    let sum: u64 = v.iter().sum::<u64>() + t.join().unwrap();
    let mut m = Vec::new();
    std::fs::File::open("/dev/ward/launch-measurement").unwrap().read_to_end(&mut m).unwrap();
    write!(ch, "hello {} {} {}|", args.join(","), sum, m.len()).unwrap();
    ch.write_all(&m).unwrap();
    std::process::exit(3);
}
"#;

#[test]
fn hello_channel_threads_measurement() {
    if !kvm() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let elf = guest(dir.path(), "hello", HELLO);
    let cfg = KvmKeepConfig::from_path(&elf, 128 << 20)
        .unwrap()
        .args(["guest", "arg1"]);
    let offline = ward_vmm::measure(&cfg).unwrap();
    let mut keep = ward_vmm::launch(&cfg).unwrap();
    let mut ch = keep.take_channel().unwrap();
    let mut out = Vec::new();
    ch.read_to_end(&mut out).unwrap();
    let (exit, timings) = keep.wait_with_timings().unwrap();
    assert_eq!(exit, GuestExit::Exited(3));
    let text = String::from_utf8_lossy(&out[..out.len() - 48]).into_owned();
    assert_eq!(text, "hello guest,arg1 4999950007 48|");
    assert_eq!(
        &out[out.len() - 48..],
        &offline[..],
        "evidence carries the offline value"
    );
    assert!(timings.first_user_instruction.is_some());
}

fn expect_exit(name: &str, body: &str, mem_mib: u64, check: impl Fn(&GuestExit) -> bool) {
    if !kvm() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = format!("#[allow(unused_unsafe)] fn main() {{ {body} }}");
    let elf = guest(dir.path(), name, &src);
    let cfg = KvmKeepConfig::from_path(&elf, mem_mib << 20)
        .unwrap()
        .timeout(Duration::from_secs(2));
    let keep = ward_vmm::launch(&cfg).unwrap();
    let exit = keep.wait().unwrap();
    println!("{name}: {exit}");
    assert!(check(&exit), "{name}: unexpected exit {exit:?}");
}

#[test]
fn bad_syscall_is_reported() {
    expect_exit(
        "badsys",
        r#"unsafe { std::arch::asm!("syscall", inout("rax") 999usize => _, out("rcx") _, out("r11") _); }"#,
        64,
        |e| *e == GuestExit::UnsupportedSyscall { nr: 999 },
    );
}

#[test]
fn wild_access_is_a_page_fault_with_registers() {
    expect_exit(
        "wild",
        "unsafe { std::ptr::write_volatile(0x7123_4560_0000 as *mut u64, 1) }",
        64,
        |e| matches!(e, GuestExit::Fault { vector: 14, regs, .. } if regs.cr2 == 0x7123_4560_0000 && regs.cs & 3 == 3),
    );
}

#[test]
fn null_read_is_a_page_fault() {
    expect_exit(
        "null",
        "unsafe { std::ptr::read_volatile(8 as *const u64); }",
        64,
        |e| matches!(e, GuestExit::Fault { vector: 14, regs, .. } if regs.cr2 == 8),
    );
}

#[test]
fn infinite_loop_times_out_and_host_survives() {
    expect_exit("spin", "loop { std::hint::spin_loop() }", 64, |e| {
        *e == GuestExit::Timeout
    });
}

#[test]
fn exceeding_guest_memory_is_out_of_memory() {
    expect_exit(
        "oom",
        "let v = vec![1u8; 200 << 20]; println!(\"{}\", v[12345]);",
        64,
        |e| matches!(e, GuestExit::OutOfMemory { requested } if *requested >= 200 << 20),
    );
}

#[test]
fn measurement_is_reproducible_and_binds_config() {
    // No /dev/kvm needed: the measurement is computed offline.
    let dir = tempfile::tempdir().unwrap();
    let elf = guest(dir.path(), "m", "fn main() {}");
    let cfg = KvmKeepConfig::from_path(&elf, 64 << 20)
        .unwrap()
        .args(["m"]);
    let a = ward_vmm::measure(&cfg).unwrap();
    assert_eq!(a, ward_vmm::measure(&cfg).unwrap());
    assert_ne!(a, ward_vmm::measure(&cfg.clone().args(["m", "x"])).unwrap());
    let mut bigger = cfg.clone();
    bigger.memory_bytes = 128 << 20;
    assert_ne!(a, ward_vmm::measure(&bigger).unwrap());

    // A second build of the shim, from a copy of its sources elsewhere, is byte-identical
    // to the one embedded in this build.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ward-shim");
    let copy = dir.path().join("elsewhere/ward-shim");
    std::fs::create_dir_all(copy.join("src")).unwrap();
    std::fs::copy(src.join("shim.ld"), copy.join("shim.ld")).unwrap();
    for f in std::fs::read_dir(src.join("src")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, copy.join("src").join(f.file_name().unwrap())).unwrap();
    }
    let out = dir.path().join("shim2.elf");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    build_shim(&rustc, &copy, &out).unwrap();
    assert!(
        std::fs::read(&out).unwrap() == ward_vmm::shim_image(),
        "shim build is not reproducible"
    );
}
