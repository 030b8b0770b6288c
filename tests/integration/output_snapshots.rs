//! Snapshots of what operators read: `ward plan` of shipped and example
//! playbooks (text, JSON, dot, mermaid), `ward status`/`ward runs` of a
//! finished run (text and JSON), and the JSON of every other read command
//! (`validate`, `log`, `verify`, `check`, `next`, `actions`): the shapes
//! docs/cli.md, "JSON output", documents. The snapshots are in `snapshots/` beside
//! this file; a change in the output fails the test (under `CI` insta writes
//! nothing and fails). After an intended change, review it with
//! `cargo insta review`, or rerun with `INSTA_UPDATE=always` and read the diff.
//!
//! What differs from one machine or run to the next is replaced before the
//! comparison: the repository and scratch folders, the host name, run ids,
//! pids, times, durations and ward's version, keeping the columns of text
//! tables aligned.

use std::path::Path;

use insta::assert_snapshot;

use crate::harness::{Scratch, repo_root, ward};

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("host name")
        .trim()
        .to_owned()
}

/// `ward plan --format <format> <playbook>` from the repository root.
fn plan(playbook: &str, format: &str) -> String {
    plan_in(&repo_root(), playbook, format)
}

/// `ward plan --format <format> <playbook>` from `root`, a copy of (part
/// of) the repository, shown as `[repo]`.
fn plan_in(root: &Path, playbook: &str, format: &str) -> String {
    let run = ward()
        .current_dir(root)
        .args(["plan", "--format", format, playbook])
        .run()
        .expect_code(0);
    let mut text = run.stdout.clone();
    let root = root.to_path_buf();
    let canonical = std::fs::canonicalize(&root).expect("canonical repository");
    for dir in [canonical, root] {
        text = text.replace(&dir.display().to_string(), "[repo]");
    }
    if format == "json" {
        serde_json::from_str::<serde_json::Value>(&run.stdout).expect("plan is JSON");
        let host = format!("\"host\": {}", serde_json::json!(host_name()));
        text = text.replace(&host, "\"host\": \"[host]\"");
    }
    text
}

#[test]
fn plan_of_restore_full() {
    let playbook = "playbooks/fossology/restore-full.yml";
    assert_snapshot!("plan_restore_full_text", plan(playbook, "text"));
    assert_snapshot!("plan_restore_full_json", plan(playbook, "json"));
}

#[test]
fn plan_of_restore_gold() {
    let playbook = "playbooks/fossology/restore-gold.yml";
    assert_snapshot!("plan_restore_gold_text", plan(playbook, "text"));
    assert_snapshot!("plan_restore_gold_json", plan(playbook, "json"));
}

#[test]
fn plan_of_repair_repository() {
    let playbook = "playbooks/fossology/repair-repository.yml";
    assert_snapshot!("plan_repair_repository_text", plan(playbook, "text"));
    assert_snapshot!("plan_repair_repository_json", plan(playbook, "json"));
}

#[test]
fn plan_of_quickstart_in_every_format() {
    // Planned from a copy: the quickstart's folder is the checkout's
    // target/quickstart, and its rotate step's plan counts the snapshots
    // there, which the README's first command makes.
    let copy = Scratch::new();
    std::fs::create_dir(copy.path().join("examples")).expect("examples/");
    std::fs::copy(
        repo_root().join("examples/quickstart.yml"),
        copy.path().join("examples/quickstart.yml"),
    )
    .expect("copy the quickstart");
    let plan = |format| plan_in(copy.path(), "examples/quickstart.yml", format);
    assert_snapshot!("plan_quickstart_text", plan("text"));
    assert_snapshot!("plan_quickstart_json", plan("json"));
    assert_snapshot!("plan_quickstart_dot", plan("dot"));
    assert_snapshot!("plan_quickstart_mermaid", plan("mermaid"));
}

/// Every step state a finished run can show: succeeded (with and without
/// output), succeeded on a retry, skipped by `if` and by a failed `needs`,
/// failed, and a finalizer.
const STATUS_DEMO: &str = "\
ward: 1
name: status-demo
vars:
  skip_optional: true
steps:
  - id: prepare
    name: Prepare the work folder
    run: mkdir -p work; echo prepared
  - id: flaky
    needs: [prepare]
    retry: { attempts: 3, delay: 0s }
    run: n=$(cat work/tries 2>/dev/null || echo 0); echo $((n + 1)) > work/tries; test \"$n\" -ge 1
  - id: optional
    needs: [prepare]
    if: \"{{ not skip_optional }}\"
    run: echo never
  - id: broken
    needs: [flaky]
    run: echo about to fail >&2; exit 3
  - id: downstream
    needs: [broken]
    run: echo never
  - id: cleanup
    after: [broken, downstream]
    when: always
    run: rm -rf work
