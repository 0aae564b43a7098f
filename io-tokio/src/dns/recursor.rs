//! Relaying questions core does not answer (names outside the domains,
//! reverse lookups that match nothing) to the configured recursors, as
//! Consul's `handleRecurse` (agent/dns.go): recursors are tried in order,
//! each within `recursor_timeout`, over the transport the client used; the
//! first response whose RCODE is NOERROR or NXDOMAIN is relayed, anything
//! else (a timeout, a refusal, SERVFAIL, bytes that do not decode) moves on
//! to the next. When all fail the client gets SERVFAIL with RA set.
//!
//! The upstream sees a fresh random ID (not the client's, so an off-path
//! sender has to guess it) and the client's bytes otherwise unchanged, EDNS
//! included: the upstream sizes its answer for the client. The relayed
//! response gets the client's ID back and RA set, since this server now
//! offers recursion.

use super::{recursion_failed, HEADER_BYTES, TCP_MESSAGE_BYTES_MAX};
use hickory_proto::op::Message;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tribune_core::dns::DnsConfig;

/// RCODEs after which Consul stops trying recursors: the name's fate is
/// known (NOERROR 0, NXDOMAIN 3).
const FINAL_RCODES: [u8; 2] = [0, 3];

/// The response for `request` (a client query core decided to forward):
/// the first usable recursor answer, else SERVFAIL. `None` only when not
/// even the SERVFAIL can be built (a request that does not decode, which
/// never reaches here).
pub async fn forward(
    request: &[u8],
    config: &DnsConfig,
    over_tcp: bool,
    upstream_id: u16,
) -> Option<Vec<u8>> {
    let client_id = request.get(..2)?;
    let mut query = request.to_vec();
    query[..2].copy_from_slice(&upstream_id.to_be_bytes());
    let timeout = Duration::from_nanos(config.recursor_timeout.0);
    for &recursor in &config.recursors {
        let exchange = async {
            if over_tcp {
                exchange_tcp(&query, recursor).await
            } else {
                exchange_udp(&query, recursor, upstream_id).await
            }
        };
        let response = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                crate::log::debug(&format!("dns: recursor {recursor} failed: {e}"));
                continue;
            }
            Err(_) => {
                crate::log::debug(&format!("dns: recursor {recursor} timed out"));
                continue;
            }
        };
        if let Some(mut relayed) = usable(response, upstream_id) {
            relayed[..2].copy_from_slice(client_id);
            relayed[3] |= 0x80;
            return Some(relayed);
        }
    }
    recursion_failed(request)
}

/// The response if it answers our query (its ID, QR set), decodes, and
/// carries a final RCODE.
fn usable(response: Vec<u8>, upstream_id: u16) -> Option<Vec<u8>> {
    let header = response.get(..HEADER_BYTES)?;
    let ours = u16::from_be_bytes([header[0], header[1]]) == upstream_id;
    let is_response = header[2] & 0x80 != 0;
    let rcode = header[3] & 0x0F;
    (ours && is_response && FINAL_RCODES.contains(&rcode) && Message::from_vec(&response).is_ok())
        .then_some(response)
}

async fn exchange_udp(query: &[u8], recursor: SocketAddr, id: u16) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if recursor.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    // Connected: datagrams from anyone but the recursor are not delivered.
    socket.connect(recursor).await?;
    socket.send(query).await?;
    let mut buffer = vec![0u8; TCP_MESSAGE_BYTES_MAX];
    loop {
        let len = socket.recv(&mut buffer).await?;
        // A late answer to an earlier query would carry another ID.
        if len >= 2 && buffer[..2] == id.to_be_bytes() {
            buffer.truncate(len);
            return Ok(buffer);
        }
    }
}

async fn exchange_tcp(query: &[u8], recursor: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(recursor).await?;
    let len = u16::try_from(query.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let mut framed = Vec::with_capacity(2 + query.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let len = usize::from(stream.read_u16().await?);
    let mut response = vec![0u8; len];
    stream.read_exact(&mut response).await?;
    Ok(response)
}
