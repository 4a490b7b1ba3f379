//! A deployment's certificates: one CA named after the deployment, one server certificate,
//! one certificate per client, and the CA's certificate revocation list (CRL). A client's
//! identity is the common name of its certificate.
//!
//! Lifecycle: certificates are valid for `validity_days` from issue (365 by default; the
//! CA for at least ten years), each carries a random 128-bit serial, `revoke` adds a
//! certificate's serial to the CRL (`crl.pem`, re-signed with a higher CRL number), which
//! the server loads and reloads when it changes, and the CA key may be encrypted with a
//! passphrase (PKCS#8, PBES2 with scrypt and AES-256-CBC).

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
/// The CA's certificate revocation list (PEM), which the server's `tls.crl` points at.
pub const CRL: &str = "crl.pem";
/// The environment variable a CA key's passphrase may come from.
pub const PASSPHRASE_ENV: &str = "FEDSSL_CA_PASSPHRASE";
/// Days before expiry from which the server and clients warn about a certificate.
pub const EXPIRY_WARNING_DAYS: i64 = 30;
/// The shortest validity of a CA certificate, in days.
const CA_MIN_DAYS: u32 = 3650;
/// How long a CRL claims to be current (the server does not enforce it; see `revoke`).
const CRL_NEXT_UPDATE_DAYS: i64 = 365;

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
        crl: None,
    }
}

/// Client `name`'s TLS files in a folder written by [`init`].
pub fn client_tls(dir: &Path, name: &str) -> crate::tls::TlsFiles {
    let (cert, key) = client_files(dir, name);
    crate::tls::TlsFiles {
        ca: dir.join(CA_CERT),
        cert,
        key,
        crl: None,
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

/// How a CA issues: its deployment's name, the validity of what it signs, and an optional
/// passphrase for its key.
#[derive(Debug, Clone)]
pub struct CaOptions {
    /// The deployment's name; the CA is called "fedssl CA for NAME".
    pub deployment: String,
    /// Days a server or client certificate stays valid (at least 1).
    pub validity_days: u32,
    /// Encrypts `ca.key` with this passphrase (`None`: a plain PEM key, mode 0600).
    pub passphrase: Option<String>,
}

impl Default for CaOptions {
    fn default() -> Self {
        Self {
            deployment: "fedssl".into(),
            validity_days: 365,
            passphrase: None,
        }
    }
}

/// A random positive 128-bit serial number (RFC 5280 allows up to 20 octets).
fn random_serial() -> rcgen::SerialNumber {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b[0] = (b[0] & 0x7f) | 0x10; // positive and of full length
    rcgen::SerialNumber::from_slice(&b)
}

/// Sets a certificate's validity window: from an hour ago (tolerates clock skew) to
/// `days` from now.
fn set_validity(p: &mut CertificateParams, days: u32) -> anyhow::Result<()> {
    anyhow::ensure!(days >= 1, "--validity-days must be at least 1");
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(i64::from(days));
    p.serial_number = Some(random_serial());
    Ok(())
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

/// Writes the CA key, encrypted when a passphrase is given.
fn write_ca_key(path: &Path, key: &KeyPair, passphrase: Option<&str>) -> anyhow::Result<()> {
    match passphrase {
        None => write_private(path, &key.serialize_pem()),
        Some(p) => {
            anyhow::ensure!(
                p.len() >= 8,
                "the CA passphrase must have at least 8 characters"
            );
            let der = key.serialize_der();
            let info = pkcs8::PrivateKeyInfo::try_from(der.as_slice())
                .map_err(|e| anyhow::anyhow!("cannot encode the CA key: {e}"))?;
            let enc = info
                .encrypt(rand::rngs::OsRng, p.as_bytes())
                .map_err(|e| anyhow::anyhow!("cannot encrypt the CA key: {e}"))?;
            let pem = enc
                .to_pem("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF)
                .map_err(|e| anyhow::anyhow!("cannot encode the CA key: {e}"))?;
            write_private(path, &pem)
        }
    }
}

/// Reads the CA key in `dir`, decrypting it when it is encrypted.
fn read_ca_key(dir: &Path, passphrase: Option<&str>) -> anyhow::Result<KeyPair> {
    let path = dir.join(CA_KEY);
    let pem = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (the CA key stays in the CA folder made by `certs init`)",
            path.display()
        )
    })?;
    if pem.contains("BEGIN ENCRYPTED PRIVATE KEY") {
        let Some(p) = passphrase else {
            bail!(
                "{} is encrypted: give its passphrase with --ca-passphrase-file FILE or the \
                 {PASSPHRASE_ENV} environment variable",
                path.display()
            );
        };
        let (_, der) = pkcs8::der::pem::decode_vec(pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("{} is not a valid PEM key: {e}", path.display()))?;
        let enc = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice()).map_err(|e| {
            anyhow::anyhow!("{} is not an encrypted PKCS#8 key: {e}", path.display())
        })?;
        let plain = enc.decrypt(p.as_bytes()).map_err(|_| {
            anyhow::anyhow!(
                "cannot decrypt {}: wrong passphrase (or a damaged key file)",
                path.display()
            )
        })?;
        KeyPair::try_from(plain.as_bytes())
            .with_context(|| format!("{} holds no usable key", path.display()))
    } else {
        KeyPair::from_pem(&pem)
            .with_context(|| format!("{} is not a valid PEM private key", path.display()))
    }
}