";

/// Placeholders as wide as what they replace, so that columns stay put.
const RUN_ID: &str = "YYYYMMDD-hhmmss-xxxx";
const LOCAL_TIME: &str = "YYYY-MM-DD hh:mm:ss";
/// Durations vary in width; in a right-aligned column the placeholder keeps
/// the column's right edge.
const DURATION: &str = "[dur]";

/// What the scratch folder, run and host are replaced by.
struct Known {
    scratch: Vec<String>,
    run_id: String,
    host: String,
}

impl Known {
    fn replace(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for dir in &self.scratch {
            out = out.replace(dir.as_str(), "[scratch]");
        }
        out.replace(&self.run_id, RUN_ID)
    }
}

fn scratch_names(dir: &Path) -> Vec<String> {
    let mut names = vec![dir.display().to_string()];
    let canonical = std::fs::canonicalize(dir)
        .expect("canonical scratch")
        .display()
        .to_string();
    if canonical != names[0] {
        // The longer first, so that neither replaces part of the other.
        names.push(canonical);
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }
    names
}

/// `850ms`, `4.2s`, `3m12s`, `1h02m` (report::fmt_duration).
fn is_duration(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_digit())
        && word
            .chars()
            .all(|c| c.is_ascii_digit() || ".hms".contains(c))
        && word.ends_with(['s', 'm'])
}

