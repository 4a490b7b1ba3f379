//! Why a client stopped, and the exit code each reason gets, so that scripts and service
//! managers can tell a certificate to fix from a server that is not up yet.

use fedssl_net::io::{classify, Failure};

use crate::config::ClientConfig;
use crate::site::Fatal;

/// A certificate was refused on either side: retrying cannot help until a file changes.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CertificateRefused(pub String);

/// Nothing answered at the server's address (the session retries, then gives up with it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoAnswer(pub String);

/// Exit code of a run that ended with `e`: 3 a refused certificate, 4 no server answered,
/// 2 another error retrying cannot fix (configuration, privacy budget, a plan the site
/// refuses), 1 anything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<CertificateRefused>().is_some() {
        3
    } else if e.downcast_ref::<NoAnswer>().is_some() {
        4
    } else if e.downcast_ref::<Fatal>().is_some() {
        2
    } else {
        1
    }
}

/// Whether retrying cannot help: a refused certificate or another final error (exit codes
/// 2 and 3); the session stops at once on these instead of reconnecting.
pub fn is_final(e: &anyhow::Error) -> bool {
    matches!(exit_code(e), 2 | 3)
}

/// Turns a connection error into what the user should do about it; `established` says
/// whether the QUIC handshake had completed.
pub fn connection_failure(
    cfg: &ClientConfig,
    e: quinn::ConnectionError,
    established: bool,
) -> anyhow::Error {
    match classify(&e, established) {
        Failure::PeerCertificateRejected(reason) => CertificateRefused(format!(
            "the server at {} presented a certificate this site does not trust ({reason}); \
             check that tls.ca ({}) is the deployment's CA certificate and that server_name \
             (\"{}\") is a name in the server's certificate",
            cfg.server_addr,
            cfg.tls.ca.display(),
            cfg.server_name
        ))
        .into(),
        Failure::OurCertificateRejected(reason) => CertificateRefused(format!(
            "the server at {} refused this site's certificate ({}); check that tls.cert ({}) \
             and tls.key ({}) were issued for this site by the deployment's CA and are neither \
             expired nor revoked",
            cfg.server_addr,
            if reason.is_empty() {
                "TLS alert"
            } else {
                &reason
            },
            cfg.tls.cert.display(),
            cfg.tls.key.display()
        ))
        .into(),
        Failure::NoAnswer => NoAnswer(format!(
            "no answer from {} (UDP; is the server running and the port open?)",
            cfg.server_addr
        ))
        .into(),
        Failure::Other => anyhow::Error::new(e).context(format!(
            "the connection to the server at {} failed",
            cfg.server_addr
        )),
    }
}
