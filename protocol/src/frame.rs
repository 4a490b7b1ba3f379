//! Length-prefixed frames carrying bincode-2 encoded messages.

use serde::{de::DeserializeOwned, Serialize};

/// Size of the length prefix in bytes.
pub const HEADER_LEN: usize = 4;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The announced length exceeds the configured maximum; nothing was allocated.
    #[error("frame of {announced} bytes exceeds the maximum of {max} bytes")]
    Oversized {
        /// Length announced by the peer.
        announced: u64,
        /// Configured maximum.
        max: u64,
    },
    /// The stream ended before the announced number of bytes arrived.
    #[error("frame truncated: expected {expected} bytes, got {got}")]
    Truncated {
        /// Bytes announced.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
    /// The body is not a valid encoding of the expected message type.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(String),
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `msg` as one frame (length prefix + body).
pub fn encode_message<T: Serialize>(msg: &T, max_len: usize) -> Result<Vec<u8>, FrameError> {
    let body = bincode::serde::encode_to_vec(msg, config())
        .map_err(|e| FrameError::Encode(e.to_string()))?;
    if body.len() > max_len || body.len() > u32::MAX as usize {
        return Err(FrameError::Oversized {
            announced: body.len() as u64,
            max: max_len as u64,
        });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Checks an announced body length against the maximum, before any allocation.
pub fn check_length(header: [u8; HEADER_LEN], max_len: usize) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > max_len {
        return Err(FrameError::Oversized {
            announced: len as u64,
            max: max_len as u64,
        });
    }
    Ok(len)
}

/// Decodes a message body (without the length prefix). Trailing bytes are an error.
pub fn decode_message<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    // Bound bincode's own allocations by the body size: a length field inside the body can
    // never claim more than the body holds.
    let cfg = config().with_limit::<{ 1 << 30 }>();
    let (msg, used): (T, usize) = bincode::serde::decode_from_slice(body, cfg)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes after the message",
            body.len() - used
        )));
    }
    Ok(msg)
}

/// Incremental decoder: push bytes as they arrive, take complete frame bodies out.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    max_len: usize,
}

impl FrameDecoder {
    /// A decoder that refuses frames longer than `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_len,
        }
    }

    /// Appends received bytes. Fails as soon as a header announces an oversized frame.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= HEADER_LEN {
            let mut h = [0u8; HEADER_LEN];
            h.copy_from_slice(&self.buf[..HEADER_LEN]);
            check_length(h, self.max_len)?;
        }
        Ok(())
    }

    /// Takes the next complete frame body, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.buf[..HEADER_LEN]);
        let len = check_length(h, self.max_len)?;
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let body = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buf.drain(..HEADER_LEN + len);
        Ok(Some(body))
    }

    /// Declares the end of input: leftover bytes mean a truncated frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let expected = if self.buf.len() >= HEADER_LEN {
            let mut h = [0u8; HEADER_LEN];
            h.copy_from_slice(&self.buf[..HEADER_LEN]);
            u32::from_le_bytes(h) as u64
        } else {
            HEADER_LEN as u64
        };
        Err(FrameError::Truncated {
            expected,
            got: self.buf.len().saturating_sub(HEADER_LEN) as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{ClientMsg, Hello};

    fn hello() -> ClientMsg {
        ClientMsg::Hello(Hello {
            protocol_version: 1,
            software_version: "x".into(),
            capabilities: vec!["simclr".into()],
            claimed_name: "a".into(),
            num_samples: Some(10),
        })
    }

    #[test]
    fn roundtrip_through_decoder_in_pieces() {
        let frame = encode_message(&hello(), 1 << 20).unwrap();
        let mut dec = FrameDecoder::new(1 << 20);
        for chunk in frame.chunks(3) {
            dec.push(chunk).unwrap();
        }
        let body = dec.next_frame().unwrap().unwrap();
        let back: ClientMsg = decode_message(&body).unwrap();
        assert_eq!(back, hello());
        assert!(dec.finish().is_ok());
    }

    #[test]
    fn oversized_header_refused_before_body() {
        let mut dec = FrameDecoder::new(100);
        let err = dec.push(&1000u32.to_le_bytes()).unwrap_err();
        assert_eq!(
            err,
            FrameError::Oversized {
                announced: 1000,
                max: 100
            }
        );
    }

    #[test]
    fn truncated_and_garbage_are_errors() {
        let frame = encode_message(&hello(), 1 << 20).unwrap();
        let mut dec = FrameDecoder::new(1 << 20);
        dec.push(&frame[..frame.len() - 2]).unwrap();
        assert!(dec.next_frame().unwrap().is_none());
        assert!(matches!(dec.finish(), Err(FrameError::Truncated { .. })));
        let garbage = [0xffu8; 37];
        assert!(matches!(
            decode_message::<ClientMsg>(&garbage),
            Err(FrameError::Malformed(_))
        ));
        let mut with_trailing = frame[HEADER_LEN..].to_vec();
        with_trailing.push(0);
        assert!(decode_message::<ClientMsg>(&with_trailing).is_err());
    }
}
