//! The initial guest image: page tables, GDT, IDT, TSS, boot info, the shim and
//! `ward-keep`, and the initial vCPU state — and its launch measurement.

use std::io::Cursor;

use linux_loader::loader::{elf::Elf, KernelLoader};
use sha2::{Digest, Sha384};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use ward_shim::abi::*;

use crate::VmmError;

/// The shim guest image, built by `build.rs`.
pub(crate) static SHIM_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ward-shim.elf"));

const TWO_MIB: u64 = 2 << 20;
/// Smallest guest memory accepted.
pub const MIN_MEMORY: u64 = 64 << 20;

/// Initial vCPU state, part of the measurement.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuState {
    pub rip: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub star: u64,
    pub lstar: u64,
    pub sfmask: u64,
}

impl CpuState {
    fn words(&self) -> [u64; 9] {
        [
            self.rip,
            self.rflags,
            self.cr0,
            self.cr3,
            self.cr4,
            self.efer,
            self.star,
            self.lstar,
            self.sfmask,
        ]
    }
}

/// A guest image laid out in memory.
pub(crate) struct Image {
    pub mem: GuestMemoryMmap,
    pub cpu: CpuState,
    /// Measured regions `[gpa, gpa+len)`, ascending.
    pub regions: Vec<(u64, u64)>,
}

fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}
fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}
fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().expect("2 bytes"))
}

/// What the loader needs from `ward-keep`'s ELF headers.
struct KeepElf {
    pie: bool,
    entry: u64,
    phdr_vaddr: u64,
    phnum: u64,
    end: u64,
    min_vaddr: u64,
}

fn parse_keep(elf: &[u8]) -> Result<KeepElf, VmmError> {
    let bad = |why: &str| VmmError::BadKeepElf(why.to_string());
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return Err(bad("not an ELF file"));
    }
    if elf[4] != 2 || elf[5] != 1 || le16(elf, 18) != 62 {
        return Err(bad("not a 64-bit little-endian x86_64 ELF"));
    }
    let etype = le16(elf, 16);
    let pie = match etype {
        2 => false,
        3 => true,
        _ => return Err(bad("not an executable")),
    };
    let entry = le64(elf, 24);
    let phoff = le64(elf, 32) as usize;
    let phentsize = le16(elf, 54) as usize;
    let phnum = le16(elf, 56) as usize;
    if phentsize != 56 || phnum == 0 || phnum > 64 {
        return Err(bad("unexpected program headers"));
    }
    let phend = phoff
        .checked_add(phnum * 56)
        .filter(|&e| e <= elf.len())
        .ok_or_else(|| bad("program headers out of bounds"))?;
    let mut phdr_vaddr = None;
    let mut end = 0u64;
    let mut min_vaddr = u64::MAX;
    let mut first_load_off_vaddr = None;
    for ph in elf[phoff..phend].chunks(56) {
        let ptype = le32(ph, 0);
        let (off, vaddr, paddr, memsz) = (le64(ph, 8), le64(ph, 16), le64(ph, 24), le64(ph, 40));
        match ptype {
            1 => {
                if vaddr != paddr {
                    return Err(bad("PT_LOAD with p_paddr != p_vaddr"));
                }
                if first_load_off_vaddr.is_none() {
                    first_load_off_vaddr = Some((off, vaddr));
                }
                min_vaddr = min_vaddr.min(vaddr);
                end = end.max(
                    vaddr
                        .checked_add(memsz)
                        .ok_or_else(|| bad("segment overflows"))?,
                );
            }
            3 => return Err(bad("has PT_INTERP: it must be linked statically")),
            6 => phdr_vaddr = Some(vaddr),
            _ => {}
        }
    }
    if end == 0 {
        return Err(bad("no loadable segment"));
    }
    let phdr_vaddr = match (phdr_vaddr, first_load_off_vaddr) {
        (Some(v), _) => v,
        (None, Some((0, vaddr))) => vaddr + phoff as u64,
        _ => return Err(bad("cannot locate the program headers in memory")),
    };
    Ok(KeepElf {
        pie,
        entry,
        phdr_vaddr,
        phnum: phnum as u64,
        end,
        min_vaddr,
    })
}

fn page_up(x: u64) -> u64 {
    (x + PAGE - 1) & !(PAGE - 1)
}

