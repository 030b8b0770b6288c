//! `for_each:` items read when the step starts from a JSON file, a CSV
//! file or a program's output: items observed through a journal the items
//! write, bad inputs failing the step before any item runs, bad shapes
//! refused by validate with their place, and a resume that uses the items
//! recorded at the first start (the command is not run again).

use std::collections::BTreeMap;

use crate::harness::Scratch;

fn journal(s: &Scratch) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(s.path().join("journal"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// `ward items last --json`: (key, state) pairs.
fn items(s: &Scratch) -> Vec<(String, String)> {
    crate::fanout::items(s, None)
}

fn keys(s: &Scratch) -> Vec<String> {
    let mut k: Vec<String> = items(s).into_iter().map(|(k, _)| k).collect();
    k.sort();
    k
}

#[test]
fn a_json_file_gives_items_with_fields_keys_and_a_pointer() {
    let s = Scratch::new();
    s.write(
        "users.json",
        r#"[{"name": "alice", "n": 1}, {"name": "bob", "n": 2}]"#,
    );
    s.write("nested.json", r#"{"data": {"users": ["carol", 7]}}"#);
    s.write(
        "p.yml",
        "ward: 1\nname: js\nsteps:\n  \
         - id: objs\n    for_each: { json: users.json }\n    key: \"{{ item.name }}\"\n    \
           run: echo {{ item.name }}:{{ item.n }} >> journal\n  \
         - id: at\n    for_each: { json: nested.json, at: /data/users }\n    \
           run: echo at-{{ item }} >> journal\n",
    );
    let plan = s.ward().args(["plan", "p.yml"]).run().expect_code(0);
    assert!(
        plan.stdout
            .contains("the JSON array in users.json, items listed when the step starts"),
        "{}",
        plan.stdout
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert_eq!(journal(&s), ["alice:1", "at-7", "at-carol", "bob:2"]);
    assert_eq!(keys(&s), ["7", "alice", "bob", "carol"]);
}

#[test]
fn a_csv_file_gives_rows_keyed_by_the_header_with_quoted_fields() {
    let s = Scratch::new();
    s.write(
        "users.csv",
        "user,home\r\nalice,/h/a\r\n\"bob, jr\",\"/h/\"\"b\"\"\"\n\"multi\nline\",/h/m\n",
    );
    s.write("plain.csv", "x;1\ny;2\n");
    s.write(
        "p.yml",
        "ward: 1\nname: cs\nsteps:\n  \
         - id: rows\n    for_each: { csv: users.csv }\n    key: \"{{ item.user | replace('\\n', ' ') }}\"\n    \
           env: { HOME_DIR: \"{{ item.home }}\", WHO: \"{{ item.user }}\" }\n    \
           run: printf '%s %s\\n' \"$(echo \"$WHO\" | tr '\\n' ' ')\" \"$HOME_DIR\" >> journal\n  \
         - id: lists\n    needs: [rows]\n    for_each: { csv: plain.csv, delimiter: \";\", header: false }\n    \
           key: \"{{ item[0] }}\"\n    run: echo {{ item[0] }}={{ item[1] }} >> journal\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert_eq!(
        journal(&s),
        [
            "alice  /h/a",
            "bob, jr  /h/\"b\"",
            "multi line  /h/m",
            "x=1",
            "y=2"
        ]
    );
    assert_eq!(keys(&s), ["alice", "bob, jr", "multi line", "x", "y"]);
}

#[test]
fn a_command_gives_lines_or_json_with_the_step_env_in_the_playbook_folder() {
    let s = Scratch::new();
    s.write("marker", "");
    s.write(
        "p.yml",
        "ward: 1\nname: cmd\nvars:\n  prefix: u\nsteps:\n  \
         - id: lines\n    for_each: { command: [sh, -c, \"test -f marker && echo $P-1 && echo && echo $P-2\"] }\n    \
           env: { P: \"{{ prefix }}\", WHO: \"{{ item }}\" }\n    run: echo \"$WHO\" >> journal\n  \
         - id: json\n    for_each: { command: [printf, '[{\"id\": \"j1\"}, {\"id\": \"j2\"}]'], format: json }\n    \
           key: \"{{ item.id }}\"\n    run: echo {{ item.id }} >> journal\n",
    );
    let plan = s.ward().args(["plan", "p.yml"]).run().expect_code(0);
    assert!(
        plan.stdout.contains("items listed when the step starts"),
        "{}",
        plan.stdout
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert_eq!(journal(&s), ["j1", "j2", "u-1", "u-2"]);
}

/// Runs a one-step playbook over `for_each` and expects the step to fail
/// before any item ran, with every piece of `words` in its message.
fn fails_before_items(s: &Scratch, for_each: &str, env: &[(&str, &str)], words: &[&str]) {
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: bad\nsteps:\n  \
             - id: each\n    for_each: {for_each}\n    run: echo {{{{ item }}}} >> journal\n"
        ),
    );
    let _ = std::fs::remove_file(s.path().join("journal"));
    let mut ward = s.ward().args(["run", "p.yml"]);
    for (k, v) in env {
        ward = ward.env(k, v);
    }
    let run = ward.run().expect_code(1);
    for w in words {
        assert!(
            run.stderr.contains(w),
            "{for_each}: no `{w}` in:\n{}",
            run.stderr
        );
    }
    assert!(
        !s.path().join("journal").exists(),
        "{for_each}: no item ran"
    );
}

#[test]
fn bad_lists_fail_the_step_before_any_item_with_their_place() {
    let s = Scratch::new();
    s.write("bad.json", "[\n  \"a\",\n  b\n]\n");
    s.write("obj.json", "{\"users\": 3}");
    s.write("ragged.csv", "a,b\n1,2\n\"x\ny\",3\n4\n");
    s.write("open.csv", "a\n\"never closed\n");
    fails_before_items(
        &s,
        "{ json: bad.json }",
        &[],
        &["bad.json:3:3 is not JSON: expected value", "fix it there"],
    );
    fails_before_items(
        &s,
        "{ json: obj.json }",
        &[],
        &["obj.json holds an object, not a JSON array"],
    );
    fails_before_items(
        &s,
        "{ json: obj.json, at: /users }",
        &[],
        &["holds a number at `/users`, not a JSON array"],
    );
    fails_before_items(
        &s,
        "{ json: obj.json, at: /nobody }",
        &[],
        &["has nothing at `at: /nobody`"],
    );
    fails_before_items(
        &s,
        "{ csv: ragged.csv }",
        &[],
        &["ragged.csv:5: this row has 1 fields, but the header has 2"],
    );
    fails_before_items(
        &s,
        "{ csv: open.csv }",
        &[],
        &["open.csv:2: a quoted field is not closed"],
    );
    fails_before_items(
        &s,
        "{ command: [sh, -c, \"echo partial; echo no such table >&2; exit 3\"] }",
        &[],
        &["exited with code 3; it said: no such table; no item ran"],
    );
    // The limit is 64 MiB; WARD_TEST_FOR_EACH_LIMIT lowers it, for tests.
    fails_before_items(
        &s,
        "{ command: [yes] }",
        &[("WARD_TEST_FOR_EACH_LIMIT", "10000")],
        &["printed more than 10000 bytes"],
    );
    s.write("big.json", &format!("[{}\"x\"]", "\"y\",".repeat(3000)));
    fails_before_items(
        &s,
        "{ json: big.json }",
        &[("WARD_TEST_FOR_EACH_LIMIT", "10000")],
        &["is larger than"],
    );
    fails_before_items(
        &s,
        "{ command: [no-such-program-ward-test] }",
        &[],
        &["could not start"],
    );
    fails_before_items(
        &s,
        "{ command: [sleep, \"5\"] }\n    timeout: 1s",
        &[],
        &["did not end within 1s"],
    );
}

#[test]
fn a_json_or_csv_file_that_is_a_fifo_fails_without_hanging() {
    let s = Scratch::new();
    let fifo = s.path().join("users.json");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    // Were ward to block opening the FIFO, this writer unblocks it after a
    // while, so the test fails on its assertions instead of hanging.
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(20));
        use std::os::unix::fs::OpenOptionsExt;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
        {
            let _ = std::io::Write::write_all(&mut f, b"[]");
        }
    });
    std::os::unix::fs::symlink("users.json", s.path().join("users.csv")).expect("symlink");
    fails_before_items(
        &s,
        "{ json: users.json }",
        &[],
        &["is a FIFO, not a regular file"],
    );
    fails_before_items(
        &s,
        "{ csv: users.csv }",
        &[],
        &["is a FIFO, not a regular file"],
    );
}

