//! Certificate revocation and expiry at the server: the registry of live connections with
//! their certificates' serials, and the task that reloads `tls.crl` when the file changes,
//! hands the endpoint the new TLS configuration (new handshakes check the new list) and
//! closes the connections of sites it now revokes.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tracing::{error, info, warn};

use fedssl_net::{certs, endpoint, tls};

/// How often the revocation list's file is checked for a change.
pub const CRL_POLL: Duration = Duration::from_secs(2);

/// A connection that passed the handshake: the site and its certificate's serial.
struct LiveConn {
    conn: quinn::Connection,
    name: String,
    serial: Vec<u8>,
}

/// Connections that passed the handshake, by QUIC connection id.
#[derive(Default)]
pub struct Live {
    conns: Mutex<HashMap<usize, LiveConn>>,
    warned: Mutex<HashSet<String>>,
}

impl Live {
    /// Registers an authenticated connection of site `name`; warns (once per site and
    /// process) when its certificate expires within [`certs::EXPIRY_WARNING_DAYS`].
    pub fn add(&self, conn: &quinn::Connection, name: &str) {
        let serial = tls::peer_serial(conn).unwrap_or_default();
        if let Ok(mut m) = self.conns.lock() {
            m.insert(
                conn.stable_id(),
                LiveConn {
                    conn: conn.clone(),
                    name: name.to_string(),
                    serial,
                },
            );
        }
        let now = crate::endpoint::unix_now() as i64;
        if let Some(end) = tls::peer_not_after(conn) {
            let days = certs::days_until(end, now);
            if days < certs::EXPIRY_WARNING_DAYS
                && self
                    .warned
                    .lock()
                    .map(|mut w| w.insert(name.to_string()))
                    .unwrap_or(false)
            {
                warn!(%name, days_left = days, expires = %certs::date(end), "this site's certificate expires soon: issue it a new one (fedssl certs add-client) before it does");
            }
        }
    }

    /// Forgets a closed connection.
    pub fn remove(&self, conn: &quinn::Connection) {
        if let Ok(mut m) = self.conns.lock() {
            m.remove(&conn.stable_id());
        }
    }

    /// Closes every connection whose certificate serial is in `revoked`; returns the
    /// sites closed.
    pub fn close_revoked(&self, revoked: &[certs::RevokedEntry]) -> Vec<String> {
        let Ok(m) = self.conns.lock() else {
            return vec![];
        };
        let mut closed = vec![];
        for c in m.values() {
            if revoked.iter().any(|r| r.serial == c.serial) {
                c.conn.close(2u32.into(), b"certificate revoked");
                closed.push(c.name.clone());
            }
        }
        closed
    }
}

/// Watches `files.crl` and applies each new version (see the module documentation). A
/// file that cannot be loaded leaves the previous list in force, with an error in the log.
pub async fn watch_crl(
    files: tls::TlsFiles,
    settings: endpoint::TransportSettings,
    ep: quinn::Endpoint,
    live: std::sync::Arc<Live>,
) {
    let Some(path) = files.crl.clone() else {
        return;
    };
    let mut last = tokio::fs::read(&path).await.ok();
    loop {
        tokio::time::sleep(CRL_POLL).await;
        let now = tokio::fs::read(&path).await.ok();
        if now.is_none() || now == last {
            if now.is_none() && last.is_some() {
                error!(file = %path.display(), "the revocation list (tls.crl) disappeared; the server keeps the list it loaded");
                last = None;
            }
            continue;
        }
        last = now;
        let applied = tls::server_crypto(&files)
            .and_then(|c| endpoint::server_config(c, settings))
            .and_then(|sc| {
                ep.set_server_config(Some(sc));
                certs::read_crl(&path)
            });
        match applied {
            Ok(crl) => {
                let closed = live.close_revoked(&crl.revoked);
                info!(file = %path.display(), crl_number = crl.number, revoked = crl.revoked.len(), closed = ?closed, "revocation list reloaded: new connections are checked against it");
            }
            Err(e) => {
                error!(file = %path.display(), error = %format!("{e:#}"), "cannot load the changed revocation list (tls.crl); the server keeps the previous one")
            }
        }
    }
}
