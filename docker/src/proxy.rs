//! Published ports on the host itself: `127.0.0.1:8080` and the host's own
//! addresses, which never cross vswitchd's uplink. Docker's docker-proxy
//! does this for its bridge; for a remote driver's ports dockerd does
//! nothing, so the driver runs one listener per published port and relays
//! to the container through the network's internal port (the host's route
//! to the subnet). Thread per connection: the host-local path is for
//! convenience, not speed; remote clients come in through the uplink.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, warn};
use vswitch_ctl::NatProto;

/// How often a UDP relay looks for the stop flag and idle clients.
const UDP_TICK: Duration = Duration::from_millis(200);
/// A UDP client quiet for this long loses its relay socket.
const UDP_IDLE: Duration = Duration::from_secs(60);
const UDP_MAX: usize = 65_535;

/// A running proxy; dropping it stops it.
pub struct Proxy {
    stop: Arc<AtomicBool>,
    listen: SocketAddrV4,
    proto: NatProto,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on `listen` (fails if the port is taken there) and relays to
    /// `target`.
    pub fn start(proto: NatProto, listen: SocketAddrV4, target: SocketAddrV4) -> io::Result<Proxy> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let name = format!("proxy-{proto}-{}", listen.port());
        let thread = match proto {
            NatProto::Tcp => {
                let listener = TcpListener::bind(listen)?;
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || serve_tcp(listener, target, &flag))?
            }
            NatProto::Udp => {
                let socket = UdpSocket::bind(listen)?;
                socket.set_read_timeout(Some(UDP_TICK))?;
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || serve_udp(socket, target, &flag))?
            }
        };
        Ok(Proxy {
            stop,
            listen,
            proto,
            thread: Some(thread),
        })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if self.proto == NatProto::Tcp {
            // Wakes the accept.
            let wake = if self.listen.ip().is_unspecified() {
                SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.listen.port())
            } else {
                self.listen
            };
            let _ = TcpStream::connect_timeout(&wake.into(), Duration::from_secs(1));
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_tcp(listener: TcpListener, target: SocketAddrV4, stop: &AtomicBool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let client = match conn {
            Ok(c) => c,
            Err(err) => {
                debug!(%err, "proxy accept failed");
                continue;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("proxy-conn".into())
            .spawn(move || relay_tcp(client, target));
        if let Err(err) = spawned {
            warn!(%err, "cannot start a proxy connection thread");
        }
    }
}

/// Copies both ways until each side has closed its half.
fn relay_tcp(client: TcpStream, target: SocketAddrV4) {
    let server = match TcpStream::connect_timeout(&target.into(), Duration::from_secs(5)) {
        Ok(s) => s,
        Err(err) => {
            debug!(%target, %err, "proxy cannot reach the container");
            return;
        }
    };
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || pipe(client2, server2));
    pipe(server, client);
    let _ = up.join();
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// One relay socket per client address, answers sent back from the
/// listener; idle clients are forgotten.
fn serve_udp(socket: UdpSocket, target: SocketAddrV4, stop: &AtomicBool) {
    let socket = Arc::new(socket);
    let clients: Arc<Clients> = Arc::default();
    let mut buf = vec![0u8; UDP_MAX];
    while !stop.load(Ordering::SeqCst) {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                let now = Instant::now();
                clients
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .retain(|_, (_, seen)| now.duration_since(*seen) < UDP_IDLE);
                continue;
            }
            Err(err) => {
                debug!(%err, "udp proxy receive failed");
                continue;
            }
        };
        let relay = {
            let mut map = clients.lock().unwrap_or_else(PoisonError::into_inner);
            match map.get_mut(&from) {
                Some((relay, seen)) => {
                    *seen = Instant::now();
                    Some(relay.clone())
                }
                None => match udp_relay(target) {
                    Ok(relay) => {
                        map.insert(from, (relay.clone(), Instant::now()));
                        let (back, clients) = (socket.clone(), clients.clone());
                        let answers = relay.clone();
                        let _ = std::thread::Builder::new()
                            .name("proxy-udp".into())
                            .spawn(move || udp_answers(&answers, &back, from, &clients));
                        Some(relay)
                    }
                    Err(err) => {
                        debug!(%err, "udp proxy cannot open a relay socket");
                        None
                    }
                },
            }
        };
        if let Some(relay) = relay {
            let _ = relay.send(&buf[..n]);
        }
    }
    // The answer threads end when they find their client gone.
    clients.lock().unwrap_or_else(PoisonError::into_inner).clear();
}

fn udp_relay(target: SocketAddrV4) -> io::Result<Arc<UdpSocket>> {
    let relay = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    relay.connect(target)?;
    relay.set_read_timeout(Some(UDP_TICK))?;
    Ok(Arc::new(relay))
}

/// UDP clients: their relay socket and when they last sent.
type Clients = Mutex<HashMap<SocketAddr, (Arc<UdpSocket>, Instant)>>;

/// Answers from the container to `client`, until the client is forgotten.
fn udp_answers(relay: &UdpSocket, back: &UdpSocket, client: SocketAddr, clients: &Clients) {
    let mut buf = vec![0u8; UDP_MAX];
    loop {
        match relay.recv(&mut buf) {
            Ok(n) => {
                let _ = back.send_to(&buf[..n], client);
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                let alive = clients
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&client)
                    .is_some_and(|(r, _)| std::ptr::eq(r.as_ref(), relay));
                if !alive {
                    return;
                }
            }
            Err(_) => {}
        }
    }
}