/// The CA in `dir`, ready to sign.
fn load_issuer(dir: &Path, passphrase: Option<&str>) -> anyhow::Result<Issuer<'static, KeyPair>> {
    let ca_pem = std::fs::read_to_string(dir.join(CA_CERT))
        .with_context(|| format!("cannot read {}", dir.join(CA_CERT).display()))?;
    let key = read_ca_key(dir, passphrase)?;
    Issuer::from_ca_cert_pem(&ca_pem, key).context("the CA certificate is invalid")
}

/// Creates the CA, the server certificate (for `server_names`, plus `localhost` and
/// `127.0.0.1`), one certificate per client and an empty CRL in `out`, with the default
/// [`CaOptions`]. Refuses to overwrite a CA.
pub fn init(out: &Path, server_names: &[String], clients: &[String]) -> anyhow::Result<()> {
    init_with(out, server_names, clients, &CaOptions::default())
}

/// [`init`] with a deployment name, a validity and an optional CA passphrase.
pub fn init_with(
    out: &Path,
    server_names: &[String],
    clients: &[String],
    opts: &CaOptions,
) -> anyhow::Result<()> {
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
    anyhow::ensure!(
        !opts.deployment.trim().is_empty() && opts.deployment.len() <= 48,
        "the deployment name must have 1 to 48 characters"
    );
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("fedssl CA for {}", opts.deployment),
    );
    dn.push(DnType::OrganizationName, opts.deployment.clone());
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut ca, opts.validity_days.max(CA_MIN_DAYS))?;
    let ca_cert = ca.self_signed(&ca_key)?;
    write_public(&out.join(CA_CERT), &ca_cert.pem())?;
    write_ca_key(&out.join(CA_KEY), &ca_key, opts.passphrase.as_deref())?;
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
    set_validity(&mut sp, opts.validity_days)?;
    let sk = KeyPair::generate()?;
    let sc = sp.signed_by(&sk, &issuer)?;
    write_public(&out.join(SERVER_CERT), &sc.pem())?;
    write_private(&out.join(SERVER_KEY), &sk.serialize_pem())?;

    for c in clients {
        issue_client(out, &issuer, c, opts.validity_days)?;
    }
    write_crl(out, &issuer, vec![], 1)?;
    Ok(())
}

fn issue_client(
    out: &Path,
    issuer: &Issuer<'_, impl rcgen::SigningKey>,
    name: &str,
    validity_days: u32,
) -> anyhow::Result<()> {
    let mut p = client_params(out, name)?;
    set_validity(&mut p, validity_days)?;
    sign_client(out, issuer, name, p)
}

fn client_params(out: &Path, name: &str) -> anyhow::Result<CertificateParams> {
    validate_client_name(name)?;
    let (cert_path, _) = client_files(out, name);
    if cert_path.exists() {
        bail!(
            "{} already exists; a revoked site gets a new certificate under a new name",
            cert_path.display()
        );
    }
    let mut p = leaf_params(name, vec![])?;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(p)
}

fn sign_client(
    out: &Path,
    issuer: &Issuer<'_, impl rcgen::SigningKey>,
    name: &str,
    p: CertificateParams,
) -> anyhow::Result<()> {
    let (cert_path, key_path) = client_files(out, name);
    let k = KeyPair::generate()?;
    let c = p.signed_by(&k, issuer)?;
    write_public(&cert_path, &c.pem())?;
    write_private(&key_path, &k.serialize_pem())?;
    Ok(())
}

/// Issues one more client certificate, valid for `validity_days`, with the CA in `dir`,
/// leaving the others untouched.
pub fn add_client(
    dir: &Path,
    name: &str,
    validity_days: u32,
    passphrase: Option<&str>,
) -> anyhow::Result<()> {
    let issuer = load_issuer(dir, passphrase)?;
    issue_client(dir, &issuer, name, validity_days)
}

