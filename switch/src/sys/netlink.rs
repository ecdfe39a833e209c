//! Just enough rtnetlink for ports: create a veth pair, configure a link
//! (move it into a namespace, rename it, set its MAC, bring it up, all in
//! one RTM_NEWLINK), and delete a link.
//!
//! One message per change matters because the kernel applies it as one
//! (`do_setlink`): a device is renamed as it enters the namespace, so its
//! temporary host-side name never clashes with anything there, and an
//! `EEXIST` means the name is taken inside the container.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// include/uapi/linux/if_link.h and veth.h
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_GSO_MAX_SIZE: u16 = 41;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const RTM_DELLINK: u16 = 17;
// include/uapi/linux/if_addr.h and rtnetlink.h
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const NLM_F_REPLACE: libc::c_int = 0x100;

const NLMSG_HDR_LEN: usize = 16;
const RTA_HDR_LEN: usize = 4;

/// What to change on link `index`.
#[derive(Debug, Default)]
pub struct LinkChange<'a> {
    pub index: i32,
    pub netns_fd: Option<RawFd>,
    pub ifname: Option<&'a str>,
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    /// The largest TCP super-frame the stack may hand the device.
    pub gso_max_size: Option<u32>,
    pub up: bool,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// An rtnetlink request being built.
struct Message {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Message {
    fn new(kind: u16, flags: u16) -> Message {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&[0u8; NLMSG_HDR_LEN]);
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
        Message { buf, nests: Vec::new() }
    }

