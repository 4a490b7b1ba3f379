//! The site's decisions on a task that need no I/O: resend, decline or train. One noising
//! per round, ever: a round the ledger charged is answered with the very bytes that were
//! privatized then (while they are kept) or refused, never noised again.

use fedssl_privacy::ledger::PrivacyLedger;
use fedssl_protocol::Upload;

/// What to do with a task for `round` from base model `base`.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Send the kept privatized update again (same bytes; the task's nonce).
    Resend(Box<Upload>),
    /// Refuse, with the reason (recorded by the server).
    Decline(String),
    /// Train and privatize afresh; `clear_pending` when the kept update belongs to a round
    /// the server has moved past.
    Fresh {
        /// Forget the kept update first.
        clear_pending: bool,
    },
}

/// Decides on a task from the kept update and the ledger.
pub fn decide(
    round: u64,
    base: &str,
    nonce: u64,
    pending: Option<&Upload>,
    ledger: &PrivacyLedger,
) -> Decision {
    if let Some(p) = pending {
        if p.round == round && p.base_model_hash == base {
            let mut u = p.clone();
            u.nonce = nonce;
            return Decision::Resend(Box::new(u));
        }
    }
    if let Some(e) = ledger.entry(round) {
        let why = if e.base_model_hash == base {
            "its privatized update is no longer kept"
        } else {
            "the server now names another base model for it"
        };
        return Decision::Decline(format!(
            "round {round} was already privatized and released by this site (from model {}); {why}, and noising the same round again would spend privacy twice. Refusing",
            short(&e.base_model_hash)
        ));
    }
    let last = ledger.last_round();
    if round < last {
        return Decision::Decline(format!(
            "the server asks for round {round}, older than round {last} this site already spent; refusing"
        ));
    }
    Decision::Fresh {
        clear_pending: pending.is_some_and(|p| p.round < round),
    }
}

/// The round a (re)connecting site tells the server it is done with (`NextTask {
/// after_round }`): the last round it saw answered in this process (`seen`: acknowledged,
/// declined or closed), or the last one the server acknowledged before a restart. Never a
/// round whose privatized update was charged but not acknowledged: the server, which may
/// have lost it in a crash, offers that round again, and the kept bytes are resent (see
/// [`decide`]). A site that reports its ledger's last round instead waits forever for a
/// round the server will only finish with its update.
pub fn resume_after(seen: u64, acknowledged: Option<u64>) -> u64 {
    seen.max(acknowledged.unwrap_or(0))
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedssl_privacy::ledger::{LedgerEntry, Release};
    use fedssl_protocol::{ModelPayload, SiteReport};

    fn upload(round: u64, base: &str) -> Upload {
        Upload {
            round,
            nonce: 1,
            base_model_hash: base.into(),
            update: ModelPayload::from_weights(&Default::default()),
            report: SiteReport::default(),
        }
    }

    fn ledger(rounds: &[(u64, &str)]) -> PrivacyLedger {
        let mut l = PrivacyLedger::new(1e-5, 0);
        for &(round, base) in rounds {
            l.entries.push(LedgerEntry {
                round,
                base_model_hash: base.into(),
                at: 0,
                releases: vec![Release {
                    what: "update".into(),
                    bounds: vec![],
                }],
            });
        }
        l
    }

    #[test]
    fn the_same_round_under_a_new_nonce_gets_the_same_bytes() {
        let l = ledger(&[(3, "m2")]);
        let p = upload(3, "m2");
        match decide(3, "m2", 99, Some(&p), &l) {
            Decision::Resend(u) => {
                assert_eq!(u.nonce, 99);
                assert_eq!(u.update, p.update);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_same_round_from_another_base_or_without_its_bytes_is_refused() {
        let l = ledger(&[(3, "m2")]);
        let p = upload(3, "m2");
        assert!(
            matches!(decide(3, "other", 5, Some(&p), &l), Decision::Decline(r) if r.contains("another base model"))
        );
        assert!(
            matches!(decide(3, "m2", 5, None, &l), Decision::Decline(r) if r.contains("no longer kept"))
        );
        assert!(matches!(decide(2, "m1", 5, None, &l), Decision::Decline(_)));
    }

    /// Charged for round 3, acknowledged only up to round 2 (the process or the server
    /// died in between): the site asks after round 2, so round 3 comes again and the same
    /// bytes are resent.
    #[test]
    fn a_charged_but_unacknowledged_round_is_asked_for_again() {
        assert_eq!(resume_after(0, Some(2)), 2);
        assert_eq!(resume_after(3, Some(2)), 3, "seen answered in this process");
        assert_eq!(resume_after(0, None), 0);
        let l = ledger(&[(2, "m1"), (3, "m2")]);
        let after = resume_after(0, Some(2));
        let next_task_round = after + 1;
        assert!(matches!(
            decide(next_task_round, "m2", 7, Some(&upload(3, "m2")), &l),
            Decision::Resend(_)
        ));
    }

    #[test]
    fn a_later_round_trains_and_drops_the_old_bytes() {
        let l = ledger(&[(3, "m2")]);
        assert_eq!(
            decide(4, "m3", 5, Some(&upload(3, "m2")), &l),
            Decision::Fresh {
                clear_pending: true
            }
        );
        assert_eq!(
            decide(1, "m0", 5, None, &ledger(&[])),
            Decision::Fresh {
                clear_pending: false
            }
        );
    }
}
