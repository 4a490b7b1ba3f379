//! Every checkpoint describes itself: the server writes the model spec, the plan and the
//! software version into its safetensors metadata, so `fedssl probe` needs no `--plan` (and
//! refuses a `--plan` that describes another model).

mod common;

use fedssl::simulate::simulate;
use fedssl_core::spec::ObjectiveKind;
use fedssl_server::config::PlanConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkpoint_carries_its_spec_plan_and_version_and_probe_needs_no_plan() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut a = common::tiny_simulation(run.clone(), 1);
    // Not the default model: a probe that assumed ConvNet-S + SimCLR would not load it.
    a.plan.objective = ObjectiveKind::VicReg;
    let plan = a.plan.clone();
    simulate(a).await.unwrap();

    let st = fedssl_server::status::read(&run).unwrap();
    let ckpt = st.latest_model.unwrap().path;
    let meta = fedssl_core::weights::read_metadata(&ckpt).unwrap();
    assert_eq!(meta["fedssl.format"], "fedssl-checkpoint-1");
    assert_eq!(meta["fedssl.round"], "1");
    assert_eq!(meta["fedssl.version"], fedssl_protocol::SOFTWARE_VERSION);
    let spec: fedssl_ml::model::ModelSpec = serde_json::from_str(&meta["fedssl.spec"]).unwrap();
    assert_eq!(spec, plan.model_spec());
    let stored: PlanConfig = toml::from_str(&meta["fedssl.plan"]).unwrap();
    assert_eq!(stored.model_spec(), plan.model_spec());
    assert_eq!(stored.seed, plan.seed);
    // The initial model (version 0) describes itself too.
    let v0 = ckpt.with_file_name("global-000000.safetensors");
    assert_eq!(
        fedssl_core::weights::read_metadata(&v0).unwrap()["fedssl.round"],
        "0"
    );

    let probe = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fedssl"))
            .args(["probe", "--model"])
            .arg(&ckpt)
            .args(["--probe-train", "200", "--probe-test", "100"])
            .args(extra)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let o = probe(&[]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("linear probe"), "{out}");
    assert!(
        out.contains("vicreg"),
        "the model's description is not used: {out}"
    );

    // A plan for another model is refused, naming both.
    let other = dir.path().join("simclr.toml");
    std::fs::write(&other, toml::to_string(&common::tiny_plan()).unwrap()).unwrap();
    let o = probe(&["--plan", other.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("describes another model"), "{err}");
}
