//! A deployment's certificates: one CA, one server certificate, one certificate per client.
//! A client's identity is the common name of its certificate.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// File names inside a certificate folder.
pub const CA_CERT: &str = "ca.pem";
/// CA private key (keep it offline in production).
pub const CA_KEY: &str = "ca.key";
/// Server certificate.
pub const SERVER_CERT: &str = "server.pem";
/// Server private key.
pub const SERVER_KEY: &str = "server.key";

/// Paths of a client's certificate and key in `dir`.
pub fn client_files(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("client-{name}.pem")),
        dir.join(format!("client-{name}.key")),
    )
}

/// The server's TLS files in a folder written by [`init`].
pub fn server_tls(dir: &Path) -> crate::tls::TlsFiles {
    crate::tls::TlsFiles {
        ca: dir.join(CA_CERT),
        cert: dir.join(SERVER_CERT),
        key: dir.join(SERVER_KEY),
    }
}

/// Client `name`'s TLS files in a folder written by [`init`].
pub fn client_tls(dir: &Path, name: &str) -> crate::tls::TlsFiles {
    let (cert, key) = client_files(dir, name);
    crate::tls::TlsFiles {
        ca: dir.join(CA_CERT),
        cert,
        key,
    }
}

/// Checks that a client name is usable as a certificate name and a file name.
pub fn validate_client_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > 64 {
        bail!("client name `{name}` must have 1 to 64 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        bail!("client name `{name}` may only contain letters, digits, `-`, `_` and `.`");
    }
    Ok(())
}

fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(pem.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn write_public(path: &Path, pem: &str) -> anyhow::Result<()> {
    std::fs::write(path, pem).with_context(|| format!("cannot write {}", path.display()))
}

fn leaf_params(cn: &str, sans: Vec<String>) -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    for s in sans {
        p.subject_alt_names
            .push(match s.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(s.try_into().context("invalid DNS name")?),
            });
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    Ok(p)
}

/// Creates the CA, the server certificate (for `server_names`, plus `localhost` and
/// `127.0.0.1`) and one certificate per client in `out`. Refuses to overwrite a CA.
pub fn init(out: &Path, server_names: &[String], clients: &[String]) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    if out.join(CA_KEY).exists() {
        bail!(
            "{} already holds a CA; use `fedssl certs add-client` to issue more client \
             certificates, or choose an empty folder",
            out.display()
        );
    }
    for c in clients {
        validate_client_name(c)?;
    }
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "fedssl deployment CA");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    write_public(&out.join(CA_CERT), &ca_cert.pem())?;
    write_private(&out.join(CA_KEY), &ca_key.serialize_pem())?;
    let issuer = Issuer::new(ca, ca_key);

    let mut sans: Vec<String> = server_names.to_vec();
    for d in ["localhost", "127.0.0.1", "::1"] {
        if !sans.iter().any(|s| s == d) {
            sans.push(d.to_string());
        }
    }
    let cn = sans.first().cloned().unwrap_or_else(|| "localhost".into());
    let mut sp = leaf_params(&cn, sans)?;
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let sk = KeyPair::generate()?;
    let sc = sp.signed_by(&sk, &issuer)?;
    write_public(&out.join(SERVER_CERT), &sc.pem())?;
    write_private(&out.join(SERVER_KEY), &sk.serialize_pem())?;

    for c in clients {
        issue_client(out, &issuer, c)?;
    }
    Ok(())
}

fn issue_client(
    out: &Path,
    issuer: &Issuer<'_, impl rcgen::SigningKey>,
    name: &str,
) -> anyhow::Result<()> {
    validate_client_name(name)?;
    let (cert_path, key_path) = client_files(out, name);
    if cert_path.exists() {
        bail!("{} already exists", cert_path.display());
    }
    let mut p = leaf_params(name, vec![])?;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let k = KeyPair::generate()?;
    let c = p.signed_by(&k, issuer)?;
    write_public(&cert_path, &c.pem())?;
    write_private(&key_path, &k.serialize_pem())?;
    Ok(())
}

/// Issues one more client certificate with the CA in `dir`, leaving the others untouched.
pub fn add_client(dir: &Path, name: &str) -> anyhow::Result<()> {
    let ca_pem = std::fs::read_to_string(dir.join(CA_CERT))
        .with_context(|| format!("cannot read {}", dir.join(CA_CERT).display()))?;
    let key_pem = std::fs::read_to_string(dir.join(CA_KEY))
        .with_context(|| format!("cannot read {}", dir.join(CA_KEY).display()))?;
    let key = KeyPair::from_pem(&key_pem).context("CA key is not a valid PEM private key")?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, key).context("CA certificate is invalid")?;
    issue_client(dir, &issuer, name)
}