/// Issues a client certificate valid exactly from `not_before` to `not_after` (Unix
/// seconds): for tests of expiry, and for a certificate that must not be valid yet.
pub fn add_client_valid_between(
    dir: &Path,
    name: &str,
    not_before: i64,
    not_after: i64,
    passphrase: Option<&str>,
) -> anyhow::Result<()> {
    anyhow::ensure!(not_after > not_before, "the validity window is empty");
    let issuer = load_issuer(dir, passphrase)?;
    let mut p = client_params(dir, name)?;
    p.not_before = time::OffsetDateTime::from_unix_timestamp(not_before)?;
    p.not_after = time::OffsetDateTime::from_unix_timestamp(not_after)?;
    p.serial_number = Some(random_serial());
    sign_client(dir, &issuer, name, p)
}

/// One revoked certificate in a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Its serial number (big-endian bytes).
    pub serial: Vec<u8>,
    /// When it was revoked (Unix seconds).
    pub revoked_at: i64,
}

/// What a CRL file says.
#[derive(Debug, Clone)]
pub struct CrlInfo {
    /// Its sequence number (each `revoke` increases it).
    pub number: u64,
    /// When it was signed (Unix seconds).
    pub this_update: i64,
    /// The certificates it revokes.
    pub revoked: Vec<RevokedEntry>,
}

/// Reads a PEM CRL (without checking its signature: rustls does that when it loads it).
pub fn read_crl(path: &Path) -> anyhow::Result<CrlInfo> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the revocation list {}", path.display()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a PEM file: {e}", path.display()))?;
    anyhow::ensure!(
        pem.label == "X509 CRL",
        "{} holds a {} where a revocation list (X509 CRL) was expected",
        path.display(),
        pem.label
    );
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents)
        .map_err(|e| anyhow::anyhow!("{} is not a valid CRL: {e}", path.display()))?;
    let number = crl
        .crl_number()
        .and_then(|n| u64::try_from(n.clone()).ok())
        .unwrap_or(0);
    Ok(CrlInfo {
        number,
        this_update: crl.last_update().timestamp(),
        revoked: crl
            .iter_revoked_certificates()
            .map(|r| RevokedEntry {
                serial: r.raw_serial().to_vec(),
                revoked_at: r.revocation_date.timestamp(),
            })
            .collect(),
    })
}

fn write_crl(
    dir: &Path,
    issuer: &Issuer<'_, impl rcgen::SigningKey>,
    revoked: Vec<RevokedEntry>,
    number: u64,
) -> anyhow::Result<()> {
    let now = time::OffsetDateTime::now_utc();
    let mut certs = vec![];
    for r in revoked {
        certs.push(rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from_slice(&r.serial),
            revocation_time: time::OffsetDateTime::from_unix_timestamp(r.revoked_at)?,
            reason_code: None,
            invalidity_date: None,
        });
    }
    let params = rcgen::CertificateRevocationListParams {
        this_update: now,
        next_update: now + time::Duration::days(CRL_NEXT_UPDATE_DAYS),
        crl_number: rcgen::SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: certs,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let crl = params
        .signed_by(issuer)
        .context("cannot sign the revocation list")?;
    replace_atomically(&dir.join(CRL), crl.pem()?.as_bytes())
}

/// Atomic replace (a temporary file in the same folder, fsynced, then renamed over
/// `path`) so a server reloading the CRL never reads half a file.
fn replace_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// What `revoke` did.
#[derive(Debug, Clone)]
pub struct Revocation {
    /// The revoked certificate's serial (hex).
    pub serial: String,
    /// The new CRL's number.
    pub crl_number: u64,
    /// Certificates the CRL now revokes.
    pub revoked: usize,
    /// Whether it was already revoked (nothing changed).
    pub already: bool,
}

/// Revokes client `name`'s certificate in the CA folder `dir`: adds its serial to
/// `dir/crl.pem`, re-signed with the next CRL number. A server whose `tls.crl` is that
/// file (or a copy of it) refuses the site from then on and closes its open connections.
pub fn revoke(dir: &Path, name: &str, passphrase: Option<&str>) -> anyhow::Result<Revocation> {
    validate_client_name(name)?;
    let (cert_path, _) = client_files(dir, name);
    let info = cert_info(&cert_path).with_context(|| {
        format!(
            "no certificate for site `{name}` in {} to revoke",
            dir.display()
        )
    })?;
    let issuer = load_issuer(dir, passphrase)?;
    let crl_path = dir.join(CRL);
    let mut crl = if crl_path.exists() {
        read_crl(&crl_path)?
    } else {
        CrlInfo {
            number: 0,
            this_update: 0,
            revoked: vec![],
        }
    };
    let already = crl.revoked.iter().any(|r| r.serial == info.serial);
    if !already {
        crl.revoked.push(RevokedEntry {
            serial: info.serial.clone(),
            revoked_at: time::OffsetDateTime::now_utc().unix_timestamp(),
        });
    }
    let number = crl.number + 1;
    let n = crl.revoked.len();
    write_crl(dir, &issuer, crl.revoked, number)?;
    Ok(Revocation {
        serial: hex_serial(&info.serial),
        crl_number: number,
        revoked: n,
        already,
    })
}

