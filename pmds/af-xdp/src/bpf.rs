//! Just enough of bpf(2) to run AF_XDP without libbpf: an `XSKMAP`, a five-instruction XDP
//! program that redirects each frame to the socket of its receive queue, and reading back the
//! name of a program found attached to an interface (linux/bpf.h, Documentation/bpf/).
#![allow(unsafe_code)] // the bpf(2) system call with attribute unions we build.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `BPF_FUNC_redirect_map`.
const HELPER_REDIRECT_MAP: i32 = 51;
/// `XDP_PASS`: the action for a frame whose queue has no socket.
pub const XDP_PASS: i32 = 2;
/// `BPF_PSEUDO_MAP_FD`: the 64-bit immediate is a map file descriptor.
const BPF_PSEUDO_MAP_FD: u8 = 1;
/// Offset of `rx_queue_index` in `struct xdp_md`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;
/// `BPF_OBJ_NAME_LEN`.
const OBJ_NAME_LEN: usize = 16;
/// The name of every program rdk loads: how a program left behind by a crashed rdk is told
/// apart from someone else's.
pub const PROG_NAME: &str = "rdk_xsk_redir";

/// One eBPF instruction (`struct bpf_insn`): opcode, dst/src registers, offset, immediate.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Opcode: class | size/op | mode/source.
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    pub regs: u8,
    /// Signed offset.
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self {
            code,
            regs: (src << 4) | (dst & 0xf),
            off,
            imm,
        }
    }

    /// The instruction's 8 bytes as the kernel reads them (little-endian host).
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_ne_bytes());
        b[4..8].copy_from_slice(&self.imm.to_ne_bytes());
        b
    }

    /// `dst = *(u32 *)(src + off)`: BPF_LDX | BPF_MEM | BPF_W.
    pub const fn ldx_w(dst: u8, src: u8, off: i16) -> Self {
        Self::new(0x61, dst, src, off, 0)
    }

    /// `dst = imm` (64-bit move of a sign-extended immediate): BPF_ALU64 | BPF_MOV | BPF_K.
    pub const fn mov64_imm(dst: u8, imm: i32) -> Self {
        Self::new(0xb7, dst, 0, 0, imm)
    }

    /// `dst = map fd` as the two-slot 64-bit load the verifier turns into a map pointer:
    /// BPF_LD | BPF_DW | BPF_IMM with src = BPF_PSEUDO_MAP_FD.
    pub const fn ld_map_fd(dst: u8, fd: i32) -> [Self; 2] {
        [
            Self::new(0x18, dst, BPF_PSEUDO_MAP_FD, 0, fd),
            Self::new(0, 0, 0, 0, 0),
        ]
    }

    /// `call helper`: BPF_JMP | BPF_CALL.
    pub const fn call(helper: i32) -> Self {
        Self::new(0x85, 0, 0, 0, helper)
    }

    /// `exit` (return r0): BPF_JMP | BPF_EXIT.
    pub const fn exit() -> Self {
        Self::new(0x95, 0, 0, 0, 0)
    }
}

/// The redirect program: `return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);` —
/// the flags argument's low bits are the action when the queue has no socket (kernel ≥ 5.3),
/// so frames for queues rdk does not own reach the kernel stack as before.
pub fn redirect_program(map_fd: i32) -> [Insn; 6] {
    let [ld0, ld1] = Insn::ld_map_fd(1, map_fd);
    [
        Insn::ldx_w(2, 1, XDP_MD_RX_QUEUE_INDEX),
        ld0,
        ld1,
        Insn::mov64_imm(3, XDP_PASS),
        Insn::call(HELPER_REDIRECT_MAP),
        Insn::exit(),
    ]
}

/// `return XDP_PASS;` — a program that does nothing (tests use it as "someone else's").
pub fn pass_program() -> [Insn; 2] {
    [Insn::mov64_imm(0, XDP_PASS), Insn::exit()]
}

/// The attribute union is 144 bytes on current kernels; fields we leave out stay zero.
#[repr(C, align(8))]
struct Attr([u8; 144]);

