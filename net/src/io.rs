//! Framed messages on QUIC streams: the async shell over [`fedssl_protocol::frame`].

use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

use fedssl_protocol::frame::{
    check_length, decode_message, encode_message, FrameError, HEADER_LEN,
};
use fedssl_protocol::{ClientMsg, ServerMsg};

/// Transport or framing failure on one exchange.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Bad frame from the peer.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The connection failed or was closed.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Reading failed.
    #[error("read: {0}")]
    Read(String),
    /// Writing failed.
    #[error("write: {0}")]
    Write(String),
    /// The peer did not answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Writes one framed message and finishes the stream. Returns the bytes written.
pub async fn write_msg<T: Serialize>(
    send: &mut quinn::SendStream,
    msg: &T,
    max_len: usize,
) -> Result<usize, NetError> {
    let frame = encode_message(msg, max_len)?;
    send.write_all(&frame).await.map_err(|e| match e {
        // Keep why the connection ended (a refused certificate, a timeout): the caller
        // tells those apart.
        quinn::WriteError::ConnectionLost(c) => NetError::Connection(c),
        e => NetError::Write(e.to_string()),
    })?;
    send.finish().map_err(|e| NetError::Write(e.to_string()))?;
    Ok(frame.len())
}

/// Reads one framed message. The announced length is checked before the body is allocated.
pub async fn read_msg<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max_len: usize,
) -> Result<(T, usize), NetError> {
    let mut header = [0u8; HEADER_LEN];
    read_exact(recv, &mut header, HEADER_LEN as u64).await?;
    let len = check_length(header, max_len)?;
    let mut body = vec![0u8; len];
    read_exact(recv, &mut body, len as u64).await?;
    Ok((decode_message(&body)?, HEADER_LEN + len))
}

async fn read_exact(
    recv: &mut quinn::RecvStream,
    buf: &mut [u8],
    expected: u64,
) -> Result<(), NetError> {
    recv.read_exact(buf).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(got) => NetError::Frame(FrameError::Truncated {
            expected,
            got: got as u64,
        }),
        quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(c)) => {
            NetError::Connection(c)
        }
        quinn::ReadExactError::ReadError(e) => NetError::Read(e.to_string()),
    })
}

/// Bytes moved by one exchange.
#[derive(Debug, Clone, Copy, Default)]
pub struct Traffic {
    /// Bytes sent by the client.
    pub up: u64,
    /// Bytes sent by the server.
    pub down: u64,
}

/// One request/response exchange on a fresh bidirectional stream.
pub async fn request(
    conn: &quinn::Connection,
    msg: &ClientMsg,
    max_len: usize,
    timeout: Duration,
) -> Result<(ServerMsg, Traffic), NetError> {
    let fut = async {
        let (mut send, mut recv) = conn.open_bi().await?;
        let up = write_msg(&mut send, msg, max_len).await?;
        let (resp, down) = read_msg::<ServerMsg>(&mut recv, max_len).await?;
        Ok::<_, NetError>((
            resp,
            Traffic {
                up: up as u64,
                down: down as u64,
            },
        ))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| NetError::Timeout(timeout))?
}

/// Why a connection could not be used, as far as the caller can act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// This side's TLS refused the peer (its certificate does not chain to our CA, or is
    /// not valid for the name we asked for); the reason is rustls'.
    PeerCertificateRejected(String),
    /// The peer's TLS refused ours (an unknown, revoked or expired client certificate).
    OurCertificateRejected(String),
    /// Nothing answered before the handshake timed out.
    NoAnswer,
    /// Anything else (the connection may work on another attempt).
    Other,
}

/// The QUIC error codes `0x100..=0x1ff` carry a TLS alert (RFC 9001, section 4.8).
fn is_tls_alert(code: quinn::TransportErrorCode) -> bool {
    (0x100..=0x1ff).contains(&u64::from(code))
}

/// What a TLS alert about a certificate means (RFC 8446, section 6.2).
fn alert_meaning(alert: u64) -> Option<&'static str> {
    Some(match alert {
        42 => "bad certificate",
        43 => "unsupported certificate",
        44 => "the certificate was revoked",
        45 => "the certificate has expired (or is not valid yet)",
        46 => "certificate unknown",
        48 => "the certificate is not from the CA the peer trusts",
        116 => "a certificate is required",
        _ => return None,
    })
}

/// Classifies a connection error; `handshake_done` says whether the connection was ever
/// established (a timeout before it means nothing answered).
pub fn classify(e: &quinn::ConnectionError, handshake_done: bool) -> Failure {
    match e {
        quinn::ConnectionError::TransportError(t) if is_tls_alert(t.code) => {
            Failure::PeerCertificateRejected(t.reason.clone())
        }
        quinn::ConnectionError::ConnectionClosed(c) if is_tls_alert(c.error_code) => {
            let said = String::from_utf8_lossy(&c.reason).trim().to_string();
            let alert = u64::from(c.error_code) - 0x100;
            Failure::OurCertificateRejected(match alert_meaning(alert) {
                Some(m) if said.is_empty() => format!("TLS alert {alert}: {m}"),
                Some(m) => format!("TLS alert {alert}: {m}; {said}"),
                None => said,
            })
        }
        // A server closes a revoked site's open connection with this reason.
        quinn::ConnectionError::ApplicationClosed(c) if &c.reason[..] == b"certificate revoked" => {
            Failure::OurCertificateRejected("the certificate was revoked".into())
        }
        quinn::ConnectionError::TimedOut if !handshake_done => Failure::NoAnswer,
        _ => Failure::Other,
    }
}
