//! The UDP and TCP loops around [`super::answer_packet`].
//!
//! UDP answers inline: an answer is a lock, a lookup and an encode, cheaper
//! than spawning a task. TCP (RFC 1035 §4.2.2, RFC 7766) takes 2-byte
//! length-prefixed messages, several per connection, each read within
//! [`TCP_READ_TIMEOUT`]; a connection that breaks the framing or stalls is
//! closed, and at most [`TCP_CONNECTIONS_MAX`] are served at once.
//!
//! Questions for the recursors: a UDP thread hands them to a task on the
//! tokio runtime ([`Forwarder`]) and goes on answering; a TCP connection
//! awaits the relay in turn, as its answers go out in order anyway.

use super::{answer_packet, recursor, Reply, Worker, HEADER_BYTES};
use crate::state::Node;
use std::net::{SocketAddr, UdpSocket};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tribune_core::dns::DnsConfig;

/// Receive buffer for one datagram. A larger one arrives cut short (the OS
/// truncates it) and then fails to decode: FORMERR or nothing.
pub const UDP_REQUEST_BYTES_MAX: usize = 4096;
/// The most sent in one UDP response, whatever the client's EDNS size:
/// Consul's `maxUDPDatagramSize` (64 KiB less the largest IP header and the
/// UDP header).
pub const UDP_RESPONSE_BYTES_MAX: usize = u16::MAX as usize - 68;
/// TCP connections served at once; more are closed on accept.
pub const TCP_CONNECTIONS_MAX: usize = 256;
/// Time to read one whole TCP message (length and body), and to write one
/// response; an idle connection is closed after it.
pub const TCP_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept/recv (EMFILE and friends) instead of spinning.
const ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Threads answering UDP on the one socket. The kernel hands each datagram
/// to one waiting thread, so two threads keep both cores busy when the
/// client (or another server) leaves room on the second, and one thread's
/// `sendto` (a third of an answer's cost: loopback delivery and waking the
/// client) overlaps the other's lookup. Answers are short critical
/// sections under the state lock.
pub const UDP_THREADS: usize = 2;

/// Questions relayed to recursors at once, over UDP; past it a question
/// is dropped (the client retries) rather than queued without bound.
pub const RECURSOR_QUERIES_MAX: usize = 1024;

/// Where UDP threads hand questions for the recursors: tasks on the tokio
/// runtime, so a slow recursor never holds up a thread's local answers.
#[derive(Clone)]
pub struct Forwarder {
    runtime: tokio::runtime::Handle,
    slots: Arc<Semaphore>,
}

impl Forwarder {
    /// A forwarder on the runtime this is called from.
    pub fn current() -> Forwarder {
        Forwarder {
            runtime: tokio::runtime::Handle::current(),
            slots: Arc::new(Semaphore::new(RECURSOR_QUERIES_MAX)),
        }
    }

    /// Relays `packet` from `peer` and sends the result on `socket`.
    fn spawn(
        &self,
        socket: &Arc<UdpSocket>,
        config: &Arc<DnsConfig>,
        packet: &[u8],
        peer: SocketAddr,
        upstream_id: u16,
    ) {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            crate::log::debug(&format!(
                "dns: recursor queue full, dropping a query from {peer}"
            ));
            return;
        };
        let (socket, config, packet) = (socket.clone(), config.clone(), packet.to_vec());
        self.runtime.spawn(async move {
            let _slot = slot;
            let Some(response) = recursor::forward(&packet, &config, false, upstream_id).await
            else {
                return;
            };
            // A UDP send does not wait for the peer; blocking here is brief.
            if let Err(e) = socket.send_to(&response, peer) {
                crate::log::debug(&format!("dns: udp send to {peer} failed: {e}"));
            }
        });
    }
}

/// Starts [`UDP_THREADS`] threads running [`serve_udp`] on `socket`. Must
/// be called on the tokio runtime (it relays to recursors there).
pub fn spawn_udp_threads(
    socket: UdpSocket,
    node: Arc<Node>,
    config: Arc<DnsConfig>,
) -> std::io::Result<()> {
    socket.set_nonblocking(false)?;
    let socket = Arc::new(socket);
    let forwarder = Forwarder::current();
    for i in 0..UDP_THREADS {
        let (socket, node, config) = (socket.clone(), node.clone(), config.clone());
        let forwarder = forwarder.clone();
        std::thread::Builder::new()
            .name(format!("dns-udp-{i}"))
            .spawn(move || serve_udp(socket, node, config, forwarder))?;
    }
    Ok(())
}