impl Attr {
    fn new() -> Self {
        Self([0; 144])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn bytes(&mut self, off: usize, v: &[u8]) -> &mut Self {
        self.0[off..off + v.len()].copy_from_slice(v);
        self
    }
}

fn sys_bpf(cmd: libc::c_long, attr: &mut Attr) -> Result<libc::c_long, Errno> {
    // SAFETY: bpf(2) reads (and for some commands writes) at most `size` bytes of `attr`,
    // which lives across the call; pointers inside it point at live buffers of the caller.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    Errno::result(r)
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: bpf(2) returned a fresh descriptor, ours alone.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

fn obj_name(name: &str) -> [u8; OBJ_NAME_LEN] {
    let mut n = [0u8; OBJ_NAME_LEN];
    let b = name.as_bytes();
    let len = b.len().min(OBJ_NAME_LEN - 1);
    n[..len].copy_from_slice(&b[..len]);
    n
}

/// An `XSKMAP` of `entries` slots (queue id → socket).
pub fn create_xskmap(entries: u32) -> Result<OwnedFd, Errno> {
    let mut a = Attr::new();
    a.u32(0, BPF_MAP_TYPE_XSKMAP)
        .u32(4, 4)
        .u32(8, 4)
        .u32(12, entries)
        .bytes(28, &obj_name("rdk_xsks"));
    sys_bpf(BPF_MAP_CREATE, &mut a).map(owned)
}

/// Puts socket `xsk` in slot `queue` of `map`.
pub fn xskmap_set(map: &OwnedFd, queue: u32, xsk: RawFd) -> Result<(), Errno> {
    let (key, value) = (queue, xsk as u32);
    let mut a = Attr::new();
    a.u32(0, map.as_raw_fd() as u32)
        .u64(8, &key as *const u32 as u64)
        .u64(16, &value as *const u32 as u64);
    sys_bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(drop)
}

/// Empties slot `queue` of `map`.
pub fn xskmap_clear(map: &OwnedFd, queue: u32) -> Result<(), Errno> {
    let key = queue;
    let mut a = Attr::new();
    a.u32(0, map.as_raw_fd() as u32)
        .u64(8, &key as *const u32 as u64);
    sys_bpf(BPF_MAP_DELETE_ELEM, &mut a).map(drop)
}

/// Loads `insns` as an XDP program called `name`. On a verifier refusal the error is the
/// verifier's log (for the message), with its errno.
pub fn load_xdp(insns: &[Insn], name: &str) -> Result<OwnedFd, (Errno, String)> {
    let code: Vec<u8> = insns.iter().flat_map(|i| i.to_bytes()).collect();
    let license = b"Dual MIT/GPL\0";
    let mut log = vec![0u8; 4096];
    let mut a = Attr::new();
    a.u32(0, BPF_PROG_TYPE_XDP)
        .u32(4, insns.len() as u32)
        .u64(8, code.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64)
        .bytes(48, &obj_name(name));
    match sys_bpf(BPF_PROG_LOAD, &mut a) {
        Ok(fd) => Ok(owned(fd)),
        Err(e) if e == Errno::EACCES || e == Errno::EINVAL => {
            // Load again with the verifier log on, only to explain the refusal.
            a.u32(24, 1)
                .u32(28, log.len() as u32)
                .u64(32, log.as_mut_ptr() as u64);
            let r = sys_bpf(BPF_PROG_LOAD, &mut a);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            match r {
                Ok(fd) => Ok(owned(fd)),
                Err(e) => Err((e, String::from_utf8_lossy(&log[..end]).into_owned())),
            }
        }
        Err(e) => Err((e, String::new())),
    }
}

/// A descriptor for the loaded program with id `id`.
pub fn prog_fd_by_id(id: u32) -> Result<OwnedFd, Errno> {
    let mut a = Attr::new();
    a.u32(0, id);
    sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut a).map(owned)
}

/// The id and name of the program behind `fd` (`struct bpf_prog_info`: id at 4, name at 64).
pub fn prog_info(fd: &OwnedFd) -> Result<(u32, String), Errno> {
    let mut info = [0u8; 232];
    let mut a = Attr::new();
    a.u32(0, fd.as_raw_fd() as u32)
        .u32(4, info.len() as u32)
        .u64(8, info.as_mut_ptr() as u64);
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut a)?;
    // The kernel writes info_len back: it may be shorter than asked (older kernels).
    let got = u32::from_ne_bytes(a.0[4..8].try_into().unwrap_or([0; 4])) as usize;
    if got < 64 + OBJ_NAME_LEN {
        return Err(Errno::EPROTO);
    }
    let id = u32::from_ne_bytes([info[4], info[5], info[6], info[7]]);
    let raw = &info[64..64 + OBJ_NAME_LEN];
    let end = raw.iter().position(|&b| b == 0).unwrap_or(OBJ_NAME_LEN);
    Ok((id, String::from_utf8_lossy(&raw[..end]).into_owned()))
}

