//! `ward validate` output, human and JSON.

use crate::harness::{repo_path, ward, write};

#[test]
fn human_output_names_file_line_column_with_caret_and_help() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "typo.yml",
        "ward: 1\nname: typo\nsteps:\n  - id: a\n    run: echo a\n  - id: b\n    need: [a]\n    run: echo b\n",
    );
    let run = ward()
        .current_dir(dir.path())
        .args(["validate", "typo.yml"])
        .run()
        .expect_code(2);
    let expected = "\
error[unknown-key]: unknown key `need` in step `b`
 --> typo.yml:7:5
  |
7 |     need: [a]
  |     ^^^^
   = help: did you mean `needs`?

invalid: typo.yml: 1 error found
";
    assert_eq!(run.stderr, expected);
    assert_eq!(run.stdout, "");
    drop(path);
}

#[test]
fn caret_follows_tabs_in_the_source_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "tabs.yml",
        "ward: 1\nname: tabs\nsteps:\n  - id: a\n    run: \"echo\t{{ nope }}\"\n",
    );
    let run = ward()
        .current_dir(dir.path())
        .args(["validate", "tabs.yml"])
        .run()
        .expect_code(2);
    assert!(
        run.stderr.contains(" --> tabs.yml:5:19\n"),
        "{}",
        run.stderr
    );
    let caret_line = format!("  | {}\t{}^^^^\n", " ".repeat(14), " ".repeat(3));
    assert!(run.stderr.contains(&caret_line), "{:?}", run.stderr);
}

#[test]
fn valid_file_prints_ok_and_exits_0() {
    let run = ward()
        .args(["validate", "examples/quickstart.yml"])
        .run()
        .expect_code(0);
    assert_eq!(
        run.stdout,
        "ok: examples/quickstart.yml: playbook `quickstart`, 7 steps\n"
    );
    let run = ward()
        .args(["validate", "-q", "examples/quickstart.yml"])
        .run()
        .expect_code(0);
    assert_eq!(run.stdout, "");
}

#[test]
fn json_output_is_machine_readable() {
    let bad = repo_path("tests/fixtures/invalid/needs-unknown-step.yml");
    let run = ward()
        .args(["validate", "--format", "json", "examples/quickstart.yml"])
        .arg(&bad)
        .run()
        .expect_code(2);
    let v = run.json();
    assert_eq!(v["valid"], false);
    assert_eq!(v["files"][0]["valid"], true);
    assert_eq!(v["files"][0]["errors"], 0);
    let d = &v["files"][1]["diagnostics"][0];
    assert_eq!(d["code"], "unknown-step");
    assert_eq!(d["line"], 7);
    assert_eq!(d["column"], 13);
    assert_eq!(d["severity"], "error");
    assert_eq!(
        d["source_line"],
        "    needs: [stop-schedular]   # expect: unknown-step did you mean `stop-scheduler`"
    );
    assert_eq!(d["help"], "did you mean `stop-scheduler`?");
}

#[test]
fn undeclared_var_override_is_a_warning_not_an_error() {
    let run = ward()
        .args([
            "validate",
            "examples/quickstart.yml",
            "--var",
            "wrok=/tmp/x",
        ])
        .run()
        .expect_code(0);
    assert!(
        run.stderr
            .contains("warning[undeclared-var]: --var wrok is not declared"),
        "{}",
        run.stderr
    );
}

#[test]
fn yaml_1_1_booleans_stay_strings_where_strings_are_expected() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "norway.yml",
        "ward: 1\nname: norway\nvars:\n  country: NO\n  flag: yes\nsteps:\n  - id: a\n    cmd: [echo, \"{{ country }}\", \"{{ flag }}\", NO]\n",
    );
    let run = ward()
        .current_dir(dir.path())
        .args(["plan", "--format", "json", "norway.yml"])
        .run()
        .expect_code(0);
    let v = run.json();
    assert_eq!(v["vars"]["country"], "NO");
    assert_eq!(v["vars"]["flag"], "yes");
    assert_eq!(
        v["steps"][0]["cmd"],
        serde_json::json!(["echo", "NO", "yes", "NO"])
    );
}

#[test]
fn a_step_id_too_long_to_name_its_log_file_is_refused_where_it_stands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let long = "y".repeat(300);
    write(
        dir.path(),
        "long.yml",
        &format!("ward: 1\nname: long\nsteps:\n  - id: {long}\n    run: echo hi\n"),
    );
    let run = ward()
        .current_dir(dir.path())
        .args(["validate", "long.yml"])
        .run()
        .expect_code(2);
    assert!(run.stderr.contains(" --> long.yml:4:9\n"), "{}", run.stderr);
    assert!(run.stderr.contains("at most 128"), "{}", run.stderr);
}
