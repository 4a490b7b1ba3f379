//! Every TOML block in the README and in docs/ parses as the configuration it shows (a
//! server, a client or a plan) and passes that configuration's validation, so a user who
//! copies one gets a working file.

use std::path::Path;

/// The ```toml blocks of a Markdown file, dedented, with their first line number.
fn toml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match &mut current {
            None if trimmed.starts_with("```toml") => {
                current = Some((i + 1, line.len() - trimmed.len(), String::new()))
            }
            Some((start, _, body)) if trimmed.starts_with("```") => {
                out.push((*start, std::mem::take(body)));
                current = None;
            }
            Some((_, indent, body)) => {
                let cut = line.len().min(*indent);
                body.push_str(&line[cut..]);
                body.push('\n');
            }
            None => {}
        }
    }
    out
}

fn check(file: &Path) -> usize {
    let text = std::fs::read_to_string(file).unwrap();
    let blocks = toml_blocks(&text);
    for (line, body) in &blocks {
        let at = format!("{}:{line}", file.display());
        let value: toml::Table = toml::from_str(body).unwrap_or_else(|e| panic!("{at}: {e}"));
        if value.contains_key("listen") {
            let c: fedssl_server::config::ServerConfig =
                toml::from_str(body).unwrap_or_else(|e| panic!("{at}: server config: {e}"));
            c.validate()
                .unwrap_or_else(|e| panic!("{at}: server config: {e:#}"));
        } else if value.contains_key("server_addr") {
            let c: fedssl_client::config::ClientConfig =
                toml::from_str(body).unwrap_or_else(|e| panic!("{at}: client config: {e}"));
            c.validate()
                .unwrap_or_else(|e| panic!("{at}: client config: {e:#}"));
        } else {
            let p: fedssl_server::config::PlanConfig =
                toml::from_str(body).unwrap_or_else(|e| panic!("{at}: plan: {e}"));
            p.validate().unwrap_or_else(|e| panic!("{at}: plan: {e:#}"));
        }
    }
    blocks.len()
}

#[test]
fn every_toml_block_in_the_readme_and_docs_parses_and_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    for e in std::fs::read_dir(root.join("docs")).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "md") {
            files.push(e.path());
        }
    }
    let blocks: usize = files.iter().map(|f| check(f)).sum();
    assert!(blocks >= 2, "only {blocks} TOML blocks found");
}

#[test]
fn a_toml_block_with_a_misplaced_key_is_caught() {
    // The failure this test exists for: a key under the wrong table.
    let md = "```toml\nserver_addr = \"10.0.0.5:4433\"\nserver_name = \"x\"\nstate_dir = \"s\"\nepsilon_budget = 1.0\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\nlocal_eval_labels = 200\n```\n";
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.md");
    std::fs::write(&f, md).unwrap();
    let e = std::panic::catch_unwind(|| check(&f)).unwrap_err();
    let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("local_eval_labels"), "{msg}");
}
