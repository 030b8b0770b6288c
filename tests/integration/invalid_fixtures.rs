//! Every file in tests/fixtures/invalid is a broken playbook. Each line that
//! should get an error carries a marker comment:
//!
//! ```yaml
//!     need: [a]   # expect: unknown-key did you mean `needs`
//! ```
//!
//! meaning: an error with that code on that line whose message or help
//! contains the text. The test runs `ward validate --format json` and wants
//! exit 2, every marker matched, and no other error (no follow-on noise).

use std::path::Path;

use crate::harness::{repo_path, ward};

struct Expected {
    line: u64,
    code: String,
    text: String,
}

fn expectations(text: &str) -> Vec<Expected> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let (_, marker) = line.split_once("# expect: ")?;
            let (code, rest) = marker.split_once(' ').unwrap_or((marker, ""));
            Some(Expected {
                line: i as u64 + 1,
                code: code.trim().to_owned(),
                text: rest.trim().to_owned(),
            })
        })
        .collect()
}

fn check_fixture(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let expected = expectations(&text);
    if expected.is_empty() {
        return Err("fixture has no `# expect:` marker".into());
    }
    let run = ward()
        .arg("validate")
        .arg("--format")
        .arg("json")
        .arg(path)
        .run();
    if run.code != 2 {
        return Err(format!(
            "exit code {} instead of 2\n{}{}",
            run.code, run.stdout, run.stderr
        ));
    }
    let report = run.json();
    let diags: Vec<&serde_json::Value> = report["files"][0]["diagnostics"]
        .as_array()
        .ok_or("no diagnostics array")?
        .iter()
        .filter(|d| d["severity"] == "error")
        .collect();
    for e in &expected {
        let found = diags.iter().any(|d| {
            let words = format!(
                "{} {}",
                d["message"].as_str().unwrap_or(""),
                d["help"].as_str().unwrap_or("")
            );
            d["line"].as_u64() == Some(e.line)
                && d["code"] == e.code.as_str()
                && words.contains(&e.text)
        });
        if !found {
            return Err(format!(
                "no `{}` error on line {} containing {:?}; got:\n{}",
                e.code,
                e.line,
                e.text,
                serde_json::to_string_pretty(&diags).unwrap_or_default()
            ));
        }
    }
    if diags.len() != expected.len() {
        return Err(format!(
            "{} errors reported, {} expected:\n{}",
            diags.len(),
            expected.len(),
            serde_json::to_string_pretty(&diags).unwrap_or_default()
        ));
    }
    Ok(())
}

#[test]
fn every_invalid_fixture_fails_with_the_right_lines_and_messages() {
    let dir = repo_path("tests/fixtures/invalid");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 30, "only {} invalid fixtures", paths.len());
    let failures: Vec<String> = paths
        .iter()
        .filter_map(|p| {
            check_fixture(p)
                .err()
                .map(|e| format!("{}: {e}", p.display()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} fixture(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