/// A process that holds program `id` open, other than through this process's descriptor
/// `ours` (the one just obtained to inspect it): found by its `/proc/PID/fdinfo` (`prog_id:`).
/// A port that attached rdk's program keeps a descriptor for it until it detaches it, so a
/// program of rdk's that someone holds belongs to a live port (of this process or another);
/// one nobody holds is a crashed run's leftover. Processes whose descriptors cannot be read
/// (another user's, without privilege) are not seen.
pub fn prog_holder(id: u32, ours: RawFd) -> Option<u32> {
    let me = std::process::id();
    let want = format!("prog_id:\t{id}");
    for p in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for f in fds.flatten() {
            let Some(fd) = f.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else {
                continue;
            };
            if pid == me && fd == ours {
                continue;
            }
            let is_prog =
                std::fs::read_link(f.path()).is_ok_and(|l| l.as_os_str() == "anon_inode:bpf-prog");
            if is_prog
                && std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
                    .is_ok_and(|i| i.lines().any(|l| l.trim_end() == want))
            {
                return Some(pid);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_encode_as_the_kernel_reads_them() {
        // struct bpf_insn: code, dst | src << 4, off (le16), imm (le32).
        assert_eq!(
            Insn::ldx_w(2, 1, 16).to_bytes(),
            [0x61, 0x12, 0x10, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            Insn::mov64_imm(3, 2).to_bytes(),
            [0xb7, 0x03, 0, 0, 2, 0, 0, 0]
        );
        assert_eq!(Insn::call(51).to_bytes(), [0x85, 0, 0, 0, 51, 0, 0, 0]);
        assert_eq!(Insn::exit().to_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        let [a, b] = Insn::ld_map_fd(1, 7);
        assert_eq!(a.to_bytes(), [0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(b.to_bytes(), [0; 8]);
        assert_eq!(
            Insn::ldx_w(2, 1, -4).to_bytes(),
            [0x61, 0x12, 0xfc, 0xff, 0, 0, 0, 0]
        );
    }

    #[test]
    fn redirect_program_shape() {
        let p = redirect_program(9);
        assert_eq!(p.len(), 6);
        assert_eq!(p[0], Insn::ldx_w(2, 1, 16), "r2 = ctx->rx_queue_index");
        assert_eq!(p[1].imm, 9, "r1 = the map");
        assert_eq!(p[3], Insn::mov64_imm(3, XDP_PASS), "fallback action");
        assert_eq!(p[4], Insn::call(51), "bpf_redirect_map");
        assert_eq!(*p.last().unwrap(), Insn::exit());
        assert_eq!(pass_program()[0].to_bytes()[0], 0xb7);
    }

    #[test]
    fn names_are_cut_to_fifteen_bytes() {
        let n = obj_name("a_very_long_program_name");
        assert_eq!(&n[..15], b"a_very_long_pro");
        assert_eq!(n[15], 0);
        assert!(PROG_NAME.len() < OBJ_NAME_LEN);
    }
}
