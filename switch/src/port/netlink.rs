//! Just enough rtnetlink to configure a link: move it into a namespace,
//! rename it, set its MAC and bring it up, all in one RTM_NEWLINK request.
//!
//! One message matters here because the kernel applies it as one change
//! (`do_setlink`): the device is renamed as it enters the namespace, so its
//! temporary host-side name never clashes with anything there, and an
//! `EEXIST` means the name is taken inside the container.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// Attribute types from include/uapi/linux/if_link.h.
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_NET_NS_FD: u16 = 28;

const NLMSG_HDR_LEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const RTA_HDR_LEN: usize = 4;

/// What to change on link `index`.
#[derive(Debug, Default)]
pub struct LinkChange<'a> {
    pub index: i32,
    pub netns_fd: Option<RawFd>,
    pub ifname: Option<&'a str>,
    pub mac: Option<[u8; 6]>,
    pub up: bool,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = RTA_HDR_LEN + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(align4(buf.len()), 0);
}

/// Builds the RTM_NEWLINK request for `change`.
fn encode(change: &LinkChange<'_>, seq: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128);
    buf.extend_from_slice(&[0u8; NLMSG_HDR_LEN]);
    // struct ifinfomsg
    buf.push(libc::AF_UNSPEC as u8);
    buf.push(0);
    buf.extend_from_slice(&0u16.to_ne_bytes());
    buf.extend_from_slice(&change.index.to_ne_bytes());
    let up = libc::IFF_UP as u32;
    buf.extend_from_slice(&(if change.up { up } else { 0 }).to_ne_bytes());
    buf.extend_from_slice(&(if change.up { up } else { 0 }).to_ne_bytes());
    debug_assert_eq!(buf.len(), NLMSG_HDR_LEN + IFINFOMSG_LEN);
    if let Some(fd) = change.netns_fd {
        push_attr(&mut buf, IFLA_NET_NS_FD, &(fd as u32).to_ne_bytes());
    }
    if let Some(name) = change.ifname {
        let mut z = name.as_bytes().to_vec();
        z.push(0);
        push_attr(&mut buf, IFLA_IFNAME, &z);
    }
    if let Some(mac) = change.mac {
        push_attr(&mut buf, IFLA_ADDRESS, &mac);
    }
    let len = buf.len() as u32;
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    buf[0..4].copy_from_slice(&len.to_ne_bytes());
    buf[4..6].copy_from_slice(&libc::RTM_NEWLINK.to_ne_bytes());
    buf[6..8].copy_from_slice(&flags.to_ne_bytes());
    buf[8..12].copy_from_slice(&seq.to_ne_bytes());
    buf
}

/// Reads the kernel's acknowledgement: Ok, or the errno it reported.
fn decode_ack(reply: &[u8], seq: u32) -> io::Result<()> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed netlink acknowledgement");
    let hdr = reply.get(..NLMSG_HDR_LEN).ok_or_else(bad)?;
    let kind = u16::from_ne_bytes([hdr[4], hdr[5]]);
    let got_seq = u32::from_ne_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
    if kind != libc::NLMSG_ERROR as u16 || got_seq != seq {
        return Err(bad());
    }
    let code = reply.get(NLMSG_HDR_LEN..NLMSG_HDR_LEN + 4).ok_or_else(bad)?;
    match i32::from_ne_bytes([code[0], code[1], code[2], code[3]]) {
        0 => Ok(()),
        negative => Err(io::Error::from_raw_os_error(-negative)),
    }
}

/// Applies `change` through a fresh NETLINK_ROUTE socket.
pub fn set_link(change: &LinkChange<'_>) -> io::Result<()> {
    // SAFETY: socket(2) with constant arguments; the result is checked below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a freshly created descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let seq = 1;
    let msg = encode(change, seq);
    // SAFETY: an all-zero sockaddr_nl addresses the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: msg and kernel are valid for the lengths passed.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut reply = [0u8; 4096];
    // SAFETY: reply is a writable buffer of the length passed.
    let got = unsafe { libc::recv(sock.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    decode_ack(&reply[..got as usize], seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let msg = encode(
            &LinkChange {
                index: 7,
                netns_fd: Some(5),
                ifname: Some("eth0"),
                mac: Some([2, 0, 0, 0, 0, 1]),
                up: true,
            },
            9,
        );
        assert_eq!(msg.len() % 4, 0);
        assert_eq!(u32::from_ne_bytes(msg[0..4].try_into().unwrap()) as usize, msg.len());
        assert_eq!(i32::from_ne_bytes(msg[20..24].try_into().unwrap()), 7);
        // netns fd attribute, then "eth0\0" padded to 8, then the MAC padded to 8
        assert_eq!(&msg[32..36], &[8, 0, 28, 0]);
        assert_eq!(&msg[40..44], &[9, 0, 3, 0]);
        assert_eq!(&msg[44..49], b"eth0\0");
        assert_eq!(&msg[52..56], &[10, 0, 1, 0]);
        assert_eq!(msg.len(), 64);
    }

    #[test]
    fn ack_decoding() {
        let mut ack = vec![0u8; 36];
        ack[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        ack[8..12].copy_from_slice(&3u32.to_ne_bytes());
        assert!(decode_ack(&ack, 3).is_ok());
        ack[16..20].copy_from_slice(&(-libc::EEXIST).to_ne_bytes());
        assert_eq!(decode_ack(&ack, 3).unwrap_err().raw_os_error(), Some(libc::EEXIST));
        assert!(decode_ack(&ack, 4).is_err(), "an answer to another request is not ours");
        assert!(decode_ack(&ack[..10], 3).is_err());
    }
}
