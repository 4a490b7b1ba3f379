//! The wire protocol: messages ([`messages`]), framing ([`frame`]) and model payloads ([`tensors`]).
//!
//! Every request travels on its own bidirectional QUIC stream: the client writes one frame,
//! the server answers with one frame. A frame is a little-endian `u32` length followed by a
//! bincode-2 encoded message. The codec here is sans-IO: it works on byte slices and is
//! tested without sockets; `fedssl_net::io` is the thin async shell over quinn streams.

pub mod frame;
pub mod messages;
pub mod tensors;

pub use frame::{decode_message, encode_message, FrameDecoder, FrameError};
pub use messages::*;
pub use tensors::{ModelPayload, NamedTensor, PayloadError};

/// Version of the wire protocol; a client and a server must speak the same one.
pub const PROTOCOL_VERSION: u32 = 10;

/// This build's version, reported in the handshake.
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Default maximum frame size: 64 MiB (a ConvNet-S payload is about 1 MiB).
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;
