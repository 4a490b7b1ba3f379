//! rustls configuration (TLS 1.3 only, mutual authentication) and peer identity.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::ALPN;

/// Paths of the files one side needs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Deployment CA certificate (PEM).
    pub ca: std::path::PathBuf,
    /// This side's certificate (PEM).
    pub cert: std::path::PathBuf,
    /// This side's private key (PEM).
    pub key: std::path::PathBuf,
    /// The deployment CA's certificate revocation list (PEM, `fedssl certs revoke` writes
    /// it). On the server, a site whose certificate it lists is refused, and the server
    /// reloads the file when it changes; on a client, a revoked server is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<std::path::PathBuf>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read certificate file {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a valid PEM certificate file", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", path.display());
    }
    Ok(certs)
}

fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("cannot read private key {}", path.display()))
}

fn roots(ca: &Path) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots
            .add(c)
            .with_context(|| format!("{} is not a usable CA certificate", ca.display()))?;
    }
    Ok(roots)
}

/// The revocation lists in a PEM file (`tls.crl`).
pub fn load_crls(path: &Path) -> anyhow::Result<Vec<CertificateRevocationListDer<'static>>> {
    let crls: Vec<_> = CertificateRevocationListDer::pem_file_iter(path)
        .with_context(|| {
            format!(
                "cannot read the revocation list tls.crl ({})",
                path.display()
            )
        })?
        .collect::<Result<_, _>>()
        .with_context(|| format!("tls.crl ({}) is not a valid PEM CRL file", path.display()))?;
    if crls.is_empty() {
        bail!(
            "tls.crl ({}) holds no revocation list (X509 CRL); `fedssl certs init` writes one",
            path.display()
        );
    }
    Ok(crls)
}

/// Server side: requires a client certificate chained to the CA and not revoked by
/// `files.crl`.
pub fn server_crypto(files: &TlsFiles) -> anyhow::Result<rustls::ServerConfig> {
    let p = provider();
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&files.ca)?), p.clone());
    if let Some(crl) = &files.crl {
        builder = builder.with_crls(load_crls(crl)?);
    }
    let verifier = builder.build().with_context(|| {
        format!(
            "cannot build the client-certificate verifier (is tls.crl signed by tls.ca, {}?)",
            files.ca.display()
        )
    })?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(p)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(&files.cert)?, load_key(&files.key)?)
        .context("server certificate and key do not match")?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.max_early_data_size = 0;
    Ok(cfg)
}

/// Client side: trusts only the deployment CA and presents the client certificate.
pub fn client_crypto(files: &TlsFiles) -> anyhow::Result<rustls::ClientConfig> {
    let p = provider();
    let mut builder = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots(&files.ca)?),
        p.clone(),
    );
    if let Some(crl) = &files.crl {
        builder = builder.with_crls(load_crls(crl)?);
    }
    let verifier = builder
        .build()
        .context("cannot build the server-certificate verifier")?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(p)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(load_certs(&files.cert)?, load_key(&files.key)?)
        .context("client certificate and key do not match")?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.enable_early_data = false;
    Ok(cfg)
}

/// The authenticated name of the peer: the common name of its verified leaf certificate.
pub fn peer_name(conn: &quinn::Connection) -> anyhow::Result<String> {
    let identity = conn
        .peer_identity()
        .context("the peer presented no certificate")?;
    let certs = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| anyhow::anyhow!("unexpected peer identity type"))?;
    let leaf = certs.first().context("the peer presented an empty chain")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| anyhow::anyhow!("cannot parse the peer certificate: {e}"))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .context("the peer certificate has no common name")?
        .as_str()
        .map_err(|e| anyhow::anyhow!("the peer certificate's common name is not text: {e}"))?;
    super::certs::validate_client_name(cn)?;
    Ok(cn.to_string())
}

/// Reads the peer's verified leaf certificate with `f`.
fn with_peer_leaf<T>(
    conn: &quinn::Connection,
    f: impl FnOnce(&x509_parser::certificate::X509Certificate<'_>) -> T,
) -> Option<T> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(certs.first()?.as_ref()).ok()?;
    Some(f(&cert))
}

/// The serial number of the peer's verified leaf certificate (to match against a CRL).
pub fn peer_serial(conn: &quinn::Connection) -> Option<Vec<u8>> {
    with_peer_leaf(conn, |c| c.raw_serial().to_vec())
}

/// Unix second at which the peer's verified leaf certificate expires.
pub fn peer_not_after(conn: &quinn::Connection) -> Option<i64> {
    with_peer_leaf(conn, |c| c.validity().not_after.timestamp())
}

/// The common name of the first certificate in a PEM file (what a client claims to be).
pub fn cert_common_name(path: &Path) -> anyhow::Result<String> {
    let certs = load_certs(path)?;
    let (_, cert) = x509_parser::parse_x509_certificate(certs[0].as_ref())
        .map_err(|e| anyhow::anyhow!("cannot parse {}: {e}", path.display()))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .with_context(|| format!("{} has no common name", path.display()))?
        .as_str()
        .map_err(|e| anyhow::anyhow!("{}: common name is not text: {e}", path.display()))?;
    Ok(cn.to_string())
}
