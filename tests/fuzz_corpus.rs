//! Replays every stored fuzzing input (`fuzz/corpus/<target>/`) through the fuzz targets'
//! bodies on stable, so a crash a campaign once found stays fixed. The campaigns themselves
//! run with `cargo +nightly fuzz run <target>` (see BENCHMARKS.md).

#[path = "../fuzz/targets.rs"]
mod targets;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        let r = std::panic::catch_unwind(|| f(&bytes));
        assert!(r.is_ok(), "{target}: {} panics", p.display());
        n += 1;
    }
    assert!(n > 0, "{target}: an empty corpus");
    eprintln!("{target}: {n} inputs replayed");
}

#[test]
fn the_frame_decoder_corpus_replays_without_a_panic() {
    replay("frame", targets::frame);
}

#[test]
fn the_message_corpus_replays_without_a_panic() {
    replay("message", targets::message);
}

#[test]
fn the_tensor_payload_corpus_replays_without_a_panic() {
    replay("payload", targets::payload);
}

#[test]
fn the_config_corpus_replays_without_a_panic() {
    replay("config", targets::config);
}

#[test]
fn the_data_reader_corpus_replays_without_a_panic() {
    replay("data", targets::data);
}

/// Writes the seed inputs (real encodings of each message kind) into `fuzz/corpus/`; run by
/// hand (`--ignored`) when the protocol changes.
#[test]
#[ignore]
fn write_seed_corpus() {
    use fedssl_ml::model::weights::WeightTensor;
    use fedssl_ml::model::Weights;
    use fedssl_protocol::{encode_message, ClientMsg, Hello, ModelPayload, SiteReport, Upload};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let w = Weights {
        tensors: vec![
            WeightTensor {
                name: "a".into(),
                shape: vec![2, 3],
                values: vec![0.5; 6],
            },
            WeightTensor {
                name: "b".into(),
                shape: vec![4],
                values: vec![-1.0; 4],
            },
        ],
    };
    let payload = ModelPayload::from_weights(&w);
    let msgs = [
        ClientMsg::Hello(Hello {
            protocol_version: fedssl_protocol::PROTOCOL_VERSION,
            software_version: "0.1.0".into(),
            capabilities: vec!["simclr".into()],
            claimed_name: "site-a".into(),
            num_samples: Some(100),
        }),
        ClientMsg::NextTask { after_round: 3 },
        ClientMsg::Upload(Box::new(Upload {
            round: 4,
            nonce: 77,
            base_model_hash: payload.hash.clone(),
            update: payload.clone(),
            report: SiteReport::default(),
        })),
        ClientMsg::FetchModel,
    ];
    for (i, m) in msgs.iter().enumerate() {
        let framed = encode_message(m, 1 << 20).unwrap();
        std::fs::write(root.join(format!("frame/seed-{i}")), &framed).unwrap();
        std::fs::write(root.join(format!("message/seed-{i}")), &framed[4..]).unwrap();
    }
    let p = encode_message(&payload, 1 << 20).unwrap();
    std::fs::write(root.join("payload/seed-0"), &p[4..]).unwrap();
}