fn write<T: AsRef<[u8]>>(mem: &GuestMemoryMmap, gpa: u64, bytes: T) -> Result<(), VmmError> {
    mem.write_slice(bytes.as_ref(), GuestAddress(gpa))
        .map_err(|e| VmmError::Memory(e.to_string()))
}

/// Builds the whole initial image in a fresh guest memory of `mem_size` bytes.
pub(crate) fn build(
    keep_elf: &[u8],
    mem_size: u64,
    args: &[String],
    env: &[String],
) -> Result<Image, VmmError> {
    if !(MIN_MEMORY..=MAX_GIB << 30).contains(&mem_size) || !mem_size.is_multiple_of(TWO_MIB) {
        return Err(VmmError::Config(format!(
            "guest memory must be a multiple of 2 MiB between {} MiB and {} GiB (got {mem_size} bytes)",
            MIN_MEMORY >> 20,
            MAX_GIB
        )));
    }
    let keep = parse_keep(keep_elf)?;
    let base = if keep.pie { KEEP_BASE } else { 0 };
    if keep.min_vaddr.saturating_add(base) < KEEP_BASE {
        return Err(VmmError::BadKeepElf(format!(
            "non-PIE image linked below {KEEP_BASE:#x}"
        )));
    }
    let keep_end = page_up(base + keep.end);
    if keep_end + (16 << 20) > mem_size {
        return Err(VmmError::Config(format!(
            "guest memory ({} MiB) is too small for ward-keep ({} MiB)",
            mem_size >> 20,
            keep_end >> 20
        )));
    }

    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), mem_size as usize)])
        .map_err(|e| VmmError::Memory(e.to_string()))?;

    // Page tables: identity map of all guest memory, 2 MiB pages except the first 2 MiB
    // (4 KiB pages, page 0 absent so that null pointers fault).
    const P_RW_US: u64 = 0b111;
    const PS: u64 = 1 << 7;
    write(&mem, PML4, (PDPT | P_RW_US).to_le_bytes())?;
    let gib = mem_size.div_ceil(1 << 30);
    let mut pdpt = Vec::new();
    for i in 0..gib {
        pdpt.extend_from_slice(&((PD_BASE + i * PAGE) | P_RW_US).to_le_bytes());
    }
    write(&mem, PDPT, &pdpt)?;
    let mut pd = Vec::new();
    for j in 0..mem_size / TWO_MIB {
        let e = if j == 0 {
            PT0 | P_RW_US
        } else {
            (j * TWO_MIB) | P_RW_US | PS
        };
        pd.extend_from_slice(&e.to_le_bytes());
    }
    write(&mem, PD_BASE, &pd)?;
    let mut pt = vec![0u8; 8];
    for k in 1..512u64 {
        pt.extend_from_slice(&((k * PAGE) | P_RW_US).to_le_bytes());
    }
    write(&mem, PT0, &pt)?;

    // GDT: null, kernel code/data, user data/code, TSS (busy, 16 bytes).
    let tss_limit: u64 = TSS_IOMAP_OFFSET + 8192;
    let tss_lo = (tss_limit & 0xffff)
        | ((TSS & 0xff_ffff) << 16)
        | (0x8b << 40)
        | (((tss_limit >> 16) & 0xf) << 48)
        | (((TSS >> 24) & 0xff) << 56);
    let gdt: [u64; 7] = [
        0,
        0x00af_9a00_0000_ffff,
        0x00cf_9200_0000_ffff,
        0x00cf_f200_0000_ffff,
        0x00af_fa00_0000_ffff,
        tss_lo,
        TSS >> 32,
    ];
    write(
        &mem,
        GDT,
        gdt.iter().flat_map(|g| g.to_le_bytes()).collect::<Vec<_>>(),
    )?;

    // IDT: the 32 exception vectors, ring-0 interrupt gates on IST1.
    let mut idt = Vec::new();
    for v in 0..EXCEPTION_VECTORS {
        let off = EXCEPTION_STUBS + 8 * v;
        let lo = (off & 0xffff)
            | ((KERNEL_CS as u64) << 16)
            | (1 << 32)
            | (0x8e << 40)
            | (((off >> 16) & 0xffff) << 48);
        idt.extend_from_slice(&lo.to_le_bytes());
        idt.extend_from_slice(&(off >> 32).to_le_bytes());
    }
    write(&mem, IDT, &idt)?;

    // TSS: RSP0, IST1, and an I/O bitmap that opens only the doorbell and boot ports.
    let mut tss = vec![0u8; (TSS_IOMAP_OFFSET + 8192 + 1) as usize];
    tss[4..12].copy_from_slice(&RING0_STACK_TOP.to_le_bytes());
    tss[0x24..0x2c].copy_from_slice(&IST1_TOP.to_le_bytes());
    tss[0x66..0x68].copy_from_slice(&(TSS_IOMAP_OFFSET as u16).to_le_bytes());
    let map = &mut tss[TSS_IOMAP_OFFSET as usize..];
    map.fill(0xff);
    for port in [DOORBELL_PORT, BOOT_PORT] {
        map[port as usize / 8] &= !(1 << (port % 8));
    }
    write(&mem, TSS, &tss)?;

    // Boot info.
    let mut strings = Vec::new();
    for s in args.iter().chain(env) {
        if s.as_bytes().contains(&0) {
            return Err(VmmError::Config(
                "an argument or variable contains NUL".into(),
            ));
        }
        strings.extend_from_slice(s.as_bytes());
        strings.push(0);
    }
    if strings.len() > BOOT_STRINGS || args.len() + env.len() > 64 {
        return Err(VmmError::Config(format!(
            "arguments and environment exceed {BOOT_STRINGS} bytes or 64 strings"
        )));
    }
    let mut bi = Vec::new();
    for w in [
        BOOT_MAGIC,
        mem_size,
        base,
        base + keep.entry,
        base + keep.phdr_vaddr,
        keep.phnum,
        keep_end,
        args.len() as u64,
        env.len() as u64,
    ] {
        bi.extend_from_slice(&w.to_le_bytes());
    }
    bi.extend_from_slice(&strings);
    write(&mem, BOOT_INFO, &bi)?;

    // The shim (fixed addresses) and ward-keep.
    let shim = Elf::load(&mem, None, &mut Cursor::new(SHIM_ELF), None)
        .map_err(|e| VmmError::Memory(format!("loading the shim: {e}")))?;
    if shim.kernel_end > SHIM_LIMIT {
        return Err(VmmError::Memory("the shim image is too large".into()));
    }
    let offset = if keep.pie {
        Some(GuestAddress(base))
    } else {
        None
    };
    Elf::load(&mem, offset, &mut Cursor::new(keep_elf), None)
        .map_err(|e| VmmError::BadKeepElf(format!("loading: {e}")))?;

    let cpu = CpuState {
        rip: shim.kernel_load.0,
        rflags: 0x2,
        cr0: 0x8005_0033, // PG | WP | NE | ET | MP | PE
        cr3: PML4,
        cr4: 0x1_0620, // FSGSBASE | OSXMMEXCPT | OSFXSR | PAE
        efer: 0xd01,   // NXE | LMA | LME | SCE
        star: ((KERNEL_DS as u64 | 3) << 48) | ((KERNEL_CS as u64) << 32),
        lstar: SYSCALL_ENTRY,
        sfmask: 0x4_7700,
    };
    let regions = vec![
        (PML4, LOW_END - PML4),
        (SHIM_BASE, page_up(shim.kernel_end) - SHIM_BASE),
        (KEEP_BASE, keep_end - KEEP_BASE),
    ];
    Ok(Image { mem, cpu, regions })
}

