//! Durable server state: SQLite (rounds, clients, updates, model versions) and model files
//! written atomically. A round is committed in one transaction after its model file is
//! on disk, so a restarted server resumes from the last committed round with the same hash.
//!
//! The open round is durable too: its [`RoundState`] (plan, selection, nonces, deadline) is
//! written when it opens, and every accepted upload's bytes are written (with `synchronous
//! = FULL`, so fsynced) before the site is acknowledged. A restarted server re-opens the
//! round and re-folds those uploads in their original order, so acknowledged sites are not
//! asked again and the aggregate is the one the crashed process held.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rusqlite::{params, Connection, OptionalExtension};

use fedssl_ml::model::Weights;
use fedssl_protocol::Upload;

use crate::engine::RoundState;
use crate::strategy::OptState;

/// What a restarted server needs to continue an open round.
#[derive(Debug)]
pub struct OpenRoundRecord {
    /// The round's plan, selection, nonces and deadline.
    pub state: RoundState,
    /// Accepted uploads, in the order they were accepted.
    pub accepted: Vec<(String, Upload)>,
    /// Sites that declined it.
    pub declined: Vec<String>,
}

fn bincode_cfg() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// The server's database and model folder.
pub struct Store {
    db: Connection,
    models_dir: PathBuf,
    /// Written into every model file's metadata (see [`Store::describe_models`]).
    describe: std::collections::BTreeMap<String, String>,
}

/// `(round, client, status, reason)` of one recorded update.
pub type UpdateRow = (u64, String, String, Option<String>);

/// Outcome of one update, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateStatus {
    /// Validated and folded into the aggregate.
    Accepted,
    /// Refused by validation.
    Rejected,
    /// The client declined the round.
    Declined,
}

