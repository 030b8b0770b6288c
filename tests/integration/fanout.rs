//! `for_each:` steps (fan-out) on SQLite: many items, a crash in the middle
//! and its resume, failed items and their exit code, bad lists.

use std::collections::BTreeMap;

use crate::harness::Scratch;

/// How often each line occurs in a file (each item appends its key).
fn line_counts(s: &Scratch, name: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(s.path().join(name))
        .unwrap_or_default()
        .lines()
    {
        *counts.entry(line.to_owned()).or_default() += 1;
    }
    counts
}

/// `ward items last --json` (optionally of one state): (key, state) pairs.
pub(crate) fn items(s: &Scratch, state: Option<&str>) -> Vec<(String, String)> {
    let mut args = vec!["items", "last", "--json"];
    if let Some(st) = state {
        args.extend(["--status", st]);
    }
    let json = s.ward().args(args).run().expect_code(0).json();
    json.as_array()
        .expect("a list of items")
        .iter()
        .map(|i| {
            (
                i["key"].as_str().expect("key").to_owned(),
                i["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect()
}

fn write_lines(s: &Scratch, name: &str, n: usize) {
    let text: String = (1..=n).map(|i| format!("u{i:05}\n")).collect();
    s.write(name, &text);
}

#[test]
fn a_thousand_items_all_succeed_each_once() {
    let s = Scratch::new();
    write_lines(&s, "users.txt", 1000);
    s.write(
        "p.yml",
        "ward: 1\nname: many\nsteps:\n  \
         - id: each\n    for_each: { lines: users.txt }\n    max_parallel: 8\n    \
           run: echo {{ item | quote }} >> journal\n  \
         - id: after\n    needs: [each]\n    run: echo after >> journal\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let all = items(&s, None);
    assert_eq!(all.len(), 1000);
    assert!(all.iter().all(|(_, st)| st == "succeeded"), "{all:?}");
    let counts = line_counts(&s, "journal");
    assert_eq!(counts.len(), 1001, "every item and `after`");
    assert!(counts.values().all(|&n| n == 1), "each ran once");
    // The items are listed in order, and the step is one attempt.
    assert_eq!(all[0].0, "u00001");
    assert_eq!(all[999].0, "u01000");
    let status = s.status(None);
    let each = crate::harness::status_step(&status, "each");
    assert_eq!(each["state"], "succeeded");
    assert_eq!(each["attempts"], 1);
}

/// The issue's own case: 10,000 items on SQLite, ward killed with SIGKILL
/// in the middle, then resumed: every item ends succeeded, and none that
/// was recorded succeeded before the kill runs again.
#[test]
fn ten_thousand_items_killed_mid_way_resume_and_no_recorded_success_runs_again() {
    let s = Scratch::new();
    write_lines(&s, "users.txt", 10_000);
    s.write(
        "p.yml",
        "ward: 1\nname: tenk\nsteps:\n  \
         - id: each\n    for_each: { lines: users.txt }\n    max_parallel: 8\n    \
           cmd: [sh, -c, 'echo \"$WARD_ITEM_KEY\" >> journal']\n",
    );
    let mut run = s.ward().args(["run", "p.yml"]).spawn();
    assert!(
        crate::harness::wait_for(120, || line_counts(&s, "journal").len() >= 3_000),
        "items run"
    );
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &run.id().to_string()])
        .status();
    let _ = run.wait();
    let done_before: Vec<String> = items(&s, Some("succeeded"))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(
        done_before.len() >= 1_000 && done_before.len() < 10_000,
        "killed in the middle: {} recorded succeeded",
        done_before.len()
    );
    s.ward().args(["resume", "--last"]).run().expect_code(0);
    let all = items(&s, None);
    assert_eq!(all.len(), 10_000);
    assert!(all.iter().all(|(_, st)| st == "succeeded"));
    let counts = line_counts(&s, "journal");
    assert_eq!(counts.len(), 10_000, "every item ran");
    for key in &done_before {
        assert_eq!(counts.get(key), Some(&1), "{key} succeeded before the kill");
    }
    // Only those running or ended-but-not-committed at the kill run twice.
    let twice = counts.values().filter(|&&n| n > 1).count();
    assert!(twice <= 64, "{twice} items ran twice");
}

#[test]
fn a_list_variable_with_a_key_template_gives_item_fields_and_stable_ids() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: keyed\nvars:\n  users:\n    - { name: alice, home: /home/a }\n    \
           - { name: bob, home: /home/b }\nsteps:\n  \
         - id: migrate\n    for_each: \"{{ users }}\"\n    key: \"{{ item.name }}\"\n    \
           cmd: [sh, -c, 'echo \"$WARD_ITEM_KEY {{ item.home }} $HOME_DIR\" >> journal']\n    \
           env: { HOME_DIR: \"{{ item.home }}\" }\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let journal = s.read("journal");
    assert!(journal.contains("alice /home/a /home/a\n"), "{journal}");
    assert!(journal.contains("bob /home/b /home/b\n"), "{journal}");
    assert_eq!(
        items(&s, None),
        [
            ("alice".to_owned(), "succeeded".to_owned()),
            ("bob".to_owned(), "succeeded".to_owned())
        ]
    );
}

/// Kills ward right after its `n`-th durable commit in the middle of a
/// 60-item fan-out, resumes, and checks that every item ends succeeded and
/// that no item recorded succeeded before the kill ran again.
fn crash_mid_fan_out(n: u32) {
    let s = Scratch::new();
    write_lines(&s, "users.txt", 60);
    s.write(
        "p.yml",
        "ward: 1\nname: crash\nsteps:\n  \
         - id: first\n    run: echo first >> journal\n  \
         - id: each\n    needs: [first]\n    for_each: { lines: users.txt }\n    max_parallel: 3\n    \
           run: echo {{ item }} >> journal\n  \
         - id: last\n    needs: [each]\n    run: echo last >> journal\n",
    );
    let crashed = s
        .ward()
        .args(["run", "p.yml"])
        .env("WARD_FAULT_KILL_AFTER_COMMITS", &n.to_string())
        .run_allow_kill();
    assert_eq!(
        crashed.code, -1,
        "commit {n}: not killed: {}",
        crashed.stderr
    );
    let done_before: Vec<String> = items(&s, Some("succeeded"))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let left_before = items(&s, None).len() - done_before.len();
    assert!(
        !done_before.is_empty() && left_before > 0,
        "commit {n}: the kill should fall in the middle of the fan-out ({} done)",
        done_before.len()
    );
    // Items whose ward died are not shown as if they still ran.
    let running = s
        .ward()
        .args(["items", "last", "--json", "--status", "running"])
        .run()
        .expect_code(0)
        .json();
    for item in running.as_array().expect("a list") {
        assert!(
            item["message"]
                .as_str()
                .is_some_and(|m| m.contains("its end was not recorded")),
            "commit {n}: {item}"
        );
    }
    let before = line_counts(&s, "journal");
    s.ward().args(["resume", "--last"]).run().expect_code(0);
    let all = items(&s, None);
    assert_eq!(all.len(), 60);
    assert!(
        all.iter().all(|(_, st)| st == "succeeded"),
        "commit {n}: {all:?}"
    );
    let after = line_counts(&s, "journal");
    for key in &done_before {
        assert_eq!(
            after.get(key),
            before.get(key),
            "commit {n}: item {key} was recorded succeeded before the kill but ran again"
        );
        assert_eq!(after.get(key), Some(&1), "commit {n}: {key}");
    }
    for i in 1..=60 {
        assert!(
            after.contains_key(&format!("u{i:05}")),
            "commit {n}: u{i:05} never ran"
        );
    }
    assert_eq!(
        after.get("first"),
        Some(&1),
        "commit {n}: `first` ran again"
    );
    assert_eq!(after.get("last"), Some(&1), "commit {n}");
}

#[test]
fn kill_9_in_the_middle_of_a_fan_out_then_resume_never_reruns_a_succeeded_item() {
    // Commits: the run, `first` started, `first` done with `each` started
    // and its first 3 items, then one per scheduler turn in which items
    // ended (1 to 3 of them): 60 items take at least 20 more commits, so
    // every one of these falls inside the fan-out, whatever the load.
    for n in [6, 12, 19] {
        crash_mid_fan_out(n);
    }
}

#[test]
fn a_failed_item_gives_exit_10_and_is_listed_and_resume_runs_only_it() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: some-fail\nsteps:\n  \
         - id: each\n    for_each: [a, b, c, d]\n    \
           run: echo {{ item }} >> journal; test {{ item }} != c || test -e fixed\n  \
         - id: after\n    needs: [each]\n    run: echo after >> journal\n  \
         - id: other\n    run: echo other >> journal\n",
    );
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(10);
    assert!(
        run.stderr.contains("1 of 4 items failed") && run.stderr.contains("`c`"),
        "{}",
        run.stderr
    );
    assert_eq!(
        items(&s, Some("failed")),
        [("c".to_owned(), "failed".to_owned())]
    );
    let listed = s
        .ward()
        .args(["items", "last", "--status", "failed"])
        .run()
        .expect_code(0)
        .stdout;
    assert!(
        listed.contains(" c ") && listed.contains("exit code 1"),
        "{listed}"
    );
    assert!(!listed.contains(" a "), "{listed}");
    // `--state` names the database, as everywhere; the slip is explained.
    let slip = s
        .ward()
        .args(["items", "last", "--state", "failed"])
        .run()
        .expect_code(2);
    assert!(slip.stderr.contains("--status failed"), "{}", slip.stderr);
    let counts = line_counts(&s, "journal");
    assert_eq!(counts.get("other"), Some(&1), "other steps still ran");
    assert_eq!(counts.get("after"), None, "`after` needs the failed step");
    assert_eq!(s.step_states()["each"], "failed");

    s.write("fixed", "");
    s.ward().args(["resume", "--last"]).run().expect_code(0);
    let counts = line_counts(&s, "journal");
    assert_eq!(counts.get("c"), Some(&2));
    for k in ["a", "b", "d"] {
        assert_eq!(
            counts.get(k),
            Some(&1),
            "{k} succeeded and must not run again"
        );
    }
    assert_eq!(counts.get("after"), Some(&1));
}

