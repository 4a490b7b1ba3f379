//! `fedssl status`: what a run directory's SQLite state says, read-only, while the server
//! runs or after it stopped: rounds, sites, the latest model with its hash, and failures.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use crate::config::ServerConfig;

/// The state of a run, as its database records it.
#[derive(Debug, Clone, Serialize)]
pub struct RunStatus {
    /// The server's run directory (the folder holding `fedssl.db`).
    pub run_dir: PathBuf,
    /// Rounds the configuration asks for (`None` when `config.toml` is absent).
    pub rounds_planned: Option<u64>,
    /// Rounds committed so far.
    pub rounds_committed: u64,
    /// The round now open, if any: its number and the sites selected for it.
    pub open_round: Option<OpenRound>,
    /// Since when (Unix seconds) the operator has the run paused (`fedssl pause`), if so.
    pub paused_since: Option<i64>,
    /// The latest global model.
    pub latest_model: Option<ModelVersion>,
    /// What each ε figure means: unit, neighbour relation, δ and accountant (from the
    /// plan in `config.toml`; `None` when it is absent).
    pub epsilon_meaning: Option<String>,
    /// The last rounds, newest last.
    pub rounds: Vec<RoundRow>,
    /// Every site that ever connected.
    pub sites: Vec<SiteRow>,
    /// Rounds recorded as failed, with the reason.
    pub failures: Vec<(u64, String)>,
}

/// The open round.
#[derive(Debug, Clone, Serialize)]
pub struct OpenRound {
    /// Its number.
    pub round: u64,
    /// Sites selected for it.
    pub selected: Vec<String>,
    /// Updates accepted (durably) so far.
    pub accepted: u64,
    /// Unix seconds when it opened.
    pub started_at: i64,
}

/// A committed model version.
#[derive(Debug, Clone, Serialize)]
pub struct ModelVersion {
    /// Version (the round that produced it; 0 is the initial model).
    pub version: u64,
    /// Its file.
    pub path: PathBuf,
    /// SHA-256 of its tensors, as recorded at commit.
    pub hash: String,
    /// Unix seconds of the commit.
    pub created_at: i64,
}

/// One round.
#[derive(Debug, Clone, Serialize)]
pub struct RoundRow {
    /// Number.
    pub round: u64,
    /// `open`, `committed` or `failed`.
    pub status: String,
    /// Updates accepted, rejected, declined (committed rounds).
    pub accepted: Option<u64>,
    /// See `accepted`.
    pub rejected: Option<u64>,
    /// See `accepted`.
    pub declined: Option<u64>,
    /// Mean local loss the sites reported (only sites that opted in).
    pub mean_loss: Option<f64>,
    /// Largest ε a site reported (only sites that opted in; see `epsilon_meaning`).
    pub max_epsilon: Option<f64>,
    /// Wall seconds of the round.
    pub seconds: Option<f64>,
}

/// One site.
#[derive(Debug, Clone, Serialize)]
pub struct SiteRow {
    /// Certificate name.
    pub name: String,
    /// Unix seconds of its last connection.
    pub last_seen: i64,
    /// Updates accepted over the run.
    pub accepted: u64,
    /// Updates rejected over the run.
    pub rejected: u64,
    /// Rounds it declined.
    pub declined: u64,
    /// The last ε it reported (only if it opted in to report it).
    pub epsilon_reported: Option<f64>,
}

/// The folder holding `fedssl.db`: `dir` itself (a server's `run_dir`) or `dir/server` (a
/// `simulate` run).
pub fn locate(dir: &Path) -> anyhow::Result<PathBuf> {
    for d in [dir.to_path_buf(), dir.join("server")] {
        if d.join("fedssl.db").is_file() {
            return Ok(d);
        }
    }
    anyhow::bail!(
        "no fedssl.db in {} or {}/server: pass the server's run_dir (or a simulate --run-dir)",
        dir.display(),
        dir.display()
    )
}