/// Answers DNS over UDP on `socket` (blocking) forever, on a thread of its
/// own. Through the tokio runtime every datagram cost a task wake-up and a
/// park (perf: ~40% of the time in the scheduler's context switches); a
/// blocking loop answers a queue of datagrams back to back.
pub fn serve_udp(
    socket: Arc<UdpSocket>,
    node: Arc<Node>,
    config: Arc<DnsConfig>,
    forwarder: Forwarder,
) {
    let mut buffer = vec![0u8; UDP_REQUEST_BYTES_MAX];
    // Responses are written here, so a steady stream allocates nothing.
    let mut response = Vec::with_capacity(UDP_REQUEST_BYTES_MAX);
    let mut worker = Worker::new(&node);
    loop {
        let (len, peer) = match socket.recv_from(&mut buffer) {
            Ok(received) => received,
            Err(e) => {
                crate::log::debug(&format!("dns: udp receive failed: {e}"));
                std::thread::sleep(ERROR_BACKOFF);
                continue;
            }
        };
        let packet = &buffer[..len];
        let udp_cap = Some(UDP_RESPONSE_BYTES_MAX);
        match guarded(&node, &config, packet, udp_cap, &mut worker, &mut response) {
            Reply::Send => {}
            Reply::Drop => continue,
            Reply::Forward => {
                let upstream_id = worker.rng.below(1 << 16) as u16;
                forwarder.spawn(&socket, &config, packet, peer, upstream_id);
                continue;
            }
        }
        if let Err(e) = socket.send_to(&response, peer) {
            crate::log::debug(&format!("dns: udp send to {peer} failed: {e}"));
        }
    }
}

/// Answers DNS over TCP on `listener` forever.
pub async fn serve_tcp(listener: TcpListener, node: Arc<Node>, config: Arc<DnsConfig>) {
    let slots = Arc::new(Semaphore::new(TCP_CONNECTIONS_MAX));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                crate::log::warn(&format!("dns: tcp accept failed: {e}"));
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Dropping the stream closes it; the client retries or gives up.
            crate::log::debug(&format!(
                "dns: tcp connection limit reached, closing {peer}"
            ));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (node, config) = (node.clone(), config.clone());
        tokio::spawn(async move {
            let _slot = slot;
            serve_connection(stream, &node, &config).await;
        });
    }
}

async fn serve_connection(mut stream: TcpStream, node: &Node, config: &DnsConfig) {
    let mut request = Vec::new();
    let mut response = Vec::new();
    let mut worker = Worker::new(node);
    loop {
        match tokio::time::timeout(TCP_READ_TIMEOUT, read_message(&mut stream, &mut request)).await
        {
            Ok(Ok(())) => {}
            // EOF, a reset, bad framing or a stall: the connection is done.
            Ok(Err(_)) | Err(_) => return,
        }
        match guarded(node, config, &request, None, &mut worker, &mut response) {
            Reply::Send => {}
            Reply::Drop => continue,
            Reply::Forward => {
                let upstream_id = worker.rng.below(1 << 16) as u16;
                match recursor::forward(&request, config, true, upstream_id).await {
                    Some(relayed) => response = relayed,
                    None => continue,
                }
            }
        }
        let Ok(len) = u16::try_from(response.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(2 + response.len());
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&response);
        match tokio::time::timeout(TCP_READ_TIMEOUT, stream.write_all(&framed)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

/// Reads one length-prefixed message into `buffer`. A length too short for
/// a header is bad framing.
async fn read_message(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<()> {
    let len = usize::from(stream.read_u16().await?);
    if len < HEADER_BYTES {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    buffer.resize(len, 0);
    stream.read_exact(buffer).await?;
    Ok(())
}

/// [`answer_packet`], with a panic (a bug in decoding untrusted bytes)
/// costing one packet instead of the whole server loop.
fn guarded(
    node: &Node,
    config: &DnsConfig,
    packet: &[u8],
    max_udp_size: Option<usize>,
    worker: &mut Worker,
    out: &mut Vec<u8>,
) -> Reply {
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        answer_packet(node, config, packet, max_udp_size, worker, out)
    }))
    .unwrap_or_else(|_| {
        crate::log::warn("dns: a packet made the handler panic; dropped it");
        Reply::Drop
    })
}