/// Hex form of a serial number, as `certs list` prints it.
pub fn hex_serial(serial: &[u8]) -> String {
    serial
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Days from `now` until `end` (Unix seconds), a started day counting as one; 0 or less
/// once `end` has passed.
pub fn days_until(end: i64, now: i64) -> i64 {
    if end <= now {
        (end - now).div_euclid(86_400)
    } else {
        (end - now + 86_399).div_euclid(86_400)
    }
}

/// A Unix second as a UTC calendar date, `2027-12-01`.
pub fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| format!("@{unix}"))
}

/// What one certificate file says.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// The file.
    pub path: PathBuf,
    /// Its subject's common name.
    pub common_name: String,
    /// `ca`, `server` or `client` (from its constraints and key usages).
    pub role: &'static str,
    /// Serial number (big-endian bytes).
    pub serial: Vec<u8>,
    /// Valid from (Unix seconds).
    pub not_before: i64,
    /// Valid until (Unix seconds).
    pub not_after: i64,
}

impl CertInfo {
    /// Days until it expires, counting a started day as a day (a certificate issued for
    /// 30 days has 30 left); 0 or less once expired.
    pub fn days_left(&self, now: i64) -> i64 {
        days_until(self.not_after, now)
    }

    /// Whether it has expired at `now`.
    pub fn is_expired(&self, now: i64) -> bool {
        self.not_after <= now
    }
}

/// Reads the first certificate of a PEM file.
pub fn cert_info(path: &Path) -> anyhow::Result<CertInfo> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a PEM file: {e}", path.display()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&pem.contents)
        .map_err(|e| anyhow::anyhow!("{} is not a valid certificate: {e}", path.display()))?;
    Ok(describe(path, &cert))
}

fn describe(path: &Path, cert: &x509_parser::certificate::X509Certificate<'_>) -> CertInfo {
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or("")
        .to_string();
    let role = if cert.is_ca() {
        "ca"
    } else if cert
        .extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|e| e.value.server_auth)
    {
        "server"
    } else {
        "client"
    };
    CertInfo {
        path: path.to_path_buf(),
        common_name,
        role,
        serial: cert.raw_serial().to_vec(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    }
}

/// The certificate files of a folder (CA, server, clients), sorted by role then name, each
/// with whether `crl.pem` in that folder revokes it.
pub fn list(dir: &Path) -> anyhow::Result<Vec<(CertInfo, bool)>> {
    let crl = dir.join(CRL);
    let revoked = if crl.exists() {
        read_crl(&crl)?.revoked
    } else {
        vec![]
    };
    let mut out = vec![];
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for e in entries {
        let path = e?.path();
        if path.extension().is_some_and(|x| x == "pem") && path.file_name() != Some(CRL.as_ref()) {
            let info = cert_info(&path)?;
            let r = revoked.iter().any(|r| r.serial == info.serial);
            out.push((info, r));
        }
    }
    let rank = |r: &str| match r {
        "ca" => 0,
        "server" => 1,
        _ => 2,
    };
    out.sort_by(|(a, _), (b, _)| {
        (rank(a.role), &a.common_name).cmp(&(rank(b.role), &b.common_name))
    });
    Ok(out)
}

/// Logs a warning for each certificate in `paths` that expires within
/// [`EXPIRY_WARNING_DAYS`] days (an error if it has expired), naming what to renew. Unreadable files are
/// left to the TLS setup, which reports them.
pub fn warn_expiring(paths: &[&Path]) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for p in paths {
        if let Ok(c) = cert_info(p) {
            let days = c.days_left(now);
            if c.is_expired(now) {
                tracing::error!(file = %p.display(), name = %c.common_name, "this certificate has expired: issue a new one (fedssl certs add-client, or certs init for a new CA)");
            } else if days < EXPIRY_WARNING_DAYS {
                tracing::warn!(file = %p.display(), name = %c.common_name, days_left = days, "this certificate expires soon: issue a new one before it does");
            }
        }
    }
}