/// `2026-12-02 01:14:49` at the start of `text`.
fn is_local_time(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 19
        && b[..19].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// Human output: run id, local times, durations, pid and host replaced,
/// columns kept aligned.
fn normalize_text(text: &str, known: &Known) -> String {
    let text = known.replace(text);
    let mut out = String::new();
    for line in text.lines() {
        let mut plain = String::new();
        let mut rest = line;
        while !rest.is_empty() {
            if is_local_time(rest) {
                plain.push_str(LOCAL_TIME);
                rest = &rest[LOCAL_TIME.len()..];
            } else {
                let c = rest.chars().next().expect("not empty");
                plain.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        // Runs of spaces and of other characters, in turn.
        let mut runs = Vec::new();
        let mut rest = plain.as_str();
        while !rest.is_empty() {
            let space = rest.starts_with(char::is_whitespace);
            let len = rest
                .find(|c: char| c.is_whitespace() != space)
                .unwrap_or(rest.len());
            let (run, tail) = rest.split_at(len);
            runs.push(run);
            rest = tail;
        }
        let mut line_out = String::new();
        for (i, run) in runs.iter().enumerate() {
            let (core, comma) = match run.strip_suffix(',') {
                Some(core) => (core, ","),
                None => (*run, ""),
            };
            if !is_duration(core) {
                line_out.push_str(run);
                continue;
            }
            let gap = line_out.len() - line_out.trim_end().len();
            if gap > 1 && i + 1 < runs.len() {
                // In a right-aligned column: keep the column's right edge.
                let placeholder = format!("{DURATION}{comma}");
                let width = (gap + run.len()).max(placeholder.len() + 2);
                line_out.truncate(line_out.len() - gap);
                line_out.push_str(&format!("{placeholder:>width$}"));
            } else {
                line_out.push_str(DURATION);
                line_out.push_str(comma);
            }
        }
        let line_out = line_out.replace(&format!(" on {} (pid ", known.host), " on [host] (pid ");
        out.push_str(&replace_pid(&line_out));
        out.push('\n');
    }
    out
}

/// `(pid 11957)` -> `(pid [pid])`.
fn replace_pid(line: &str) -> String {
    match line.find("(pid ") {
        Some(at) => {
            let digits_from = at + "(pid ".len();
            let digits = line[digits_from..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(line.len() - digits_from);
            format!(
                "{}[pid]{}",
                &line[..digits_from],
                &line[digits_from + digits..]
            )
        }
        None => line.to_owned(),
    }
}

/// JSON output: keys whose values differ from run to run get a placeholder
/// (nulls stay null: they mean something).
fn normalize_json(text: &str, known: &Known) -> String {
    let v = serde_json::from_str::<serde_json::Value>(text).expect("output is JSON");
    // Times are RFC 3339 (they are replaced below, so checked here).
    for key in ["started_at", "finished_at"] {
        if let Some(t) = v.get(key).and_then(serde_json::Value::as_str) {
            chrono::DateTime::parse_from_rfc3339(t).expect("an RFC 3339 time");
        }
    }
    let text = known.replace(text);
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let mut replaced = None;
        for (key, placeholder) in [
            ("started_at", "[time]"),
            ("finished_at", "[time]"),
            ("last_success", "[time]"),
            ("duration_ms", DURATION),
            ("age_ms", DURATION),
            ("pid", "[pid]"),
            ("host", "[host]"),
            ("ward_version", "[version]"),
        ] {
            let prefix = format!("\"{key}\": ");
            if let Some(value) = trimmed.strip_prefix(&prefix) {
                let comma = if value.ends_with(',') { "," } else { "" };
                if value.trim_end_matches(',') != "null" {
                    replaced = Some(format!("{indent}{prefix}\"{placeholder}\"{comma}"));
                }
            }
        }
        out.push_str(replaced.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[test]
fn status_and_runs_of_a_finished_run() {
    let s = Scratch::new();
    s.write("p.yml", STATUS_DEMO);
    s.ward().args(["run", "p.yml"]).run().expect_code(1);
    let status = s.status(None);
    let known = Known {
        scratch: scratch_names(s.path()),
        run_id: status["id"].as_str().expect("run id").to_owned(),
        host: host_name(),
    };
    let text = s.ward().args(["status"]).run().expect_code(0).stdout;
    assert_snapshot!("status_text", normalize_text(&text, &known));
    let json = s
        .ward()
        .args(["status", "--json"])
        .run()
        .expect_code(0)
        .stdout;
    assert_snapshot!("status_json", normalize_json(&json, &known));
    let runs = s.ward().args(["runs"]).run().expect_code(0).stdout;
    assert_snapshot!("runs_text", normalize_text(&runs, &known));
    let runs_json = s
        .ward()
        .args(["runs", "--json"])
        .run()
        .expect_code(0)
        .stdout;
    assert_snapshot!("runs_json", normalize_json(&runs_json, &known));
}

#[test]
fn the_normalizer_keeps_what_matters() {
    let known = Known {
        scratch: vec!["/tmp/x".to_owned()],
        run_id: "20261202-011449-80e9".to_owned(),
        host: "vm".to_owned(),
    };
    let text = [
        "run 20261202-011449-80e9  demo  failed",
        "  started   2026-12-02 01:14:49 on vm (pid 11957), took 3.0s, resumed 1×",
        "  a    succeeded   2    1m02s  0  /tmp/x/state/logs/20261202-011449-80e9/a.1.log",
        "  b    failed      1     12ms  3  exit code 3, after 2 tries",
        "  c    skipped     0        -  -  -",
        "",
    ]
    .join("\n");
    let expected = [
        "run YYYYMMDD-hhmmss-xxxx  demo  failed",
        "  started   YYYY-MM-DD hh:mm:ss on [host] (pid [pid]), took [dur], resumed 1×",
        "  a    succeeded   2    [dur]  0  [scratch]/state/logs/YYYYMMDD-hhmmss-xxxx/a.1.log",
        "  b    failed      1    [dur]  3  exit code 3, after 2 tries",
        "  c    skipped     0        -  -  -",
        "",
    ]
    .join("\n");
    assert_eq!(normalize_text(&text, &known), expected);
}

/// The JSON of the read commands that have no text snapshot: `log` of the
/// status demo, `validate` of a playbook with an error and a warning,
/// `verify` of a snapshot with a changed file, `check` of a fresh and a
/// never-successful playbook, `next` in a fixed zone, and `actions`.
#[test]
fn json_of_the_other_read_commands() {
    let s = Scratch::new();
    s.write("p.yml", STATUS_DEMO);
    s.ward().args(["run", "p.yml"]).run().expect_code(1);
    let status = s.status(None);
    let known = Known {
        scratch: scratch_names(s.path()),
        run_id: status["id"].as_str().expect("run id").to_owned(),
        host: host_name(),
    };
    let json = |args: &[&str], code: i32| {
        let out = s.ward().args(args).run().expect_code(code).stdout;
        normalize_json(&out, &known)
    };
    assert_snapshot!("log_json", json(&["log", "last", "--json"], 0));

    s.write(
        "invalid.yml",
        "ward: 1\nname: invalid\nsteps:\n  - id: a\n    run: echo a\n    need: [b]\n",
    );
    assert_snapshot!(
        "validate_json",
        json(&["validate", "--json", "invalid.yml"], 2)
    );

    std::fs::create_dir_all(s.path().join("data/sub")).expect("data");
    s.write("data/a.txt", "alpha\n");
    s.write("data/sub/b.txt", "beta\n");
    s.write(
        "snap.yml",
        "ward: 1\nname: snap\nsteps:\n  - id: snapshot\n    action: snapshot.hardlink\n    \
         with: { src: data, dir: backup, hash: all }\n",
    );
    s.ward().args(["run", "snap.yml"]).run().expect_code(0);
    assert_snapshot!(
        "verify_ok_json",
        json(&["verify", "--json", "backup/latest"], 0)
    );
    // A file of the set changes after the manifest was written.
    s.write("backup/latest/a.txt", "ALPHA, changed\n");
    assert_snapshot!(
        "verify_failed_json",
        json(&["verify", "--json", "backup/latest"], 1)
    );

    // `snap` succeeded just now; `status-demo` never did.
    s.write(
        "fresh.yml",
        "ward: 1\nname: snap\nmax_age: 1d\nsteps:\n  - id: a\n    run: \"true\"\n",
    );
    s.write(
        "never.yml",
        "ward: 1\nname: status-demo\nmax_age: 1d\nsteps:\n  - id: a\n    run: \"true\"\n",
    );
    let now = chrono::Local::now() + chrono::TimeDelta::minutes(1);
    let snap_run = s
        .ward()
        .args(["runs", "--json", "--playbook", "snap"])
        .run()
        .json()[0]["id"]
        .as_str()
        .expect("snap run")
        .to_owned();
    let out = s
        .ward()
        .args(["check", "--json", "fresh.yml", "never.yml"])
        .env("WARD_NOW", &now.format("%Y-%m-%dT%H:%M:%S").to_string())
        .run()
        .expect_code(7)
        .stdout
        .replace(&snap_run, RUN_ID);
    assert_snapshot!("check_json", normalize_json(&out, &known));

    s.write(
        "sched.yml",
        "ward: 1\nname: nightly\nschedule: \"30 2 * * *\"\ntimezone: Europe/Berlin\njitter: 10m\n\
         steps:\n  - id: a\n    run: \"true\"\n",
    );
    let out = s
        .ward()
        .args(["next", "--json", "-n", "3", "sched.yml"])
        .env("WARD_NOW", "2026-03-28T12:00:00")
        .env("TZ", "Europe/Berlin")
        .run()
        .expect_code(0)
        .stdout;
    assert_snapshot!("next_json", normalize_json(&out, &known));

    assert_snapshot!("actions_json", json(&["actions", "--json"], 0));
}

/// `ward verify --status --json` of a snapshots folder: one snapshot read
/// back in full, one by a slice of three (times checked to be RFC 3339,
/// then replaced), one never verified.
#[test]
fn verify_status_of_a_snapshots_folder() {
    let s = Scratch::new();
    s.write("data/a.txt", "alpha\n");
    s.write("data/sub/b.txt", "beta\n");
    let playbook = |read: &str| {
        format!(
            "ward: 1\nname: snap\nsteps:\n  - id: snapshot\n    action: snapshot.hardlink\n    \
             with: {{ src: data, dir: backup, hash: all }}\n  - id: verify\n    needs: [snapshot]\n    \
             action: verify\n    with: {{ path: backup/latest, read: \"{read}\" }}\n"
        )
    };
    let mut run_ids = Vec::new();
    for (day, read) in [(21, "all"), (22, "1/3")] {
        s.write("snap.yml", &playbook(read));
        s.ward()
            .args(["run", "snap.yml"])
            .env("WARD_NOW", &format!("2026-11-{day}T02:00:00"))
            .run()
            .expect_code(0);
        run_ids.push(s.status(None)["id"].as_str().expect("run id").to_owned());
    }
    s.write(
        "only.yml",
        "ward: 1\nname: only\nsteps:\n  - id: snapshot\n    action: snapshot.hardlink\n    \
         with: { src: data, dir: backup }\n",
    );
    s.ward().args(["run", "only.yml"]).run().expect_code(0);
    let out = s
        .ward()
        .args(["verify", "--status", "--json", "backup"])
        .run()
        .expect_code(0)
        .stdout;
    fn times(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for (key, value) in map.iter_mut() {
                    if key == "at" {
                        let t = value.as_str().expect("a time");
                        chrono::DateTime::parse_from_rfc3339(t).expect("an RFC 3339 time");
                        *value = serde_json::json!("[time]");
                    } else {
                        times(value);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(times),
            _ => {}
        }
    }
    let mut v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    times(&mut v);
    let mut text = serde_json::to_string_pretty(&v).expect("JSON");
    for (i, id) in run_ids.iter().enumerate() {
        text = text.replace(id, &format!("[run {}]", i + 1));
    }
    for name in scratch_names(s.path()) {
        text = text.replace(&name, "[scratch]");
    }
    assert_snapshot!("verify_status_json", text);
}
