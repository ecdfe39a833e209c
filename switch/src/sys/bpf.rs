//! The XDP side of an AF_XDP port: an XSKMAP, the program that redirects a
//! queue's frames into it, and the link that attaches the program.
//!
//! Why no crate: `afxdp` 0.4 cannot choose the XDP mode, leaves its program
//! attached after exit and cannot kick TX; `xsk-rs` works but needs clang,
//! m4, libpcap-dev and libelf-dev to build. The program is six instructions
//! and the kernel interface three bpf(2) commands, all defined below.
//!
//! The program is attached with BPF_LINK_CREATE rather than the older
//! netlink attach: a link belongs to its file descriptor, so the kernel
//! detaches the program when the last descriptor closes, whether the port is
//! deleted, vswitchd exits, or vswitchd is killed with -9.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// include/uapi/linux/bpf.h
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const XDP_PASS: i32 = 2;
const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;
// include/uapi/linux/if_link.h
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// Size of `union bpf_attr` this code fills; the kernel accepts any size up
/// to its own as long as the bytes it does not know are zero.
const ATTR_LEN: usize = 144;
/// Offset of `rx_queue_index` in `struct xdp_md`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;
const VERIFIER_LOG_LEN: usize = 4096;

/// Where the XDP program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver, before an skb exists.
    Native,
    /// In the generic network stack, after the skb is built.
    Generic,
}

