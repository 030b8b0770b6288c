//! `ward plan`: layers, templating and the four output formats.

use serde_json::json;

use crate::harness::{ward, write};

const DIAMOND: &str = "\
ward: 1
name: diamond
vars:
  dest: /backup
  label: it's here
steps:
  - id: stop
    cmd: [echo, stop]
  - id: dump
    needs: [stop]
    run: echo dump > {{ dest }}/db.sql
  - id: copy
    needs: stop
    run: echo {{ label | quote }}
  - id: start
    after: [dump, copy]
    when: always
    cmd: [echo, start]
  - id: snapshot
    needs: [dump, copy]
    if: \"{{ dest != '/backup' }}\"
    cmd: [echo, snap]
  - id: undo-copy
    cmd: [echo, undo]
  - id: note
    cmd: [echo, note]
    compensate: undo-copy
";

fn plan_json(dir: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    ward()
        .current_dir(dir)
        .args(["plan", "--format", "json", "diamond.yml"])
        .args(extra)
        .run()
        .expect_code(0)
        .json()
}

#[test]
fn layers_group_independent_steps_in_playbook_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "diamond.yml", DIAMOND);
    let v = plan_json(dir.path(), &[]);
    assert_eq!(
        v["layers"],
        json!([["stop", "note"], ["dump", "copy"], ["start", "snapshot"]])
    );
    let steps = v["steps"].as_array().expect("steps");
    let by_id = |id: &str| steps.iter().find(|s| s["id"] == id).expect(id).clone();
    assert_eq!(by_id("dump")["run"], "echo dump > /backup/db.sql");
    assert_eq!(by_id("copy")["run"], "echo 'it'\\''s here'");
    assert_eq!(by_id("copy")["needs"], json!(["stop"]));
    assert_eq!(by_id("start")["when"], "always");
    assert_eq!(by_id("start")["after"], json!(["dump", "copy"]));
    assert_eq!(
        by_id("snapshot")["if"],
        json!({"expr": "{{ dest != '/backup' }}", "value": false})
    );
    assert_eq!(by_id("undo-copy")["compensation_only"], true);
    assert_eq!(by_id("undo-copy")["layer"], serde_json::Value::Null);
    assert_eq!(by_id("note")["compensate"], "undo-copy");
}

#[test]
fn var_overrides_change_the_rendered_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "diamond.yml", DIAMOND);
    let v = plan_json(dir.path(), &["--var", "dest=/mnt/other"]);
    let steps = v["steps"].as_array().expect("steps");
    let dump = steps.iter().find(|s| s["id"] == "dump").expect("dump");
    assert_eq!(dump["run"], "echo dump > /mnt/other/db.sql");
    let snap = steps
        .iter()
        .find(|s| s["id"] == "snapshot")
        .expect("snapshot");
    assert_eq!(snap["if"]["value"], true);
    assert_eq!(v["vars"]["dest"], "/mnt/other");
}

#[test]
fn text_plan_shows_layers_and_resolved_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "diamond.yml", DIAMOND);
    let run = ward()
        .current_dir(dir.path())
        .args(["plan", "diamond.yml"])
        .run()
        .expect_code(0);
    let out = &run.stdout;
    assert!(out.starts_with("plan diamond (diamond.yml)\n  6 steps in 3 layers; at most 4 at a time; lock `diamond`\n"), "{out}");
    assert!(out.contains("layer 2 (these may run in parallel)\n  ● dump  [run]\n      does     echo dump > /backup/db.sql\n      needs    stop\n"), "{out}");
    assert!(out.contains("      after    dump, copy (whatever their result)\n      when     always (also after a failure)\n"), "{out}");
    assert!(
        out.contains("      if       {{ dest != '/backup' }} → false: will be skipped\n"),
        "{out}"
    );
    assert!(
        out.contains("compensation (run only if the run fails"),
        "{out}"
    );
}

