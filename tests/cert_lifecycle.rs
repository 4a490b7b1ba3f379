//! The certificate lifecycle an operator runs with the `fedssl certs` commands: a CA named
//! after the deployment, certificates valid for `--validity-days`, revocation through the
//! CRL a running server reloads (the revoked site is refused and its open connection
//! closed, the others are unaffected), expired certificates refused, and a CA key under a
//! passphrase.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use fedssl_net::{certs, io};
use fedssl_protocol::{ClientMsg, ServerMsg};

fn fedssl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_fedssl"));
    c.args(args).env("NO_COLOR", "1");
    c.env_remove(certs::PASSPHRASE_ENV);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `fedssl certs revoke --dir DIR --name NAME`.
fn revoke(dir: &Path, name: &str) -> Output {
    fedssl(
        &[
            "certs",
            "revoke",
            "--dir",
            dir.to_str().unwrap(),
            "--name",
            name,
        ],
        &[],
    )
}

/// The `certs list` line of `name`.
fn list_line(dir: &Path, name: &str) -> String {
    let o = fedssl(&["certs", "list", "--dir", dir.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no line for {name} in\n{out}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_site_is_refused_and_cut_off_while_the_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let cd = dir.path().join("certs");
    let o = fedssl(
        &[
            "certs",
            "init",
            "--out",
            cd.to_str().unwrap(),
            "--clients",
            "a,b,c",
            "--deployment",
            "acme-oncology",
            "--validity-days",
            "30",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));

    // Named after the deployment; 30 days of validity from now; distinct random serials.
    let ca = certs::cert_info(&cd.join(certs::CA_CERT)).unwrap();
    assert_eq!(ca.common_name, "fedssl CA for acme-oncology");
    assert_eq!(ca.role, "ca");
    assert_eq!(ca.days_left(now()), 3650, "the CA's validity");
    let mut serials = vec![ca.serial.clone()];
    for n in ["a", "b", "c"] {
        let c = certs::cert_info(&certs::client_files(&cd, n).0).unwrap();
        assert_eq!((c.common_name.as_str(), c.role), (n, "client"));
        let expected = now() + 30 * 86_400;
        assert!((c.not_after - expected).abs() < 120, "{n}: {}", c.not_after);
        assert!(c.not_before <= now(), "{n} is not valid yet");
        assert_eq!(c.serial.len(), 16);
        serials.push(c.serial);
    }
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 4, "serials repeat");
    assert!(certs::read_crl(&cd.join(certs::CRL))
        .unwrap()
        .revoked
        .is_empty());

    // A server that reads the CA folder's CRL.
    let mut cfg = common::server_config(dir.path(), &cd, 1, 3);
    cfg.tls.crl = Some(cd.join(certs::CRL));
    let (addr, _server) = common::start_server(cfg).await;
    let files = |n: &str| certs::client_tls(&cd, n);
    for n in ["a", "b"] {
        assert!(common::welcomed(addr, &files(n), n).await, "{n} refused");
    }
    // Open connections of a (the bystander) and b (to be revoked), both welcomed.
    let mut open = vec![];
    for n in ["a", "b"] {
        let (ep, conn) = common::raw_connect(addr, &files(n)).await.unwrap();
        let (r, _) = io::request(&conn, &common::hello(n), 1 << 20, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(matches!(r, ServerMsg::Welcome(_)), "{r:?}");
        open.push((ep, conn));
    }

    let o = revoke(&cd, "b");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("revoked `b`"), "{}", text(&o));
    let crl = certs::read_crl(&cd.join(certs::CRL)).unwrap();
    assert_eq!(crl.revoked.len(), 1);
    assert_eq!(crl.number, 2);

    // The running server reloads the list: b's open connection is closed...
    let closed = tokio::time::timeout(Duration::from_secs(8), open[1].1.closed())
        .await
        .expect("the revoked site's connection stayed open");
    assert!(
        format!("{closed}").contains("certificate revoked"),
        "{closed}"
    );
    // ... b cannot come back ...
    assert!(!common::welcomed(addr, &files("b"), "b").await);
    // ... and a, connected all along, still gets answers; a new a or c is welcomed.
    let (r, _) = io::request(
        &open[0].1,
        &ClientMsg::FetchModel,
        1 << 22,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(matches!(r, ServerMsg::Model { .. }), "{r:?}");
    assert!(common::welcomed(addr, &files("a"), "a").await);
    assert!(common::welcomed(addr, &files("c"), "c").await);

    // The client program with b's certificate stops at once, naming the files to fix.
    let ccfg = common::client_config(dir.path(), &cd, "b", addr);
    let (code, err, took) = common::run_client_binary(dir.path(), &ccfg);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("refused this site's certificate"), "{err}");
    assert!(
        err.contains("TLS alert 44: the certificate was revoked"),
        "{err}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");

    // The operator's view; revoking twice changes nothing but the CRL's number.
    assert!(list_line(&cd, "b").contains("REVOKED"));
    assert!(list_line(&cd, "a").contains("valid, 30 days left"));
    let o = revoke(&cd, "b");
    assert!(text(&o).contains("already revoked"), "{}", text(&o));
    assert_eq!(
        certs::read_crl(&cd.join(certs::CRL)).unwrap().revoked.len(),
        1
    );
    // A site the CA never issued is named as such.
    let o = revoke(&cd, "zed");
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no certificate for site `zed`"),
        "{}",
        text(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_certificate_is_refused_and_one_about_to_expire_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let cd = common::make_certs(dir.path(), &["a"]);
    let t = now();
    certs::add_client_valid_between(&cd, "old", t - 10 * 86_400, t - 86_400, None).unwrap();
    certs::add_client_valid_between(&cd, "soon", t - 86_400, t + 10 * 86_400, None).unwrap();
    let (addr, _server) = common::start_server(common::server_config(dir.path(), &cd, 1, 3)).await;

    assert!(!common::welcomed(addr, &certs::client_tls(&cd, "old"), "old").await);
    assert!(common::welcomed(addr, &certs::client_tls(&cd, "soon"), "soon").await);
    assert!(common::welcomed(addr, &certs::client_tls(&cd, "a"), "a").await);

    let ccfg = common::client_config(dir.path(), &cd, "old", addr);
    let (code, err, took) = common::run_client_binary(dir.path(), &ccfg);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("refused this site's certificate"), "{err}");
    assert!(
        err.contains("TLS alert 45: the certificate has expired"),
        "{err}"
    );
    // The client warns about its own expired certificate before it even connects.
    assert!(err.contains("this certificate has expired"), "{err}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    assert!(list_line(&cd, "old").contains("EXPIRED"));
    assert!(list_line(&cd, "soon").contains("expires in 10 days: renew"));
    assert!(list_line(&cd, "a").contains("valid, 365 days left"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_passphrase_protects_the_ca_key() {
    let dir = tempfile::tempdir().unwrap();
    let cd = dir.path().join("ca");
    let pass = dir.path().join("pass.txt");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let cds = cd.to_str().unwrap();
    let o = fedssl(
        &[
            "certs",
            "init",
            "--out",
            cds,
            "--clients",
            "a",
            "--ca-passphrase-file",
            pass.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let key = std::fs::read_to_string(cd.join(certs::CA_KEY)).unwrap();
    assert!(
        key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        "{key}"
    );

    // Without the passphrase: refused, naming both ways to give it.
    let add = ["certs", "add-client", "--dir", cds, "--name", "b"];
    let o = fedssl(&add, &[]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("--ca-passphrase-file") && text(&o).contains(certs::PASSPHRASE_ENV),
        "{}",
        text(&o)
    );
    let o = fedssl(&add, &[(certs::PASSPHRASE_ENV, "wrong passphrase")]);
    assert!(!o.status.success());
    assert!(text(&o).contains("wrong passphrase"), "{}", text(&o));
    assert!(!certs::client_files(&cd, "b").0.exists());

    // With it (from the environment, then from the file): issued and revoked.
    let o = fedssl(
        &add,
        &[(certs::PASSPHRASE_ENV, "correct horse battery staple")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = fedssl(
        &[
            "certs",
            "revoke",
            "--dir",
            cds,
            "--name",
            "a",
            "--ca-passphrase-file",
            pass.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));

    // What the decrypted key signed is trusted by a server of this CA, and its CRL holds.
    let mut cfg = common::server_config(dir.path(), &cd, 1, 3);
    cfg.tls.crl = Some(cd.join(certs::CRL));
    let (addr, _server) = common::start_server(cfg).await;
    assert!(common::welcomed(addr, &certs::client_tls(&cd, "b"), "b").await);
    assert!(!common::welcomed(addr, &certs::client_tls(&cd, "a"), "a").await);
}
