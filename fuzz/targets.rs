//! The fuzz targets' bodies, shared by the cargo-fuzz binaries (`fuzz/fuzz_targets/`, nightly)
//! and by `tests/fuzz_corpus.rs`, which replays every stored corpus input on stable. Each
//! takes arbitrary bytes and must return without panicking, whatever they hold.

use fedssl_client::config::ClientConfig;
use fedssl_ml::data::SampleShape;
use fedssl_ml::model::WeightsSpec;
use fedssl_protocol::{decode_message, ClientMsg, FrameDecoder, ModelPayload, ServerMsg};
use fedssl_server::config::{PlanConfig, ServerConfig};

/// A small model layout for payload decoding.
fn spec() -> WeightsSpec {
    WeightsSpec {
        entries: vec![("a".into(), vec![2, 3]), ("b".into(), vec![4])],
    }
}

/// The frame decoder fed the bytes in two pieces, then every frame decoded as both
/// message types.
pub fn frame(data: &[u8]) {
    let mut d = FrameDecoder::new(1 << 16);
    let mid = data.len() / 2;
    for part in [&data[..mid], &data[mid..]] {
        if d.push(part).is_err() {
            return;
        }
        while let Ok(Some(f)) = d.next_frame() {
            message(&f);
        }
    }
}

/// A frame body decoded as a client and as a server message; an upload's tensors decoded.
pub fn message(data: &[u8]) {
    if let Ok(ClientMsg::Upload(u)) = decode_message::<ClientMsg>(data) {
        let _ = u.update.decode(&spec());
        let _ = u.update.decode(&u.update.declared_spec());
    }
    if let Ok(ServerMsg::Task(t)) = decode_message::<ServerMsg>(data) {
        let _ = t.model.decode(&t.model.declared_spec());
    }
}

/// A tensor payload decoded against a fixed layout and against the layout it declares.
pub fn payload(data: &[u8]) {
    if let Ok(p) = decode_message::<ModelPayload>(data) {
        let _ = p.decode(&spec());
        let _ = p.decode(&p.declared_spec());
    }
}

/// The three TOML configurations parsed and validated; a valid plan builds its model spec
/// and a round's plan.
pub fn config(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = toml::from_str::<ServerConfig>(s) {
        let _ = c.validate();
    }
    if let Ok(c) = toml::from_str::<ClientConfig>(s) {
        let _ = c.validate();
    }
    if let Ok(p) = toml::from_str::<PlanConfig>(s) {
        if p.validate().is_ok() {
            let _ = p.model_spec();
            let _ = p.plan(1);
        }
    }
}

/// The data readers: the first byte picks the format (IDX bytes, CSV table, CSV series,
/// NPY series, text lines); the rest is the file.
pub fn data(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    if which % 5 == 0 {
        if let Ok(a) = fedssl_ml::data::idx::parse(body) {
            let _ = fedssl_ml::data::idx::to_dataset(a, None);
        }
        return;
    }
    let (ext, shape) = match which % 5 {
        1 => ("csv", SampleShape::Tabular { features: 4 }),
        2 => (
            "csv",
            SampleShape::Series {
                channels: 2,
                length: 8,
            },
        ),
        3 => (
            "npy",
            SampleShape::Series {
                channels: 2,
                length: 8,
            },
        ),
        _ => ("txt", SampleShape::Text { length: 16 }),
    };
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let path = dir.path().join(format!("input.{ext}"));
    if std::fs::write(&path, body).is_ok() {
        let _ = fedssl_ml::data::load_splits(Some(&path), shape, 1);
    }
}