/// The server configuration stored with a run: `config.toml` in the server's run
/// directory, or the `[server]` table of a simulate run's `config.toml` one folder up.
pub fn stored_config(run_dir: &Path) -> Option<ServerConfig> {
    let read = |p: PathBuf| std::fs::read_to_string(p).ok();
    if let Some(text) = read(run_dir.join("config.toml")) {
        if let Ok(c) = toml::from_str::<ServerConfig>(&text) {
            return Some(c);
        }
    }
    let text = read(run_dir.parent()?.join("config.toml"))?;
    let v: toml::Value = toml::from_str(&text).ok()?;
    v.get("server")?.clone().try_into().ok()
}

/// Reads the status of the run in `dir` (see [`locate`]) without writing to it.
pub fn read(dir: &Path) -> anyhow::Result<RunStatus> {
    let run_dir = locate(dir)?;
    let db_path = run_dir.join("fedssl.db");
    let db = Connection::open_with_flags(
        &db_path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {} read-only", db_path.display()))?;
    let cfg = stored_config(&run_dir);
    let count = |sql: &str| -> anyhow::Result<u64> {
        Ok(db.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
    };
    let rounds_committed = count("SELECT COUNT(*) FROM rounds WHERE status = 'committed'")?;
    let open_round = db
        .query_row(
            "SELECT round, selected, started_at FROM rounds WHERE status = 'open'
             ORDER BY round DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?)),
        )
        .optional()?
        .map(
            |(round, selected, started_at)| -> anyhow::Result<OpenRound> {
                Ok(OpenRound {
                    round: round as u64,
                    selected: serde_json::from_str(&selected).unwrap_or_default(),
                    accepted: db.query_row(
                        "SELECT COUNT(*) FROM accepted_updates WHERE round = ?1",
                        [round],
                        |r| r.get::<_, i64>(0),
                    )? as u64,
                    started_at,
                })
            },
        )
        .transpose()?;
    let latest_model = db
        .query_row(
            "SELECT version, path, hash, created_at FROM models ORDER BY version DESC LIMIT 1",
            [],
            |r| {
                Ok(ModelVersion {
                    version: r.get::<_, i64>(0)? as u64,
                    path: PathBuf::from(r.get::<_, String>(1)?),
                    hash: r.get(2)?,
                    created_at: r.get(3)?,
                })
            },
        )
        .optional()?;
    let mut st = db.prepare(
        "SELECT round, status, accepted, rejected, declined, mean_loss, max_epsilon, seconds
         FROM rounds ORDER BY round",
    )?;
    let opt_u = |v: Option<i64>| v.map(|v| v as u64);
    let rounds = st
        .query_map([], |r| {
            Ok(RoundRow {
                round: r.get::<_, i64>(0)? as u64,
                status: r.get(1)?,
                accepted: opt_u(r.get(2)?),
                rejected: opt_u(r.get(3)?),
                declined: opt_u(r.get(4)?),
                mean_loss: r.get(5)?,
                max_epsilon: r.get(6)?,
                seconds: r.get(7)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut st = db.prepare(
        "SELECT c.name, c.last_seen,
           (SELECT COUNT(*) FROM updates u WHERE u.client = c.name AND u.status = 'accepted'),
           (SELECT COUNT(*) FROM updates u WHERE u.client = c.name AND u.status = 'rejected'),
           (SELECT COUNT(*) FROM updates u WHERE u.client = c.name AND u.status = 'declined'),
           (SELECT u.epsilon FROM updates u WHERE u.client = c.name AND u.epsilon IS NOT NULL
              ORDER BY u.id DESC LIMIT 1)
         FROM clients c ORDER BY c.name",
    )?;
    let sites = st
        .query_map([], |r| {
            Ok(SiteRow {
                name: r.get(0)?,
                last_seen: r.get(1)?,
                accepted: r.get::<_, i64>(2)? as u64,
                rejected: r.get::<_, i64>(3)? as u64,
                declined: r.get::<_, i64>(4)? as u64,
                epsilon_reported: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut st = db.prepare("SELECT round, reason FROM round_failures ORDER BY at")?;
    let failures = st
        .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RunStatus {
        run_dir,
        rounds_planned: cfg.as_ref().map(|c| c.rounds),
        rounds_committed,
        open_round,
        paused_since: crate::store::paused(&db)?,
        latest_model,
        epsilon_meaning: cfg.as_ref().map(epsilon_meaning),
        rounds,
        sites,
        failures,
    })
}

/// What an ε reported under this configuration's plan means.
pub fn epsilon_meaning(cfg: &ServerConfig) -> String {
    let mechanism = cfg.plan.privacy.mechanism;
    if !mechanism.is_private() {
        return "no DP in this plan (ε is infinite)".into();
    }
    let unit = mechanism.unit();
    format!(
        "ε per {} ({}, δ = {:e}, RDP accountant, {}); each site's ledger holds its own, the server sees a site's ε only if the site opts in to report it",
        unit.name(),
        unit.neighbour(),
        cfg.delta,
        mechanism.name()
    )
}

/// How long before `now` the Unix second `t` was, for people: "12 s ago", "5 min ago".
pub fn age(now: i64, t: i64) -> String {
    let s = (now - t).max(0);
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{:.1} h ago", s as f64 / 3600.0),
    }
}

impl RunStatus {
    /// A human-readable report (`now`: Unix seconds, for the ages).
    pub fn render(&self, now: i64) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let planned = self
            .rounds_planned
            .map(|r| format!(" of {r}"))
            .unwrap_or_default();
        let _ = writeln!(o, "run        {}", self.run_dir.display());
        let _ = writeln!(o, "rounds     {} committed{planned}", self.rounds_committed);
        match &self.open_round {
            Some(r) => {
                let _ = writeln!(
                    o,
                    "open       round {}: {} of {} selected sites accepted, opened {}",
                    r.round,
                    r.accepted,
                    r.selected.len(),
                    age(now, r.started_at)
                );
            }
            None => {
                let _ = writeln!(o, "open       no round open");
            }
        }
        if let Some(t) = self.paused_since {
            let _ = writeln!(
                o,
                "paused     since {} (fedssl pause): no new round opens until `fedssl resume`",
                age(now, t)
            );
        }
        match &self.latest_model {
            Some(m) => {
                let _ = writeln!(
                    o,
                    "model      version {} ({}), {}\n           sha256 {}",
                    m.version,
                    age(now, m.created_at),
                    m.path.display(),
                    m.hash
                );
            }
            None => {
                let _ = writeln!(o, "model      none yet");
            }
        }
        if let Some(e) = &self.epsilon_meaning {
            let _ = writeln!(o, "privacy    {e}");
        }
        let num = |v: Option<f64>, d: usize| v.map(|v| format!("{v:.d$}")).unwrap_or("-".into());
        let cnt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or("-".into());
        let _ = writeln!(
            o,
            "\nround  status     accepted  rejected  declined  mean loss  max ε reported  seconds"
        );
        for r in self.rounds.iter().rev().take(20).rev() {
            let _ = writeln!(
                o,
                "{:>5}  {:<9}  {:>8}  {:>8}  {:>8}  {:>9}  {:>14}  {:>7}",
                r.round,
                r.status,
                cnt(r.accepted),
                cnt(r.rejected),
                cnt(r.declined),
                num(r.mean_loss, 4),
                num(r.max_epsilon, 3),
                num(r.seconds, 1)
            );
        }
        let _ = writeln!(
            o,
            "\nsite                  last seen     accepted  rejected  declined  ε reported"
        );
        for s in &self.sites {
            let _ = writeln!(
                o,
                "{:<20}  {:<12}  {:>8}  {:>8}  {:>8}  {:>10}",
                s.name,
                age(now, s.last_seen),
                s.accepted,
                s.rejected,
                s.declined,
                num(s.epsilon_reported, 3)
            );
        }
        for (round, reason) in &self.failures {
            let _ = writeln!(o, "\nround {round} failed: {reason}");
        }
        o
    }
}
