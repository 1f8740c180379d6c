//! End-to-end tests of the kvm Keep with small static guest programs compiled here.
//! Tests that need /dev/kvm print why they skip when it is absent.

use std::io::{Read, Write};
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

/// Host files and sockets from inside the guest, through std and raw system calls:
/// what the VMM allows works, and every way out of the allow-list is refused.
const HOSTIO: &str = r#"
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
fn sys(nr: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    let r: isize;
    unsafe {
        std::arch::asm!("syscall", inlateout("rax") nr as isize => r, in("rdi") a, in("rsi") b,
            in("rdx") c, in("r10") d, out("rcx") _, out("r11") _);
    }
    r
}
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (rw, ro, listen) = (&a[1], &a[2], &a[3]);
    let mut ch = unsafe { std::fs::File::from_raw_fd(3) };
    let mut out = String::new();
    let mut say = |k: &str, v: String| out.push_str(&format!("{k}={v}\n"));
    // Files beneath a writable preopen.
    std::fs::write(format!("{rw}/f.txt"), b"0123456789").unwrap();
    let mut s = String::new();
    std::fs::File::open(format!("{rw}/f.txt")).unwrap().read_to_string(&mut s).unwrap();
    say("read", s);
    std::fs::create_dir(format!("{rw}/d")).unwrap();
    std::fs::rename(format!("{rw}/f.txt"), format!("{rw}/d/g.txt")).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(format!("{rw}/d")).unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    say("list", names.join(","));
    say("size", std::fs::metadata(format!("{rw}/d/g.txt")).unwrap().len().to_string());
    std::fs::remove_file(format!("{rw}/d/g.txt")).unwrap();
    std::fs::remove_dir(format!("{rw}/d")).unwrap();
    // Ways out.
    let dir = std::fs::File::open(rw).unwrap();
    let p = b"../secret\0";
    say("openat_dotdot", sys(257, dir.as_raw_fd() as usize, p.as_ptr() as usize, 0, 0).to_string());
    let p = b"/etc/passwd\0";
    say("open_abs", sys(257, dir.as_raw_fd() as usize, p.as_ptr() as usize, 0, 0).to_string());
    say("std_dotdot", std::fs::read(format!("{rw}/../secret")).is_ok().to_string());
    std::os::unix::fs::symlink("../secret", format!("{rw}/up")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", format!("{rw}/abs")).unwrap();
    say("via_symlink_up", std::fs::read(format!("{rw}/up")).is_ok().to_string());
    say("via_symlink_abs", std::fs::read(format!("{rw}/abs")).is_ok().to_string());
    let p = b"/proc/self/environ\0";
    say("proc", sys(257, -100isize as usize, p.as_ptr() as usize, 0, 0).to_string());
    // Read-only preopen: readable, not writable.
    say("ro_read", std::fs::read_to_string(format!("{ro}/r.txt")).unwrap());
    say("ro_create", format!("{:?}", std::fs::write(format!("{ro}/x"), b"x").map_err(|e| e.raw_os_error())));
    say("ro_unlink", format!("{:?}", std::fs::remove_file(format!("{ro}/r.txt")).map_err(|e| e.raw_os_error())));
    say("ro_mkdir", format!("{:?}", std::fs::create_dir(format!("{ro}/m")).map_err(|e| e.raw_os_error())));
    // Sockets: only the allowed address.
    let l = std::net::TcpListener::bind(listen.as_str()).unwrap();
    say("bound", (l.local_addr().unwrap().port() != 0).to_string());
    say("bind_other", format!("{:?}", std::net::TcpListener::bind("127.0.0.1:1").map_err(|e| e.raw_os_error())));
    say("connect", format!("{:?}", std::net::TcpStream::connect(l.local_addr().unwrap()).map_err(|e| e.raw_os_error())));
    say("fd_bad", sys(0, 999, 0, 0, 0).to_string());
    // Bad arguments: errors, never a crash.
    say("null_path", sys(257, -100isize as usize, 0, 0, 0).to_string());
    let f = std::fs::File::open(format!("{ro}/r.txt")).unwrap();
    say("bad_buf", sys(0, f.as_raw_fd() as usize, 16, 10, 0).to_string());
    say("getdents_bad_buf", sys(217, dir.as_raw_fd() as usize, 16, 100, 0).to_string());
    let p = b"x\0";
    say("tmpfile", sys(257, dir.as_raw_fd() as usize, p.as_ptr() as usize, 0o20200002, 0o600).to_string());
    let how = [0u64, 0, 0x40];
    say("openat2_resolve", sys(437, dir.as_raw_fd() as usize, p.as_ptr() as usize, how.as_ptr() as usize, 24).to_string());
    let long = format!("{rw}/{}\0", "a".repeat(5000));
    say("long_path", sys(257, -100isize as usize, long.as_ptr() as usize, 0, 0).to_string());
    say("write_ro_fd", sys(1, f.as_raw_fd() as usize, p.as_ptr() as usize, 1, 0).to_string());
    ch.write_all(out.as_bytes()).unwrap();
}
"#;