    /// Appends a `struct ifinfomsg`.
    fn ifinfo(&mut self, index: i32, up: bool) -> &mut Message {
        let up_flag = if up { libc::IFF_UP as u32 } else { 0 };
        self.buf.push(libc::AF_UNSPEC as u8);
        self.buf.push(0);
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&index.to_ne_bytes());
        self.buf.extend_from_slice(&up_flag.to_ne_bytes());
        self.buf.extend_from_slice(&up_flag.to_ne_bytes());
        self
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Message {
        let len = RTA_HDR_LEN + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    fn attr_str(&mut self, kind: u16, text: &str) -> &mut Message {
        let mut z = text.as_bytes().to_vec();
        z.push(0);
        self.attr(kind, &z)
    }

    fn begin(&mut self, kind: u16) -> &mut Message {
        self.nests.push(self.buf.len());
        self.attr(kind, &[])
    }

    fn end(&mut self) -> &mut Message {
        if let Some(start) = self.nests.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn finish(&mut self, seq: u32) -> &[u8] {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        &self.buf
    }
}

fn link_change(change: &LinkChange<'_>) -> Message {
    let mut msg = Message::new(libc::RTM_NEWLINK, 0);
    msg.ifinfo(change.index, change.up);
    if let Some(fd) = change.netns_fd {
        msg.attr(IFLA_NET_NS_FD, &(fd as u32).to_ne_bytes());
    }
    if let Some(name) = change.ifname {
        msg.attr_str(IFLA_IFNAME, name);
    }
    if let Some(mac) = change.mac {
        msg.attr(IFLA_ADDRESS, &mac);
    }
    if let Some(mtu) = change.mtu {
        msg.attr(IFLA_MTU, &mtu.to_ne_bytes());
    }
    if let Some(size) = change.gso_max_size {
        msg.attr(IFLA_GSO_MAX_SIZE, &size.to_ne_bytes());
    }
    msg
}

fn veth_pair(name: &str, peer: &VethPeer<'_>) -> Message {
    let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    let mut msg = Message::new(libc::RTM_NEWLINK, flags);
    msg.ifinfo(0, false).attr_str(IFLA_IFNAME, name);
    msg.begin(IFLA_LINKINFO).attr_str(IFLA_INFO_KIND, "veth");
    msg.begin(IFLA_INFO_DATA)
        .begin(VETH_INFO_PEER)
        .ifinfo(0, false)
        .attr_str(IFLA_IFNAME, peer.name);
    if let Some(fd) = peer.netns_fd {
        msg.attr(IFLA_NET_NS_FD, &(fd as u32).to_ne_bytes());
    }
    if let Some(mac) = peer.mac {
        msg.attr(IFLA_ADDRESS, &mac);
    }
    msg.end().end().end();
    msg
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

/// Sends one request on a fresh NETLINK_ROUTE socket and waits for its ack.
fn request(msg: &mut Message) -> io::Result<()> {
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
    let bytes = msg.finish(seq);
    // SAFETY: an all-zero sockaddr_nl addresses the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: bytes and kernel are valid for the lengths passed.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
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

/// Applies `change` to a link.
pub fn set_link(change: &LinkChange<'_>) -> io::Result<()> {
    request(&mut link_change(change))
}

/// The other end of a veth pair being created.
#[derive(Debug, Default)]
pub struct VethPeer<'a> {
    pub name: &'a str,
    /// Made in this namespace (None: vswitchd's).
    pub netns_fd: Option<RawFd>,
    pub mac: Option<[u8; 6]>,
}

/// Creates a veth pair `name` <-> `peer` in vswitchd's namespace, the peer
/// where it says (made there: no move between namespaces), both down.
pub fn create_veth(name: &str, peer: &VethPeer<'_>) -> io::Result<()> {
    request(&mut veth_pair(name, peer))
}

/// Adds `ip/prefix` to link `index` (of the namespace this thread is in).
/// An address already there is not an error.
pub fn add_address(index: u32, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
    let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    let mut msg = Message::new(libc::RTM_NEWADDR, flags);
    // struct ifaddrmsg { family, prefixlen, flags, scope, index }
    msg.buf.extend_from_slice(&[libc::AF_INET as u8, prefix, 0, 0]);
    msg.buf.extend_from_slice(&index.to_ne_bytes());
    msg.attr(IFA_LOCAL, &ip.octets()).attr(IFA_ADDRESS, &ip.octets());
    match request(&mut msg) {
        Err(err) if err.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

/// Sets the default route via `gateway` out of link `index` (of the
/// namespace this thread is in), replacing any other default route.
pub fn set_default_route(index: u32, gateway: Ipv4Addr) -> io::Result<()> {
    let flags = (libc::NLM_F_CREATE | NLM_F_REPLACE) as u16;
    let mut msg = Message::new(libc::RTM_NEWROUTE, flags);
    // struct rtmsg { family, dst_len, src_len, tos, table, protocol, scope, type, flags }
    msg.buf.extend_from_slice(&[
        libc::AF_INET as u8,
        0,
        0,
        0,
        libc::RT_TABLE_MAIN,
        libc::RTPROT_STATIC,
        libc::RT_SCOPE_UNIVERSE,
        libc::RTN_UNICAST,
    ]);
    msg.buf.extend_from_slice(&0u32.to_ne_bytes());
    msg.attr(RTA_GATEWAY, &gateway.octets())
        .attr(RTA_OIF, &index.to_ne_bytes());
    request(&mut msg)
}

/// Routes `dst`/32 out of link `index` (on-link), in the namespace this
/// thread is in. A route already there is replaced.
pub fn set_host_route(index: u32, dst: Ipv4Addr) -> io::Result<()> {
    let flags = (libc::NLM_F_CREATE | NLM_F_REPLACE) as u16;
    let mut msg = Message::new(libc::RTM_NEWROUTE, flags);
    msg.buf.extend_from_slice(&[
        libc::AF_INET as u8,
        32,
        0,
        0,
        libc::RT_TABLE_MAIN,
        libc::RTPROT_STATIC,
        libc::RT_SCOPE_LINK,
        libc::RTN_UNICAST,
    ]);
    msg.buf.extend_from_slice(&0u32.to_ne_bytes());
    msg.attr(RTA_DST, &dst.octets()).attr(RTA_OIF, &index.to_ne_bytes());
    request(&mut msg)
}

/// Adds (or with `add` false removes) `mac` to the unicast addresses link
/// `index` receives, as `bridge fdb add MAC dev DEV self` does: a NIC with
/// a unicast filter accepts frames to it, one without turns promiscuous
/// until the address is removed. How macvlan shares a NIC.
pub fn unicast_address(index: u32, mac: [u8; 6], add: bool) -> io::Result<()> {
    const NDA_LLADDR: u16 = 2;
    const NTF_SELF: u8 = 0x02;
    const NUD_PERMANENT: u16 = 0x80;
    let (kind, flags) = if add {
        (libc::RTM_NEWNEIGH, (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16)
    } else {
        (libc::RTM_DELNEIGH, 0)
    };
    let mut msg = Message::new(kind, flags);
    // struct ndmsg { family, pad1, pad2, ifindex, state, flags, type }
    msg.buf.extend_from_slice(&[libc::AF_BRIDGE as u8, 0, 0, 0]);
    msg.buf.extend_from_slice(&(index as i32).to_ne_bytes());
    msg.buf.extend_from_slice(&NUD_PERMANENT.to_ne_bytes());
    msg.buf.extend_from_slice(&[NTF_SELF, 0]);
    msg.attr(NDA_LLADDR, &mac);
    match request(&mut msg) {
        Err(err) if add && err.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

/// Deletes link `index` (for a veth, both ends).
pub fn delete_link(index: u32) -> io::Result<()> {
    let mut msg = Message::new(RTM_DELLINK, 0);
    msg.ifinfo(index as i32, false);
    request(&mut msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_change_layout() {
        let change = LinkChange {
            index: 7,
            netns_fd: Some(5),
            ifname: Some("eth0"),
            mac: Some([2, 0, 0, 0, 0, 1]),
            mtu: None,
            gso_max_size: None,
            up: true,
        };
        let mut msg = link_change(&change);
        let bytes = msg.finish(9).to_vec();
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(bytes[0..4].try_into().unwrap()) as usize,
            bytes.len()
        );
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 9);
        assert_eq!(i32::from_ne_bytes(bytes[20..24].try_into().unwrap()), 7);
        // netns fd attribute, then "eth0\0" padded to 8, then the MAC padded to 8
        assert_eq!(&bytes[32..36], &[8, 0, 28, 0]);
        assert_eq!(&bytes[40..44], &[9, 0, 3, 0]);
        assert_eq!(&bytes[44..49], b"eth0\0");
        assert_eq!(&bytes[52..56], &[10, 0, 1, 0]);
        assert_eq!(bytes.len(), 64);
    }

    #[test]
    fn veth_request_nests_the_peer() {
        let peer = VethPeer {
            name: "vsx1",
            ..Default::default()
        };
        let mut msg = veth_pair("vs1", &peer);
        let bytes = msg.finish(1).to_vec();
        // header, ifinfomsg, IFLA_IFNAME "vs1\0" (8 bytes)
        let ifinfomsg_len = 16;
        let linkinfo = NLMSG_HDR_LEN + ifinfomsg_len + 8;
        let linkinfo_len = u16::from_ne_bytes([bytes[linkinfo], bytes[linkinfo + 1]]) as usize;
        assert_eq!(
            u16::from_ne_bytes([bytes[linkinfo + 2], bytes[linkinfo + 3]]),
            IFLA_LINKINFO
        );
        assert_eq!(
            linkinfo + linkinfo_len,
            bytes.len(),
            "the nest spans the rest of the message"
        );
        assert_eq!(&bytes[linkinfo + 8..linkinfo + 12], b"veth");
        // INFO_DATA > PEER > ifinfomsg + IFLA_IFNAME "vsx1\0"
        let peer_name = bytes.len() - 12;
        assert_eq!(&bytes[peer_name + 4..peer_name + 8], b"vsx1");

        // Made in a namespace, with its MAC: both inside the peer's nest.
        let peer = VethPeer {
            name: "vsx1",
            netns_fd: Some(9),
            mac: Some([2, 0, 0, 0, 0, 7]),
        };
        let mut msg = veth_pair("vs1", &peer);
        let bytes = msg.finish(1).to_vec();
        let linkinfo_len = u16::from_ne_bytes([bytes[linkinfo], bytes[linkinfo + 1]]) as usize;
        assert_eq!(linkinfo + linkinfo_len, bytes.len());
        let tail = &bytes[bytes.len() - 20..];
        assert_eq!(&tail[..4], &[8, 0, IFLA_NET_NS_FD as u8, 0]);
        assert_eq!(&tail[4..8], &9u32.to_ne_bytes());
        assert_eq!(&tail[8..12], &[10, 0, IFLA_ADDRESS as u8, 0]);
        assert_eq!(&tail[12..18], &[2, 0, 0, 0, 0, 7]);
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
