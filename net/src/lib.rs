//! Networking shared by server and client: certificates ([`certs`]), rustls configuration
//! and peer identity ([`tls`]), quinn endpoints ([`endpoint`]) and framed messages on QUIC
//! streams ([`io`]).

pub mod certs;
pub mod endpoint;
pub mod io;
pub mod tls;

/// ALPN protocol id; a peer speaking anything else is refused during the handshake.
pub const ALPN: &[u8] = b"fedssl/1";