impl UpdateStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Declined => "declined",
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating) the store in `run_dir`.
    pub fn open(run_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(run_dir)
            .with_context(|| format!("cannot create run directory {}", run_dir.display()))?;
        let models_dir = run_dir.join("checkpoints");
        std::fs::create_dir_all(&models_dir)?;
        let db = Connection::open(run_dir.join("fedssl.db"))
            .with_context(|| format!("cannot open {}", run_dir.join("fedssl.db").display()))?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS models (
                version INTEGER PRIMARY KEY, hash TEXT NOT NULL, path TEXT NOT NULL,
                created_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS rounds (
                round INTEGER PRIMARY KEY, status TEXT NOT NULL, selected TEXT NOT NULL,
                started_at INTEGER NOT NULL, committed_at INTEGER, model_hash TEXT,
                accepted INTEGER, rejected INTEGER, declined INTEGER, mean_loss REAL,
                max_epsilon REAL, seconds REAL);
             CREATE TABLE IF NOT EXISTS clients (
                name TEXT PRIMARY KEY, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,
                num_samples INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS updates (
                id INTEGER PRIMARY KEY AUTOINCREMENT, round INTEGER NOT NULL,
                client TEXT NOT NULL, status TEXT NOT NULL, reason TEXT, norm REAL,
                num_samples INTEGER, loss REAL, epsilon REAL, at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS central_dp (
                round INTEGER PRIMARY KEY, release TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS client_clip (
                round INTEGER PRIMARY KEY, clip_norm REAL NOT NULL);
             CREATE TABLE IF NOT EXISTS round_state (
                round INTEGER PRIMARY KEY, state TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS accepted_updates (
                id INTEGER PRIMARY KEY AUTOINCREMENT, round INTEGER NOT NULL,
                client TEXT NOT NULL, upload BLOB NOT NULL, UNIQUE(round, client));
             CREATE TABLE IF NOT EXISTS round_failures (
                round INTEGER NOT NULL, at INTEGER NOT NULL, reason TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS server_opt (
                round INTEGER PRIMARY KEY, state BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS control (
                key TEXT PRIMARY KEY, value TEXT NOT NULL, at INTEGER NOT NULL);",
        )?;
        Ok(Self {
            db,
            models_dir,
            describe: Default::default(),
        })
    }

    /// Records that the operator paused (`true`) or resumed the run; a restarted server
    /// keeps the state.
    pub fn set_paused(&self, paused: bool) -> anyhow::Result<()> {
        self.db.execute(
            "INSERT INTO control (key, value, at) VALUES ('paused', ?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value, at = excluded.at",
            rusqlite::params![if paused { "1" } else { "0" }, now()],
        )?;
        Ok(())
    }

    /// Whether the operator left the run paused.
    pub fn is_paused(&self) -> anyhow::Result<bool> {
        Ok(paused(&self.db)?.is_some())
    }

    /// The latest committed model: `(version, weights)`. Its file's hash is checked.
    pub fn latest_model(&self) -> anyhow::Result<Option<(u64, Weights)>> {
        let row: Option<(i64, String, String)> = self
            .db
            .query_row(
                "SELECT version, hash, path FROM models ORDER BY version DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((version, hash, path)) = row else {
            return Ok(None);
        };
        let w = Weights::load(Path::new(&path))?;
        if w.hash() != hash {
            bail!(
                "model file {path} has hash {} but the database recorded {hash}: the file was \
                 modified or corrupted",
                w.hash()
            );
        }
        Ok(Some((version as u64, w)))
    }

    /// Makes every model file written from now on describe itself: `describe` (the spec,
    /// the plan, the software version) goes into its safetensors metadata, with
    /// `fedssl.round` set to the file's version.
    pub fn describe_models(&mut self, describe: std::collections::BTreeMap<String, String>) {
        self.describe = describe;
    }

    fn save_model(&self, w: &Weights, version: u64) -> anyhow::Result<PathBuf> {
        let path = self.model_path(version);
        let mut meta = self.describe.clone();
        meta.insert("fedssl.round".into(), version.to_string());
        w.save_described(&path, &meta)?;
        Ok(path)
    }

    /// Saves the initial model as version 0.
    pub fn save_initial(&mut self, w: &Weights) -> anyhow::Result<()> {
        let path = self.save_model(w, 0)?;
        self.db.execute(
            "INSERT OR REPLACE INTO models (version, hash, path, created_at) VALUES (0, ?1, ?2, ?3)",
            params![w.hash(), path.display().to_string(), now()],
        )?;
        Ok(())
    }

    fn model_path(&self, version: u64) -> PathBuf {
        self.models_dir
            .join(format!("global-{version:06}.safetensors"))
    }

    /// Every client that ever connected to this run.
    pub fn client_names(&self) -> anyhow::Result<Vec<String>> {
        let mut st = self.db.prepare("SELECT name FROM clients ORDER BY name")?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Records that a client connected.
    pub fn touch_client(&self, name: &str, num_samples: u64) -> anyhow::Result<()> {
        self.db.execute(
            "INSERT INTO clients (name, first_seen, last_seen, num_samples) VALUES (?1, ?2, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET last_seen = ?2, num_samples = ?3",
            params![name, now(), num_samples as i64],
        )?;
        Ok(())
    }

    /// Records a round as open with its state (replacing an earlier attempt), durably,
    /// before any site is given its task.
    pub fn open_round(&mut self, state: &RoundState) -> anyhow::Result<()> {
        let selected: Vec<&String> = state.nonces.keys().collect();
        let tx = self.db.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO rounds (round, status, selected, started_at) VALUES (?1, 'open', ?2, ?3)",
            params![state.round as i64, serde_json::to_string(&selected)?, state.started_at as i64],
        )?;
        // Uploads of an earlier, failed attempt at this round are not part of this one.
        tx.execute(
            "DELETE FROM accepted_updates WHERE round = ?1",
            params![state.round as i64],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO round_state (round, state) VALUES (?1, ?2)",
            params![state.round as i64, serde_json::to_string(state)?],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Replaces the open round's state (after an extension).
    pub fn update_round_state(&self, state: &RoundState) -> anyhow::Result<()> {
        let selected: Vec<&String> = state.nonces.keys().collect();
        self.db.execute(
            "UPDATE rounds SET selected = ?2 WHERE round = ?1",
            params![state.round as i64, serde_json::to_string(&selected)?],
        )?;
        self.db.execute(
            "INSERT OR REPLACE INTO round_state (round, state) VALUES (?1, ?2)",
            params![state.round as i64, serde_json::to_string(state)?],
        )?;
        Ok(())
    }

    /// Makes an accepted upload durable, with its outcome row, in one transaction. Only
    /// after this returns may the site be acknowledged.
    pub fn accept_update(
        &mut self,
        client: &str,
        upload: &Upload,
        norm: f64,
    ) -> anyhow::Result<()> {
        let bytes = bincode::serde::encode_to_vec(upload, bincode_cfg())
            .context("cannot encode the upload for storage")?;
        let r = &upload.report;
        let tx = self.db.transaction()?;
        tx.execute(
            "INSERT INTO accepted_updates (round, client, upload) VALUES (?1, ?2, ?3)",
            params![upload.round as i64, client, bytes],
        )?;
        tx.execute(
            "INSERT INTO updates (round, client, status, reason, norm, num_samples, loss, epsilon, at)
             VALUES (?1, ?2, 'accepted', NULL, ?3, ?4, ?5, ?6, ?7)",
            params![
                upload.round as i64,
                client,
                norm,
                r.num_samples.map(|n| n as i64),
                r.mean_loss.map(f64::from),
                r.epsilon,
                now()
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The open round `round`, if a previous process left it open: its state, accepted
    /// uploads (in acceptance order) and declines.
    pub fn open_round_record(&self, round: u64) -> anyhow::Result<Option<OpenRoundRecord>> {
        let status: Option<String> = self
            .db
            .query_row(
                "SELECT status FROM rounds WHERE round = ?1",
                params![round as i64],
                |r| r.get(0),
            )
            .optional()?;
        if status.as_deref() != Some("open") {
            return Ok(None);
        }
        let Some(text) = self
            .db
            .query_row(
                "SELECT state FROM round_state WHERE round = ?1",
                params![round as i64],
                |r| r.get::<_, String>(0),
            )
            .optional()?
        else {
            return Ok(None);
        };
        let state: RoundState = serde_json::from_str(&text).with_context(|| {
            format!("the stored state of open round {round} is corrupt; restore fedssl.db from a backup")
        })?;
        let accepted = self.accepted_uploads(round)?;
        let mut st = self.db.prepare(
            "SELECT DISTINCT client FROM updates WHERE round = ?1 AND status = 'declined' AND at >= ?2",
        )?;
        let declined = st
            .query_map(params![round as i64, state.started_at as i64], |r| {
                r.get::<_, String>(0)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(OpenRoundRecord {
            state,
            accepted,
            declined,
        }))
    }

    /// Records that `round` failed, with the reason; its uploads are dropped and the model
    /// version does not advance.
    pub fn fail_round(&mut self, round: u64, reason: &str) -> anyhow::Result<()> {
        let tx = self.db.transaction()?;
        tx.execute(
            "UPDATE rounds SET status = 'failed' WHERE round = ?1",
            params![round as i64],
        )?;
        tx.execute(
            "INSERT INTO round_failures (round, at, reason) VALUES (?1, ?2, ?3)",
            params![round as i64, now(), reason],
        )?;
        tx.execute(
            "DELETE FROM accepted_updates WHERE round = ?1",
            params![round as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// `(round, reason)` of every failed round attempt, oldest first.
    pub fn failures(&self) -> anyhow::Result<Vec<(u64, String)>> {
        let mut st = self
            .db
            .prepare("SELECT round, reason FROM round_failures ORDER BY rowid")?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The accepted uploads of `round` still kept (the open round's, and the last
    /// committed round's until the next commit), in acceptance order.
    pub fn accepted_uploads(&self, round: u64) -> anyhow::Result<Vec<(String, Upload)>> {
        let mut st = self
            .db
            .prepare("SELECT client, upload FROM accepted_updates WHERE round = ?1 ORDER BY id")?;
        let rows = st
            .query_map(params![round as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(c, b)| {
                let (u, _): (Upload, usize) = bincode::serde::decode_from_slice(&b, bincode_cfg())
                    .with_context(|| format!("the stored update of {c} is corrupt"))?;
                Ok((c, u))
            })
            .collect()
    }

    /// The server optimizer's state of the last commit that had one.
    pub fn latest_opt_state(&self) -> anyhow::Result<Option<OptState>> {
        let blob: Option<Vec<u8>> = self
            .db
            .query_row(
                "SELECT state FROM server_opt ORDER BY round DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        blob.map(|b| {
            bincode::serde::decode_from_slice::<OptState, _>(&b, bincode_cfg())
                .map(|(s, _)| s)
                .context(
                    "the stored server-optimizer state is corrupt; restore fedssl.db from a backup",
                )
        })
        .transpose()
    }

    /// Records one update's outcome (durably, before the client is answered).
    #[allow(clippy::too_many_arguments)]
    pub fn record_update(
        &self,
        round: u64,
        client: &str,
        status: UpdateStatus,
        reason: Option<&str>,
        norm: Option<f64>,
        num_samples: Option<u64>,
        loss: Option<f64>,
        epsilon: Option<f64>,
    ) -> anyhow::Result<()> {
        self.db.execute(
            "INSERT INTO updates (round, client, status, reason, norm, num_samples, loss, epsilon, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                round as i64,
                client,
                status.as_str(),
                reason,
                norm,
                num_samples.map(|n| n as i64),
                loss,
                epsilon,
                now()
            ],
        )?;
        Ok(())
    }

    /// Writes the round's model file, then commits the round and the model version in one
    /// transaction.
    pub fn commit_round(
        &mut self,
        m: &crate::metrics::RoundMetrics,
        model: &Weights,
        opt: Option<&OptState>,
    ) -> anyhow::Result<()> {
        let path = self.save_model(model, m.round)?;
        let tx = self.db.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO models (version, hash, path, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![m.round as i64, m.model_hash, path.display().to_string(), now()],
        )?;
        tx.execute(
            "UPDATE rounds SET status = 'committed', committed_at = ?2, model_hash = ?3,
               accepted = ?4, rejected = ?5, declined = ?6, mean_loss = ?7, max_epsilon = ?8,
               seconds = ?9 WHERE round = ?1",
            params![
                m.round as i64,
                now(),
                m.model_hash,
                m.clients_accepted as i64,
                m.clients_rejected as i64,
                m.clients_declined as i64,
                m.mean_local_loss,
                m.max_epsilon,
                m.seconds
            ],
        )?;
        // Central DP's release commits with the round: ε and the next clip bound survive
        // a crash exactly when the model they belong to does.
        if let Some(c) = m.client_clip_norm {
            tx.execute(
                "INSERT OR REPLACE INTO client_clip (round, clip_norm) VALUES (?1, ?2)",
                params![m.round as i64, c],
            )?;
        }
        if let Some(c) = &m.central_dp {
            tx.execute(
                "INSERT OR REPLACE INTO central_dp (round, release) VALUES (?1, ?2)",
                params![m.round as i64, serde_json::to_string(c)?],
            )?;
        }
        // The server optimizer's moments commit with the model they produced.
        if let Some(o) = opt {
            tx.execute(
                "INSERT OR REPLACE INTO server_opt (round, state) VALUES (?1, ?2)",
                params![
                    m.round as i64,
                    bincode::serde::encode_to_vec(o, bincode_cfg())?
                ],
            )?;
            tx.execute(
                "DELETE FROM server_opt WHERE round < ?1",
                params![m.round as i64],
            )?;
        }
        // The committed round's uploads stay (for audit) until the next commit.
        tx.execute(
            "DELETE FROM accepted_updates WHERE round < ?1",
            params![m.round as i64],
        )?;
        tx.execute(
            "DELETE FROM round_state WHERE round <= ?1",
            params![m.round as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Client-level adaptive clipping: the bound the last committed round moved C to.
    pub fn latest_client_clip(&self) -> anyhow::Result<Option<f64>> {
        Ok(self
            .db
            .query_row(
                "SELECT clip_norm FROM client_clip ORDER BY round DESC LIMIT 1",
                [],
                |r| r.get::<_, f64>(0),
            )
            .optional()?)
    }

    /// Central DP's committed releases, oldest first.
    pub fn central_history(&self) -> anyhow::Result<Vec<crate::central_dp::CentralRound>> {
        let mut st = self
            .db
            .prepare("SELECT release FROM central_dp ORDER BY round")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            let text = row?;
            out.push(serde_json::from_str(&text).with_context(|| {
                format!("the run's central DP record is corrupt ({text:?}); restore fedssl.db from a backup")
            })?);
        }
        Ok(out)
    }

    /// Number of committed rounds.
    pub fn committed_rounds(&self) -> anyhow::Result<u64> {
        Ok(self.db.query_row(
            "SELECT COUNT(*) FROM rounds WHERE status = 'committed'",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// `(round, client, status, reason)` of every recorded update, oldest first.
    pub fn updates(&self) -> anyhow::Result<Vec<UpdateRow>> {
        let mut st = self
            .db
            .prepare("SELECT round, client, status, reason FROM updates ORDER BY id")?;
        let rows = st
            .query_map([], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

/// Since when (Unix seconds) the run is paused, if it is; a database from before the
/// `control` table reads as not paused.
pub fn paused(db: &Connection) -> anyhow::Result<Option<i64>> {
    let row = db.query_row(
        "SELECT value, at FROM control WHERE key = 'paused'",
        [],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
    );
    match row {
        Ok((v, at)) => Ok((v == "1").then_some(at)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.contains("no such table") => Ok(None),
        Err(e) => Err(e.into()),
    }
}
