//! The wire protocol: messages ([`messages`]), framing ([`frame`]) and model payloads ([`tensors`]).
//!
//! Every request travels on its own bidirectional QUIC stream: the client writes one frame,
//! the server answers with one frame. A frame is a little-endian `u32` length followed by a
//! bincode-2 encoded message. The codec here is sans-IO: it works on byte slices and is
//! tested without sockets; [`crate::net::io`] is the thin async shell over quinn streams.

pub mod frame;
pub mod messages;
pub mod tensors;

pub use frame::{decode_message, encode_message, FrameDecoder, FrameError};
pub use messages::*;
pub use tensors::{ModelPayload, NamedTensor, PayloadError};