/// Domain separator at the start of the measured stream.
pub(crate) const MEASUREMENT_TAG: &[u8] = b"ward-kvm-launch-v1\0";

/// Copies the measured bytes out of guest memory (before the vCPU runs).
pub(crate) fn snapshot(img: &Image) -> Result<Vec<(u64, Vec<u8>)>, VmmError> {
    img.regions
        .iter()
        .map(|&(gpa, len)| {
            let mut buf = vec![0u8; len as usize];
            img.mem
                .read_slice(&mut buf, GuestAddress(gpa))
                .map_err(|e| VmmError::Memory(e.to_string()))?;
            Ok((gpa, buf))
        })
        .collect()
}

/// SHA-384 over the measured stream: tag, memory size, each region (gpa, length,
/// bytes), then the initial vCPU state words.
pub(crate) fn measure(mem_size: u64, regions: &[(u64, Vec<u8>)], cpu: &CpuState) -> [u8; 48] {
    let mut h = Sha384::new();
    h.update(MEASUREMENT_TAG);
    h.update(mem_size.to_le_bytes());
    for (gpa, bytes) in regions {
        h.update(gpa.to_le_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    h.update(b"vcpu");
    for w in cpu.words() {
        h.update(w.to_le_bytes());
    }
    h.finalize().into()
}
