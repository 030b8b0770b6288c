//! Every playbook in playbooks/ and examples/ validates, plans in every
//! format, and matches the committed JSON Schema; the schema matches the types.

use std::path::PathBuf;

use crate::harness::{repo_path, ward};

fn shipped() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![repo_path("playbooks"), repo_path("examples")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                out.push(path);
            }
        }
    }
    out.sort();
    assert!(
        out.len() >= 5,
        "expected the FOSSology playbooks and the quickstart, found {out:?}"
    );
    out
}

#[test]
fn shipped_playbooks_validate_and_plan() {
    for path in shipped() {
        ward().arg("validate").arg(&path).run().expect_code(0);
        for format in ["text", "json", "dot", "mermaid"] {
            let run = ward()
                .args(["plan", "--format", format])
                .arg(&path)
                .run()
                .expect_code(0);
            assert!(
                !run.stdout.is_empty(),
                "{}: empty {format} plan",
                path.display()
            );
            assert!(run.stderr.is_empty(), "{}: {}", path.display(), run.stderr);
        }
    }
}

#[test]
fn committed_schema_matches_the_types() {
    let generated = ward().arg("schema").run().expect_code(0).json();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("schemas/playbook.schema.json")).expect("schema file"),
    )
    .expect("schema is JSON");
    assert!(
        generated == committed,
        "schemas/playbook.schema.json is out of date; regenerate it with\n  cargo run -- schema > schemas/playbook.schema.json"
    );
}

#[test]
fn shipped_playbooks_match_the_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("schemas/playbook.schema.json")).expect("schema file"),
    )
    .expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    for path in shipped() {
        let instance = ward::yaml_file_as_json(&path).expect("playbook reads as JSON");
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "{}:\n{}",
            path.display(),
            errors.join("\n")
        );
    }
}

#[test]
fn schema_rejects_what_ward_rejects() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("schemas/playbook.schema.json")).expect("schema file"),
    )
    .expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    for fixture in [
        "unknown-step-key",
        "unknown-action-param",
        "step-with-two-bodies",
        "bad-when",
        "missing-action-param",
    ] {
        let path = repo_path(&format!("tests/fixtures/invalid/{fixture}.yml"));
        let instance = ward::yaml_file_as_json(&path).expect("fixture reads as JSON");
        assert!(
            !validator.is_valid(&instance),
            "{fixture} passes the schema"
        );
    }
}