#[test]
fn dot_and_mermaid_show_every_edge() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "diamond.yml", DIAMOND);
    let dot = ward()
        .current_dir(dir.path())
        .args(["plan", "--format", "dot", "diamond.yml"])
        .run()
        .expect_code(0)
        .stdout;
    assert!(dot.starts_with("digraph \"diamond\" {\n"), "{dot}");
    assert!(dot.contains("  \"stop\" -> \"dump\";\n"), "{dot}");
    assert!(
        dot.contains("  \"dump\" -> \"start\" [style=dashed, label=\"after\"];\n"),
        "{dot}"
    );
    assert!(
        dot.contains(
            "  \"note\" -> \"undo-copy\" [style=dotted, label=\"undo\", constraint=false];\n"
        ),
        "{dot}"
    );
    assert!(dot.trim_end().ends_with('}'));
    let mermaid = ward()
        .current_dir(dir.path())
        .args(["plan", "--format", "mermaid", "diamond.yml"])
        .run()
        .expect_code(0)
        .stdout;
    assert!(mermaid.starts_with("flowchart TD\n"), "{mermaid}");
    assert!(mermaid.contains("  s0 --> s1\n"), "{mermaid}");
    assert!(mermaid.contains("  s1 -.->|after| s3\n"), "{mermaid}");
    assert!(mermaid.contains("  s6 -.->|undo| s5\n"), "{mermaid}");
}

#[test]
fn plans_are_deterministic() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "diamond.yml", DIAMOND);
    for format in ["text", "json", "dot", "mermaid"] {
        let a = ward()
            .current_dir(dir.path())
            .args(["plan", "--format", format, "diamond.yml"])
            .run()
            .expect_code(0)
            .stdout;
        let b = ward()
            .current_dir(dir.path())
            .args(["plan", "--format", format, "diamond.yml"])
            .run()
            .expect_code(0)
            .stdout;
        assert_eq!(a, b, "{format} plan differs between runs");
    }
}

#[test]
fn whole_value_templates_keep_lists_and_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "native.yml",
        "ward: 1\nname: native\nvars:\n  agents: [fo_scheduler, nomos]\n  port: 5433\n  stop: [/etc/init.d/fossology, stop]\nsteps:\n  - id: s\n    action: service.stop\n    with: { stop: \"{{ stop }}\", wait_gone: \"{{ agents }}\" }\n  - id: d\n    action: pg.dumpall\n    with: { dest: /b/d.gz, db: { port: \"{{ port }}\" } }\n",
    );
    let v = ward()
        .current_dir(dir.path())
        .args(["plan", "--format", "json", "native.yml"])
        .run()
        .expect_code(0)
        .json();
    assert_eq!(
        v["steps"][0]["params"]["wait_gone"],
        json!(["fo_scheduler", "nomos"])
    );
    assert_eq!(
        v["steps"][0]["params"]["stop"],
        json!(["/etc/init.d/fossology", "stop"])
    );
    assert_eq!(v["steps"][1]["params"]["db"]["port"], 5433);
}

#[test]
fn ward_facts_follow_the_clock_override() {
    let v = ward()
        .args(["plan", "--format", "json", "examples/quickstart.yml"])
        .env("WARD_NOW", "2027-01-31T23:59:00")
        .run()
        .expect_code(0)
        .json();
    assert_eq!(v["ward"]["date"], "2027-01-31");
    assert_eq!(v["ward"]["weekday"], "Sun");
    let snapshot = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == "snapshot")
        .expect("snapshot")
        .clone();
    assert_eq!(snapshot["params"]["name"], "2027-01-31");
}

#[test]
fn secret_looking_env_values_are_masked_in_plans() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "secret.yml",
        "ward: 1\nname: secret\nsteps:\n  - id: a\n    run: pg_dumpall\n    env: { PGPASSWORD: hunter2, PGHOST: db }\n",
    );
    for format in ["text", "json"] {
        let out = ward()
            .current_dir(dir.path())
            .args(["plan", "--format", format, "secret.yml"])
            .run()
            .expect_code(0)
            .stdout;
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("db"), "{out}");
    }
}

#[test]
fn invalid_playbook_is_not_planned() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "bad.yml",
        "ward: 1\nname: bad\nsteps:\n  - id: a\n    needs: [b]\n    run: x\n",
    );
    let run = ward()
        .current_dir(dir.path())
        .args(["plan", "bad.yml"])
        .run()
        .expect_code(2);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("bad.yml:5:13"), "{}", run.stderr);
}
