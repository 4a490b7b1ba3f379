//! Loading a site's training data from its configuration.

use crate::config::ClientData;
use fedssl_ml::data::{load_splits, partition::partition, Dataset, Partition};

/// The site's training data (labels, where the source has them, are used only for
/// federated evaluation when `local_eval_labels` asks for it).
pub fn load(cfg: &ClientData) -> anyhow::Result<Dataset> {
    let splits = load_splits(cfg.dir.as_deref(), cfg.shape, cfg.seed)?;
    let train = splits.train;
    let data = match cfg.shard {
        None => train,
        Some(s) => {
            let scheme: Partition = cfg.partition.parse()?;
            let parts = partition(
                train.len(),
                train.labels.as_deref(),
                s.count,
                scheme,
                cfg.seed,
                2,
            )?;
            train.subset(&parts[s.index])
        }
    };
    Ok(data)
}