#[test]
fn a_plain_failed_step_beside_failed_items_exits_1() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: both\nsteps:\n  \
         - id: each\n    for_each: [a]\n    run: \"false\"\n  \
         - id: plain\n    run: \"false\"\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(1);
}

#[test]
fn duplicate_keys_fail_the_step_before_any_item_runs() {
    let s = Scratch::new();
    s.write("users.txt", "alice\nbob\nalice\n");
    s.write(
        "p.yml",
        "ward: 1\nname: dup\nsteps:\n  \
         - id: each\n    for_each: { lines: users.txt }\n    run: echo {{ item }} >> journal\n",
    );
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(1);
    assert!(
        run.stderr
            .contains("items 1 and 3 both have the key `alice`"),
        "{}",
        run.stderr
    );
    assert!(!s.path().join("journal").exists(), "no item ran");
}

#[test]
fn a_bad_for_each_is_reported_with_file_line_and_column() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: bad\nvars:\n  one: hello\nsteps:\n  \
         - id: a\n    for_each: 5\n    run: echo {{ item }}\n  \
         - id: b\n    for_each: \"{{ one }}\"\n    run: echo {{ item }}\n  \
         - id: c\n    for_each: [x]\n    key: \"\"\n    run: echo {{ item }}\n  \
         - id: d\n    for_each: [x]\n    on_item: 3\n    run: echo {{ item }}\n  \
         - id: e\n    for_each: [x, y, x]\n    run: echo {{ item }}\n",
    );
    let out = s.ward().args(["validate", "p.yml"]).run().expect_code(2);
    let text = format!("{}{}", out.stdout, out.stderr);
    for (place, words) in [
        (
            "p.yml:7:15",
            "invalid `for_each` in step `a`: expected a list",
        ),
        ("p.yml:10:15", "`for_each` of step `b` must give a list"),
        ("p.yml:14:10", "`key` in step `c` is empty"),
        (
            "p.yml:18:14",
            "invalid `on_item` in step `d`: expected a mapping",
        ),
        (
            "p.yml:21:15",
            "items 1 and 3 of `for_each` in step `e` both have the key `x`",
        ),
    ] {
        assert!(text.contains(place), "no {place} in:\n{text}");
        assert!(text.contains(words), "no `{words}` in:\n{text}");
    }
    // `ward run` refuses it the same way, before anything runs.
    s.ward().args(["run", "p.yml"]).run().expect_code(2);
}