#[test]
fn bad_shapes_are_refused_by_validate_with_their_place() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: shapes\nvars:\n  db_password: \"\"\nsteps:\n  \
         - id: a\n    for_each: { json: a.json, bogus: 1 }\n    run: echo {{ item }}\n  \
         - id: b\n    for_each: { command: [] }\n    run: echo {{ item }}\n  \
         - id: c\n    for_each: { lines: a.txt, csv: a.csv }\n    run: echo {{ item }}\n  \
         - id: d\n    for_each: { command: [ls], format: xml }\n    run: echo {{ item }}\n  \
         - id: e\n    for_each: { csv: a.csv, delimiter: \";;\" }\n    run: echo {{ item }}\n  \
         - id: f\n    for_each: { query: \"select 1\" }\n    run: echo {{ item }}\n  \
         - id: g\n    for_each: { command: [psql, \"-c\", \"{{ db_password }}\"] }\n    run: echo {{ item }}\n  \
         - id: h\n    for_each: { json: a.json, at: users }\n    run: echo {{ item }}\n  \
         - id: i\n    for_each: { csv: a.csv, at: /x }\n    run: echo {{ item }}\n",
    );
    let out = s
        .ward()
        .args(["validate", "p.yml", "--var", "db_password=hunter2secret"])
        .run()
        .expect_code(2);
    let text = format!("{}{}", out.stdout, out.stderr);
    let expected: BTreeMap<&str, &str> = [
        ("p.yml:7:31", "bogus"),
        (
            "p.yml:10:26",
            "`for_each.command` in step `b` must be a list of words",
        ),
        ("p.yml:13:31", "has more than one source"),
        (
            "p.yml:16:40",
            "`for_each.format` in step `d` must be `lines` or `json`",
        ),
        (
            "p.yml:19:40",
            "`for_each.delimiter` in step `e` must be one character",
        ),
        (
            "p.yml:22:17",
            "`for_each.query` in step `f` is not a source",
        ),
        ("p.yml:25:", "`for_each` of step `g` uses"),
        (
            "p.yml:28:35",
            "`for_each.at` in step `h` is not a JSON pointer",
        ),
        ("p.yml:31:29", "`at`"),
    ]
    .into_iter()
    .collect();
    for (place, words) in expected {
        assert!(text.contains(place), "no {place} in:\n{text}");
        assert!(text.contains(words), "no `{words}` in:\n{text}");
    }
    assert!(!text.contains("hunter2secret"), "{text}");
}

