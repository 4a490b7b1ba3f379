//! quinn endpoints with the transport settings fedssl needs: keep-alives below the idle
//! timeout, large flow-control windows for model transfers, bounded streams per connection
//! and large UDP socket buffers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

/// Transport settings.
#[derive(Debug, Clone, Copy)]
pub struct TransportSettings {
    /// A connection silent this long is dead.
    pub idle_timeout: Duration,
    /// Concurrent bidirectional streams a peer may open.
    pub max_bidi_streams: u32,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30),
            max_bidi_streams: 8,
        }
    }
}

fn transport(s: TransportSettings) -> anyhow::Result<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        s.idle_timeout
            .try_into()
            .context("idle timeout out of range")?,
    ));
    t.keep_alive_interval(Some(s.idle_timeout / 3));
    t.stream_receive_window(quinn::VarInt::from_u32(16 << 20));
    t.receive_window(quinn::VarInt::from_u32(32 << 20));
    t.send_window(32 << 20);
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(s.max_bidi_streams));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    Ok(t)
}

fn udp_socket(addr: SocketAddr) -> anyhow::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // quinn never sizes socket buffers; the 208 KiB default drops packets under load.
    let _ = sock.set_recv_buffer_size(8 << 20);
    let _ = sock.set_send_buffer_size(8 << 20);
    sock.bind(&addr.into())
        .with_context(|| format!("cannot bind UDP {addr}"))?;
    Ok(sock.into())
}

/// The QUIC server configuration for `crypto` (also what a running endpoint is given
/// when its TLS settings change, e.g. a reloaded revocation list).
pub fn server_config(
    crypto: rustls::ServerConfig,
    s: TransportSettings,
) -> anyhow::Result<quinn::ServerConfig> {
    let qc = QuicServerConfig::try_from(crypto).context("TLS config unusable for QUIC")?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(qc));
    sc.transport_config(Arc::new(transport(s)?));
    Ok(sc)
}

/// A server endpoint listening on `addr`.
pub fn server(
    addr: SocketAddr,
    crypto: rustls::ServerConfig,
    s: TransportSettings,
) -> anyhow::Result<quinn::Endpoint> {
    let ep = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server_config(crypto, s)?),
        udp_socket(addr)?,
        Arc::new(quinn::TokioRuntime),
    )?;
    Ok(ep)
}

/// A client endpoint able to reach `server_addr`.
pub fn client(
    server_addr: SocketAddr,
    crypto: rustls::ClientConfig,
    s: TransportSettings,
) -> anyhow::Result<quinn::Endpoint> {
    let bind: SocketAddr = if server_addr.is_ipv6() {
        "[::]:0".parse()?
    } else {
        "0.0.0.0:0".parse()?
    };
    let mut ep = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        udp_socket(bind)?,
        Arc::new(quinn::TokioRuntime),
    )?;
    let qc = QuicClientConfig::try_from(crypto).context("TLS config unusable for QUIC")?;
    let mut cc = quinn::ClientConfig::new(Arc::new(qc));
    cc.transport_config(Arc::new(transport(s)?));
    ep.set_default_client_config(cc);
    Ok(ep)
}
