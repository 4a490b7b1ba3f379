//! The plan files in `examples/plans/` parse, validate, and describe a model that builds.

use fedssl_common::config::PlanConfig;

#[test]
fn every_example_plan_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plans");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let plan: PlanConfig =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        plan.validate()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        plan.model_spec()
            .initial_global(1)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        seen += 1;
    }
    assert!(seen >= 3, "expected the example plans in {}", dir.display());
}