/// Kills ward right after its `n`-th durable commit in the middle of a
/// fan-out over a command's output; the resume takes the recorded items:
/// the command does not run again and no succeeded item runs again.
#[test]
fn kill_9_mid_command_fan_out_then_resume_uses_the_recorded_items() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: crash\nsteps:\n  \
         - id: each\n    for_each: { command: [sh, -c, \"echo listed >> list-runs; seq 1 40\"] }\n    \
           max_parallel: 2\n    run: echo {{ item }} >> journal\n",
    );
    let crashed = s
        .ward()
        .args(["run", "p.yml"])
        .env("WARD_FAULT_KILL_AFTER_COMMITS", "8")
        .run_allow_kill();
    assert_eq!(crashed.code, -1, "not killed: {}", crashed.stderr);
    let done_before: Vec<String> = items(&s)
        .into_iter()
        .filter(|(_, st)| st == "succeeded")
        .map(|(k, _)| k)
        .collect();
    assert!(
        !done_before.is_empty() && done_before.len() < 40,
        "the kill should fall in the middle ({} done)",
        done_before.len()
    );
    s.ward().args(["resume", "--last"]).run().expect_code(0);
    assert_eq!(
        std::fs::read_to_string(s.path().join("list-runs")).expect("ran"),
        "listed\n",
        "the resume ran the list command again"
    );
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in journal(&s) {
        *counts.entry(line).or_default() += 1;
    }
    assert_eq!(counts.len(), 40, "{counts:?}");
    for key in &done_before {
        assert_eq!(counts.get(key), Some(&1), "item {key} ran again");
    }
    assert!(items(&s).iter().all(|(_, st)| st == "succeeded"));
}

/// A `for_each` command that hangs does not keep ward from its signals:
/// SIGTERM to ward's pid alone (not its group, so the command does not
/// get it) stops the listing at once, kills the command, runs the
/// finalizer, and ward exits 143.
#[test]
fn sigterm_to_ward_alone_stops_a_hanging_list_command() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: hang\nsteps:\n  - id: each\n    for_each: { command: [sh, -c, \
         \"echo $$ > lister.pid; exec sleep 30\"] }\n    run: echo {{ item }}\n  \
         - id: fin\n    when: always\n    run: echo fin > fin.txt\n",
    );
    let mut child = s.ward().args(["run", "p.yml"]).spawn();
    assert!(crate::harness::wait_for(20, || s
        .path()
        .join("lister.pid")
        .exists()));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let lister = s.read("lister.pid").trim().to_owned();
    let started = std::time::Instant::now();
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(143), "{status:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "ward waited for the list command ({:?})",
        started.elapsed()
    );
    assert!(s.path().join("fin.txt").exists(), "the finalizer ran");
    assert!(
        crate::harness::wait_for(5, || !crate::harness::alive(&lister)),
        "the list command was killed"
    );
}
