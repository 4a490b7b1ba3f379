//! The admin socket: `RUN_DIR/admin.sock`, a Unix socket with mode 0600 (only the server's
//! user can connect; nothing listens on the network), over which `fedssl pause`, `resume`
//! and `stop` reach a running server. One request per connection: a command word on one
//! line, answered by one line of JSON ([`Answer`]).
//!
//! The socket also marks a run directory as in use: a second server started on the same
//! `run_dir` finds it answering and refuses to start. A socket left by a killed server does
//! not answer and is replaced.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

/// The socket's file name in the run directory.
pub const SOCKET: &str = "admin.sock";

/// What the operator asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// Let the open round finish, then open no new one (kept across a restart).
    Pause,
    /// Open rounds again.
    Resume,
    /// Stop the server now, as a restart would find it: every acknowledged update is
    /// already durable, and the open round resumes when the server starts again.
    Stop,
}

impl Command {
    fn parse(word: &str) -> Option<Self> {
        match word.trim() {
            "pause" => Some(Self::Pause),
            "resume" => Some(Self::Resume),
            "stop" => Some(Self::Stop),
            _ => None,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Stop => "stop",
        }
    }
}

/// The server's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    /// Whether the command took effect.
    pub ok: bool,
    /// What happened, or why not.
    pub message: String,
    /// Rounds committed when the command was handled.
    pub rounds_committed: u64,
    /// The round open then, if any.
    pub open_round: Option<u64>,
    /// Whether the run is paused now.
    pub paused: bool,
}

/// A command and where its answer goes.
pub type Request = (Command, oneshot::Sender<Answer>);

/// Binds `run_dir/admin.sock`. Refuses when another server answers on it; replaces a
/// stale one. A path too long for a Unix socket gets a warning and no socket.
pub async fn bind(run_dir: &Path) -> anyhow::Result<Option<tokio::net::UnixListener>> {
    let path = run_dir.join(SOCKET);
    if path.as_os_str().len() > 100 {
        warn!(path = %path.display(), "the run directory's path is too long for a Unix socket: `fedssl pause|resume|stop` cannot reach this server (use a shorter run_dir)");
        return Ok(None);
    }
    if path.exists() {
        // A server that is going away (its process or task ending) may answer for a moment:
        // only a socket that keeps answering belongs to a live server.
        let mut answers = 0;
        for _ in 0..3 {
            if tokio::net::UnixStream::connect(&path).await.is_ok() {
                answers += 1;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if answers == 3 {
            anyhow::bail!(
                "another fedssl server is running on {} (its admin socket answered); stop it \
                 first (`fedssl stop --run-dir {}`) or choose another run_dir",
                run_dir.display(),
                run_dir.display()
            );
        }
        std::fs::remove_file(&path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    let l = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("cannot create the admin socket {}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(Some(l))
}

/// Serves the socket: each connection's command goes to `to_driver`, its answer back.
pub async fn serve(listener: tokio::net::UnixListener, to_driver: mpsc::Sender<Request>) {
    while let Ok((stream, _)) = listener.accept().await {
        let tx = to_driver.clone();
        tokio::spawn(async move {
            if let Err(e) = answer_one(stream, tx).await {
                debug!(error = %format!("{e:#}"), "admin request failed");
            }
        });
    }
}

async fn answer_one(
    stream: tokio::net::UnixStream,
    to_driver: mpsc::Sender<Request>,
) -> anyhow::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    let mut r = BufReader::new(r).take(256);
    tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line))
        .await
        .context("no command within 5 s")??;
    let answer = match Command::parse(&line) {
        Some(cmd) => {
            let (tx, rx) = oneshot::channel();
            to_driver
                .send((cmd, tx))
                .await
                .map_err(|_| anyhow::anyhow!("the server is shutting down"))?;
            rx.await.context("the server is shutting down")?
        }
        None => Answer {
            ok: false,
            message: format!(
                "unknown command {:?}: use pause, resume or stop",
                line.trim()
            ),
            rounds_committed: 0,
            open_round: None,
            paused: false,
        },
    };
    let mut out = serde_json::to_string(&answer)?;
    out.push('\n');
    w.write_all(out.as_bytes()).await?;
    w.shutdown().await?;
    Ok(())
}

/// The socket of the run in `dir`: a server's `run_dir`, or a simulate `--run-dir`.
pub fn socket_path(dir: &Path) -> PathBuf {
    let server = dir.join("server").join(SOCKET);
    if server.exists() {
        server
    } else {
        dir.join(SOCKET)
    }
}

/// Sends `cmd` to the server running on `dir` (the `fedssl pause|resume|stop` commands).
pub async fn send(dir: &Path, cmd: Command) -> anyhow::Result<Answer> {
    let path = socket_path(dir);
    let stream = tokio::net::UnixStream::connect(&path)
        .await
        .with_context(|| {
            format!(
                "no server answers on {} (the admin socket exists only while a server runs on \
             that run_dir; is it running, and is this its run_dir?)",
                path.display()
            )
        })?;
    let (r, mut w) = stream.into_split();
    w.write_all(format!("{}\n", cmd.word()).as_bytes()).await?;
    w.shutdown().await?;
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(r).take(64 * 1024).read_line(&mut line),
    )
    .await
    .context("the server did not answer within 30 s")??;
    serde_json::from_str(&line)
        .with_context(|| format!("unexpected answer from the server: {:?}", line.trim()))
}
