//! The packaging in `deploy/` runs the programs this build makes: every command line of the
//! systemd units and the Dockerfile's entry points is accepted by the binary it names (a
//! renamed flag or subcommand fails here, not on a customer's machine).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The built binary `name` (`fedssl` or the edge `fedssl-client`, which lives in another
/// package of the workspace, beside this test's folder).
fn binary(name: &str) -> PathBuf {
    if name == "fedssl" {
        return PathBuf::from(env!("CARGO_BIN_EXE_fedssl"));
    }
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().and_then(Path::parent).unwrap().join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --release --workspace --all-targets` first",
        p.display()
    );
    p
}

/// Checks that the program accepts `argv` (its arguments): the same line with `--help`
/// appended must succeed, and print the chosen subcommand's help.
fn accepts(argv: &[String], origin: &str) {
    let (prog, args) = argv.split_first().unwrap();
    let name = Path::new(prog).file_name().unwrap().to_str().unwrap();
    let out = Command::new(binary(name))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{origin}: `{}` is refused:\n{text}",
        argv.join(" ")
    );
    assert!(text.contains("Usage:"), "{origin}: {text}");
}

#[test]
fn systemd_units_run_commands_the_binaries_accept() {
    let dir = root().join("deploy/systemd");
    let mut seen = 0;
    for unit in ["fedssl-server.service", "fedssl-client.service"] {
        let text = std::fs::read_to_string(dir.join(unit)).unwrap();
        for line in text.lines() {
            if let Some(cmd) = line
                .strip_prefix("ExecStart=")
                .or_else(|| line.strip_prefix("ExecStop="))
            {
                let argv: Vec<String> = cmd.split_whitespace().map(String::from).collect();
                accepts(&argv, unit);
                seen += 1;
            }
        }
        assert!(text.contains("User=fedssl"), "{unit} must not run as root");
    }
    assert_eq!(seen, 3, "ExecStart of both units and the server's ExecStop");
}

#[test]
fn the_dockerfile_entry_points_are_commands_the_binaries_accept() {
    let text = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let mut targets = vec![];
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("FROM ") {
            targets.push(rest.rsplit(' ').next().unwrap().to_string());
        }
        if let Some(json) = line.strip_prefix("ENTRYPOINT ") {
            let argv: Vec<String> = serde_json::from_str(json).unwrap();
            accepts(&argv, "deploy/Dockerfile");
        }
    }
    for t in ["build", "server", "client"] {
        assert!(
            targets.iter().any(|x| x == t),
            "no `{t}` stage in {targets:?}"
        );
    }
    assert!(
        text.contains("USER fedssl"),
        "the images must not run as root"
    );
}
