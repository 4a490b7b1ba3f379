//! Where a client's heavy work (local training, its monitors, privatization, federated
//! evaluation) runs: a rayon thread pool, optionally behind a gate shared with other
//! clients of the same machine, so that simulated sites never oversubscribe the cores.
//!
//! - [`Compute::global`]: rayon's global pool (all cores unless `--threads` sized it).
//! - [`Schedule::Serial`]: sites train one at a time, each with every core.
//! - [`Schedule::Split`]: the cores are divided among the sites, which train side by side
//!   (at most one site per core at a time).

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::Semaphore;

/// How simulated sites sharing a machine share its cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// One site computes at a time, on all cores.
    Serial,
    /// Cores divided among the sites, which compute concurrently.
    Split,
}

impl std::str::FromStr for Schedule {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "serial" => Ok(Self::Serial),
            "split" => Ok(Self::Split),
            other => anyhow::bail!("unknown schedule {other:?} (expected serial or split)"),
        }
    }
}

/// A pool to run a client's computations on, and the gate it waits at.
#[derive(Clone, Default)]
pub struct Compute {
    pool: Option<Arc<rayon::ThreadPool>>,
    gate: Option<Arc<Semaphore>>,
}

impl std::fmt::Debug for Compute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compute")
            .field("threads", &self.threads())
            .field("gated", &self.gate.is_some())
            .finish()
    }
}

impl Compute {
    /// rayon's global pool, no gate.
    pub fn global() -> Self {
        Self::default()
    }

    /// One [`Compute`] per site for `sites` sites sharing `cores` cores under `schedule`.
    pub fn shared(sites: usize, cores: usize, schedule: Schedule) -> anyhow::Result<Vec<Self>> {
        let cores = cores.max(1);
        let (concurrent, threads) = match schedule {
            Schedule::Serial => (1, cores),
            Schedule::Split => {
                let c = sites.clamp(1, cores);
                (c, cores / c)
            }
        };
        let gate = Arc::new(Semaphore::new(concurrent));
        let pool = match schedule {
            // One pool is enough when only one site computes at a time.
            Schedule::Serial => Some(Arc::new(build_pool(threads)?)),
            Schedule::Split => None,
        };
        (0..sites)
            .map(|_| {
                Ok(Self {
                    pool: match &pool {
                        Some(p) => Some(p.clone()),
                        None => Some(Arc::new(build_pool(threads)?)),
                    },
                    gate: Some(gate.clone()),
                })
            })
            .collect()
    }

    /// Threads the computations get.
    pub fn threads(&self) -> usize {
        match &self.pool {
            Some(p) => p.current_num_threads(),
            None => rayon::current_num_threads(),
        }
    }

    /// Runs `f` on a blocking thread inside this pool, after passing the gate.
    pub async fn run<R, F>(&self, f: F) -> anyhow::Result<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let _permit = match &self.gate {
            Some(g) => Some(
                g.clone()
                    .acquire_owned()
                    .await
                    .context("the compute gate was closed")?,
            ),
            None => None,
        };
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || match pool {
            Some(p) => p.install(f),
            None => f(),
        })
        .await
        .context("a compute task panicked")
    }
}

fn build_pool(threads: usize) -> anyhow::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("fedssl-compute-{i}"))
        .build()
        .context("cannot start a compute thread pool")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn split_divides_cores_and_serial_gives_all() {
        let split = Compute::shared(3, 8, Schedule::Split).unwrap();
        assert_eq!(split.len(), 3);
        assert!(split.iter().all(|c| c.threads() == 2));
        let many = Compute::shared(5, 2, Schedule::Split).unwrap();
        assert!(many.iter().all(|c| c.threads() == 1));
        let serial = Compute::shared(3, 4, Schedule::Serial).unwrap();
        assert!(serial.iter().all(|c| c.threads() == 4));
        // Work runs inside the pool.
        let n = split[0].run(rayon::current_num_threads).await.unwrap();
        assert_eq!(n, 2);
    }

    #[tokio::test]
    async fn serial_runs_one_site_at_a_time() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let sites = Compute::shared(4, 2, Schedule::Serial).unwrap();
        let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks: Vec<_> = sites
            .into_iter()
            .map(|c| {
                let (now, peak) = (now.clone(), peak.clone());
                tokio::spawn(async move {
                    c.run(move || {
                        let k = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(k, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        now.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 1);
    }
}