impl XdpMode {
    fn flags(self) -> u32 {
        match self {
            XdpMode::Native => XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => XDP_FLAGS_SKB_MODE,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("cannot create the XSK map (bpf needs CAP_BPF/CAP_SYS_ADMIN and a kernel with AF_XDP)")]
    MapCreate(#[source] io::Error),
    #[error("cannot put the AF_XDP socket in the XSK map")]
    MapUpdate(#[source] io::Error),
    #[error("the kernel refused the XDP redirect program: {log}")]
    ProgLoad {
        log: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot attach the XDP program in {mode} mode")]
    Attach {
        mode: &'static str,
        #[source]
        source: io::Error,
    },
}

#[repr(C, align(8))]
struct Attr([u8; ATTR_LEN]);

impl Attr {
    fn new() -> Attr {
        Attr([0; ATTR_LEN])
    }

    fn u32(&mut self, offset: usize, value: u32) -> &mut Attr {
        self.0[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
        self
    }

    fn u64(&mut self, offset: usize, value: u64) -> &mut Attr {
        self.0[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
        self
    }
}

/// bpf(2); commands that create objects return a descriptor.
fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: attr is a valid, aligned, zero-padded bpf_attr of ATTR_LEN
    // bytes, and every pointer stored in it outlives the call.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), ATTR_LEN as libc::c_uint) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn bpf_fd(cmd: libc::c_long, attr: &mut Attr) -> io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)?;
    // SAFETY: the command returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// One eBPF instruction, encoded as `struct bpf_insn`.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code) | u64::from(dst | (src << 4)) << 8 | u64::from(off as u16) << 16 | u64::from(imm as u32) << 32
}

/// `return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);`
/// Frames of a queue without a socket in the map go on to the stack.
fn redirect_program(map_fd: RawFd) -> [u64; 6] {
    const R1: u8 = 1;
    const R2: u8 = 2;
    const R3: u8 = 3;
    [
        insn(0x61, R2, R1, XDP_MD_RX_QUEUE_INDEX, 0), // r2 = *(u32 *)(r1 + 16)
        insn(0x18, R1, BPF_PSEUDO_MAP_FD, 0, map_fd), // r1 = map (ld_imm64, low half)
        insn(0x00, 0, 0, 0, 0),                       //      (high half)
        insn(0xb7, R3, 0, 0, XDP_PASS),               // r3 = XDP_PASS
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),   // call bpf_redirect_map
        insn(0x95, 0, 0, 0, 0),                       // exit
    ]
}

/// What a shared interface's program hands vswitchd: frames to this MAC,
/// and ARP about this address; the rest goes on to the host's stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedFilter {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
}

/// The program of a shared interface (the uplink's MAC and ARP for its
/// address to the socket, everything else `XDP_PASS`):
/// ```text
///  0  r6 = r1; r2 = ctx->data; r3 = ctx->data_end
///  3  if data + 42 > data_end goto short
///  6  if dst MAC == ours goto redirect
/// 11  if ethertype == ARP && ARP target IP == ours goto redirect
/// 15  goto redirect ... pass
/// 16  short: if data + 14 > data_end goto pass
/// 19  if dst MAC != ours goto pass
/// 23  redirect: return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS)
/// 29  pass: return XDP_PASS
/// ```
/// Comparisons are 32-bit (JMP32) against the bytes as the CPU loads them.
fn shared_program(map_fd: RawFd, filter: &SharedFilter) -> Vec<u64> {
    const R0: u8 = 0;
    const R1: u8 = 1;
    const R2: u8 = 2;
    const R3: u8 = 3;
    const R4: u8 = 4;
    const R5: u8 = 5;
    const R6: u8 = 6;
    const MOV_X: u8 = 0xbf;
    const ADD_K: u8 = 0x07;
    const LDX_W: u8 = 0x61;
    const LDX_H: u8 = 0x69;
    const JGT_X: u8 = 0x2d;
    const JNE32_K: u8 = 0x56;
    const JA: u8 = 0x05;
    let m = filter.mac;
    let mac_lo = u32::from_ne_bytes([m[0], m[1], m[2], m[3]]) as i32;
    let mac_hi = i32::from(u16::from_ne_bytes([m[4], m[5]]));
    let arp = i32::from(u16::from_ne_bytes([0x08, 0x06]));
    let ip = u32::from_ne_bytes(filter.ip.octets()) as i32;
    vec![
        insn(MOV_X, R6, R1, 0, 0),                     //  0 r6 = ctx
        insn(LDX_W, R2, R6, 0, 0),                     //  1 r2 = data
        insn(LDX_W, R3, R6, 4, 0),                     //  2 r3 = data_end
        insn(MOV_X, R4, R2, 0, 0),                     //  3
        insn(ADD_K, R4, 0, 0, 42),                     //  4 r4 = data + 42
        insn(JGT_X, R4, R3, 10, 0),                    //  5 -> 16 short
        insn(LDX_W, R5, R2, 0, 0),                     //  6
        insn(JNE32_K, R5, 0, 3, mac_lo),               //  7 -> 11 arp
        insn(LDX_H, R5, R2, 4, 0),                     //  8
        insn(JNE32_K, R5, 0, 1, mac_hi),               //  9 -> 11 arp
        insn(JA, 0, 0, 12, 0),                         // 10 -> 23 redirect
        insn(LDX_H, R5, R2, 12, 0),                    // 11 arp: ethertype
        insn(JNE32_K, R5, 0, 16, arp),                 // 12 -> 29 pass
        insn(LDX_W, R5, R2, 38, 0),                    // 13 ARP target protocol address
        insn(JNE32_K, R5, 0, 14, ip),                  // 14 -> 29 pass
        insn(JA, 0, 0, 7, 0),                          // 15 -> 23 redirect
        insn(MOV_X, R4, R2, 0, 0),                     // 16 short:
        insn(ADD_K, R4, 0, 0, 14),                     // 17
        insn(JGT_X, R4, R3, 10, 0),                    // 18 -> 29 pass
        insn(LDX_W, R5, R2, 0, 0),                     // 19
        insn(JNE32_K, R5, 0, 8, mac_lo),               // 20 -> 29 pass
        insn(LDX_H, R5, R2, 4, 0),                     // 21
        insn(JNE32_K, R5, 0, 6, mac_hi),               // 22 -> 29 pass
        insn(LDX_W, R2, R1, XDP_MD_RX_QUEUE_INDEX, 0), // 23 redirect (r1: ctx still)
        insn(0x18, R1, BPF_PSEUDO_MAP_FD, 0, map_fd),  // 24 r1 = map
        insn(0x00, 0, 0, 0, 0),                        // 25
        insn(0xb7, R3, 0, 0, XDP_PASS),                // 26
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),    // 27
        insn(0x95, 0, 0, 0, 0),                        // 28 exit
        insn(0xb7, R0, 0, 0, XDP_PASS),                // 29 pass:
        insn(0x95, 0, 0, 0, 0),                        // 30 exit
    ]
}

/// An XDP program redirecting one interface's queues to AF_XDP sockets,
/// attached for as long as this value lives.
pub struct XdpRedirect {
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
    mode: XdpMode,
}

impl XdpRedirect {
    /// Creates the map with `socket` at `queue`, then attaches the program to
    /// `ifindex`, trying each of `modes` in order.
    /// With `shared`, only what that filter names is redirected.
    pub fn attach(
        ifindex: u32,
        queue: u32,
        socket: RawFd,
        modes: &[XdpMode],
        shared: Option<&SharedFilter>,
    ) -> Result<XdpRedirect, BpfError> {
        let map = bpf_fd(
            BPF_MAP_CREATE,
            Attr::new()
                .u32(0, BPF_MAP_TYPE_XSKMAP)
                .u32(4, 4)
                .u32(8, 4)
                .u32(12, queue + 1),
        )
        .map_err(BpfError::MapCreate)?;
        let key = queue;
        let value = socket as u32;
        bpf(
            BPF_MAP_UPDATE_ELEM,
            Attr::new()
                .u32(0, map.as_raw_fd() as u32)
                .u64(8, &key as *const u32 as u64)
                .u64(16, &value as *const u32 as u64),
        )
        .map_err(BpfError::MapUpdate)?;
        let program = match shared {
            Some(filter) => shared_program(map.as_raw_fd(), filter),
            None => redirect_program(map.as_raw_fd()).to_vec(),
        };
        let prog = load_program(&program)?;
        let mut last = None;
        for &mode in modes {
            let attr = Attr::new()
                .u32(0, prog.as_raw_fd() as u32)
                .u32(4, ifindex)
                .u32(8, BPF_XDP)
                .u32(12, mode.flags())
                .0;
            match bpf_fd(BPF_LINK_CREATE, &mut Attr(attr)) {
                Ok(link) => {
                    return Ok(XdpRedirect {
                        map,
                        _prog: prog,
                        _link: link,
                        mode,
                    })
                }
                Err(source) => {
                    last = Some(BpfError::Attach {
                        mode: mode.name(),
                        source,
                    })
                }
            }
        }
        Err(last.unwrap_or(BpfError::Attach {
            mode: "any",
            source: io::Error::from_raw_os_error(libc::EINVAL),
        }))
    }

    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    pub fn map_fd(&self) -> RawFd {
        self.map.as_raw_fd()
    }
}

fn load_program(program: &[u64]) -> Result<OwnedFd, BpfError> {
    let license = b"GPL\0";
    let name = b"vswitch_xsk\0";
    let mut log = vec![0u8; VERIFIER_LOG_LEN];
    let mut attr = Attr::new();
    attr.u32(0, BPF_PROG_TYPE_XDP)
        .u32(4, program.len() as u32)
        .u64(8, program.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64)
        .u32(68, BPF_XDP);
    attr.0[48..48 + name.len()].copy_from_slice(name);
    // Frags-aware first (frames over several buffers, for MTUs above a
    // page); the programs read only the first 42 bytes, always in the
    // first buffer. Kernels without the flag take the program without it.
    attr.u32(44, BPF_F_XDP_HAS_FRAGS);
    if let Ok(fd) = bpf_fd(BPF_PROG_LOAD, &mut attr) {
        return Ok(fd);
    }
    attr.u32(44, 0);
    if let Ok(fd) = bpf_fd(BPF_PROG_LOAD, &mut attr) {
        return Ok(fd);
    }
    // Again with the verifier's log, to say why.
    attr.u32(24, 1)
        .u32(28, log.len() as u32)
        .u64(32, log.as_mut_ptr() as u64);
    bpf_fd(BPF_PROG_LOAD, &mut attr).map_err(|source| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        let text = String::from_utf8_lossy(&log[..end]).trim().replace('\n', "; ");
        BpfError::ProgLoad {
            log: if text.is_empty() {
                "no verifier log".into()
            } else {
                text
            },
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruction_encoding() {
        // r2 = *(u32 *)(r1 + 16): opcode 0x61, dst 2, src 1, off 16
        assert_eq!(insn(0x61, 2, 1, 16, 0).to_le_bytes(), [0x61, 0x12, 16, 0, 0, 0, 0, 0]);
        // call 51
        assert_eq!(insn(0x85, 0, 0, 0, 51).to_le_bytes(), [0x85, 0, 0, 0, 51, 0, 0, 0]);
        let prog = redirect_program(7);
        assert_eq!(
            prog[1].to_le_bytes(),
            [0x18, 0x11, 0, 0, 7, 0, 0, 0],
            "ld_imm64 r1 = map fd 7"
        );
        assert_eq!(prog[5], 0x95, "exit");
    }

    #[test]
    fn shared_program_jumps_land_where_the_listing_says() {
        let filter = SharedFilter {
            mac: [2, 0x76, 0x74, 1, 2, 3],
            ip: Ipv4Addr::new(10, 0, 0, 2),
        };
        let prog = shared_program(3, &filter);
        assert_eq!(prog.len(), 31);
        let target = |pc: usize| (pc as i64 + 1 + i64::from((prog[pc] >> 16) as u16 as i16)) as usize;
        let (redirect, pass, short, arp) = (23, 29, 16, 11);
        for (pc, to) in [
            (5, short),
            (7, arp),
            (9, arp),
            (10, redirect),
            (12, pass),
            (14, pass),
            (15, redirect),
        ] {
            assert_eq!(target(pc), to, "jump at {pc}");
        }
        for (pc, to) in [(18, pass), (20, pass), (22, pass)] {
            assert_eq!(target(pc), to, "jump at {pc}");
        }
        // The redirect tail is the plain program's.
        assert_eq!(prog[23..29], redirect_program(3)[..]);
        assert_eq!(prog[30], 0x95);
    }
}