#[test]
fn sigterm_mid_fan_out_leaves_unfinished_items_pending_and_resume_finishes_them() {
    let s = Scratch::new();
    write_lines(&s, "users.txt", 6);
    // u00001 and u00002 finish at once; the others wait for `go`, so the
    // signal falls while items run.
    s.write(
        "p.yml",
        "ward: 1\nname: sig\nsteps:\n  \
         - id: each\n    for_each: { lines: users.txt }\n    max_parallel: 2\n    \
           run: |\n      case {{ item }} in u0000[12]) ;; *) touch waiting; \
           while [ ! -e go ]; do sleep 0.05; done ;; esac\n      echo {{ item }} >> journal\n",
    );
    let mut child = s.ward().args(["run", "p.yml"]).spawn();
    assert!(crate::harness::wait_for(10, || {
        s.path().join("waiting").exists() && items(&s, Some("succeeded")).len() == 2
    }));
    let sent = std::process::Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    assert_eq!(child.wait().expect("wait").code(), Some(143));
    assert_eq!(s.step_states()["each"], "interrupted");
    let all = items(&s, None);
    assert!(!all.iter().any(|(_, st)| st == "failed"), "{all:?}");
    let done: Vec<&String> = all
        .iter()
        .filter(|(_, st)| st == "succeeded")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(done, ["u00001", "u00002"], "{all:?}");
    assert_eq!(
        all.iter().filter(|(_, st)| st == "pending").count(),
        4,
        "stopped and unstarted items are pending: {all:?}"
    );
    s.write("go", "");
    s.ward().args(["resume", "--last"]).run().expect_code(0);
    let counts = line_counts(&s, "journal");
    assert_eq!(counts.len(), 6, "{counts:?}");
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

#[test]
fn items_not_started_after_another_fan_out_failed_are_skipped_and_the_exit_is_still_10() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: two\nsteps:\n  \
         - id: quick\n    for_each: [bad]\n    run: touch quick.failed; false\n  \
         - id: slow\n    for_each: [b1, b2, b3]\n    max_parallel: 1\n    \
           run: |\n      while [ ! -e quick.failed ]; do sleep 0.02; done; sleep 0.5\n      \
           echo {{ item }} >> journal\n",
    );
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(10);
    assert!(run.stderr.contains("step `quick` failed"), "{}", run.stderr);
    assert_eq!(
        items(&s, Some("skipped")),
        [
            ("b2".to_owned(), "skipped".to_owned()),
            ("b3".to_owned(), "skipped".to_owned())
        ]
    );
    assert_eq!(line_counts(&s, "journal").len(), 1, "b1 ran to its end");
    s.write("p.yml", &s.read("p.yml").replace("; false", ""));
    s.ward()
        .args(["resume", "--last", "--allow-changed"])
        .run()
        .expect_code(0);
    let counts = line_counts(&s, "journal");
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