#[test]
fn host_files_and_sockets_stay_inside_the_allow_list() {
    if !kvm() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let elf = guest(dir.path(), "hostio", HOSTIO);
    let (rw, ro) = (dir.path().join("rw"), dir.path().join("ro"));
    std::fs::create_dir(&rw).unwrap();
    std::fs::create_dir(&ro).unwrap();
    std::fs::write(dir.path().join("secret"), "secret").unwrap();
    std::fs::write(ro.join("r.txt"), "ro data").unwrap();
    let res = ward_vmm::HostResources {
        dirs: vec![
            ward_vmm::HostDir {
                path: rw.clone(),
                writable: true,
            },
            ward_vmm::HostDir {
                path: ro.clone(),
                writable: false,
            },
        ],
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        ..Default::default()
    };
    let cfg = KvmKeepConfig::from_path(&elf, 128 << 20)
        .unwrap()
        .args([
            "hostio",
            rw.to_str().unwrap(),
            ro.to_str().unwrap(),
            "127.0.0.1:0",
        ])
        .resources(res)
        .timeout(Duration::from_secs(120));
    let mut keep = ward_vmm::launch(&cfg).unwrap();
    let mut ch = keep.take_channel().unwrap();
    let mut out = String::new();
    ch.read_to_string(&mut out).unwrap();
    let exit = keep.wait().unwrap();
    assert_eq!(exit, GuestExit::Exited(0), "{out}");
    let want = "read=0123456789
list=g.txt
size=10
openat_dotdot=-18
open_abs=-2
std_dotdot=false
via_symlink_up=false
via_symlink_abs=false
proc=-2
ro_read=ro data
ro_create=Err(Some(30))
ro_unlink=Err(Some(30))
ro_mkdir=Err(Some(30))
bound=true
bind_other=Err(Some(13))
connect=Err(Some(13))
fd_bad=-9
null_path=-14
bad_buf=-14
getdents_bad_buf=-14
tmpfile=-95
openat2_resolve=-22
long_path=-36
write_ro_fd=-9
";
    assert_eq!(out, want);
    assert_eq!(
        std::fs::read_to_string(ro.join("r.txt")).unwrap(),
        "ro data"
    );
    assert!(!ro.join("x").exists());
}

/// A blocking `connect` to an allowed address completes (the host socket is
/// non-blocking: EINPROGRESS, a wait, then the outcome), and data flows both ways
/// while another guest thread keeps running.
const CONNECT: &str = r#"
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let mut ch = unsafe { std::fs::File::from_raw_fd(3) };
    let ticker = std::thread::spawn(|| {
        let mut n = 0u32;
        for _ in 0..5 { std::thread::sleep(std::time::Duration::from_millis(2)); n += 1; }
        n
    });
    let mut s = std::net::TcpStream::connect(a[1].as_str()).unwrap();
    s.write_all(b"hello host").unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).unwrap();
    let ticks = ticker.join().unwrap();
    write!(ch, "{}|{}", String::from_utf8_lossy(&buf), ticks).unwrap();
}
"#;

#[test]
fn connect_to_an_allowed_address() {
    if !kvm() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let elf = guest(dir.path(), "connect", CONNECT);
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut buf = [0u8; 10];
        c.read_exact(&mut buf).unwrap();
        c.write_all(b"howdy").unwrap();
        buf
    });
    let cfg = KvmKeepConfig::from_path(&elf, 128 << 20)
        .unwrap()
        .args(["connect".to_string(), addr.to_string()])
        .resources(ward_vmm::HostResources {
            connect: vec![addr],
            ..Default::default()
        })
        .timeout(Duration::from_secs(120));
    let mut keep = ward_vmm::launch(&cfg).unwrap();
    let mut ch = keep.take_channel().unwrap();
    let mut out = String::new();
    ch.read_to_string(&mut out).unwrap();
    assert_eq!(keep.wait().unwrap(), GuestExit::Exited(0), "{out}");
    assert_eq!(out, "howdy|5");
    assert_eq!(&server.join().unwrap(), b"hello host");
}