#[test]
fn a_lines_file_that_is_a_fifo_or_a_device_fails_the_step_without_hanging() {
    let s = Scratch::new();
    let fifo = s.path().join("users.txt");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    // Were ward to block opening the FIFO, this writer unblocks it after a
    // while, so the test fails on its assertions instead of hanging.
    let writer = fifo.clone();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(20));
        use std::os::unix::fs::OpenOptionsExt;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&writer)
        {
            let _ = std::io::Write::write_all(&mut f, b"late\n");
        }
    });
    std::os::unix::fs::symlink("/dev/zero", s.path().join("zero.txt")).expect("symlink");
    for (file, what) in [("users.txt", "a FIFO"), ("zero.txt", "a device")] {
        s.write(
            "p.yml",
            &format!(
                "ward: 1\nname: odd\nsteps:\n  \
                 - id: each\n    for_each: {{ lines: {file} }}\n    run: echo {{{{ item }}}} >> journal\n  \
                 - id: fin\n    when: always\n    run: echo fin >> finals\n"
            ),
        );
        let run = s.ward().args(["run", "p.yml"]).run().expect_code(1);
        assert!(
            run.stderr
                .contains(&format!("is {what}, not a regular file")),
            "{}",
            run.stderr
        );
        assert!(!s.path().join("journal").exists(), "no item ran");
    }
    assert_eq!(
        line_counts(&s, "finals").get("fin"),
        Some(&2),
        "finalizer ran"
    );
}

#[test]
fn a_list_or_a_key_made_from_a_secret_is_refused_with_its_place() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: sec\nvars:\n  db_password: \"\"\n  users: [a, b]\nsteps:\n  \
         - id: k\n    for_each: \"{{ users }}\"\n    key: \"{{ item }}-{{ db_password }}\"\n    \
           run: echo {{ item }}\n  \
         - id: l\n    for_each: { lines: \"{{ db_password }}.txt\" }\n    run: echo {{ item }}\n",
    );
    let out = s
        .ward()
        .args(["validate", "p.yml", "--var", "db_password=hunter2secret"])
        .run()
        .expect_code(2);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains("p.yml:9:"), "{text}");
    assert!(text.contains("`key` of step `k` uses"), "{text}");
    assert!(text.contains("`for_each` of step `l` uses"), "{text}");
    assert!(!text.contains("hunter2secret"), "{text}");
    // Nothing ran, nothing was recorded with the secret in it.
    s.ward()
        .args(["run", "p.yml", "--var", "db_password=hunter2secret"])
        .run()
        .expect_code(2);
}

/// A `lines:` file that is not UTF-8 fails the step before any item runs,
/// naming the file, the line and the bad bytes.
#[test]
fn a_lines_file_that_is_not_utf8_names_its_line() {
    let s = Scratch::new();
    std::fs::write(s.path().join("users.txt"), b"alice\nbob\nj\xe9r\xf4me\n").expect("write");
    s.write(
        "p.yml",
        "ward: 1\nname: odd\nsteps:\n  \
         - id: each\n    for_each: { lines: users.txt }\n    run: echo {{ item }} >> journal\n",
    );
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(1);
    assert!(
        run.stderr
            .contains("users.txt:3 is not UTF-8 text (bytes 0xe9)"),
        "{}",
        run.stderr
    );
    assert!(!s.path().join("journal").exists(), "no item ran");
}
