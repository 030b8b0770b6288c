//! Preconditions, the lock held by another run, and `ward check`, with
//! real parts: a TCP listener on loopback, real processes, real files, a
//! power-supply tree as /sys shows it, and the real `ward` binary.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command};

use crate::harness::{Scratch, status_step, wait_for};

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A power-supply folder as /sys/class/power_supply shows it.
fn power_tree(root: &Path, mains_online: bool) {
    for (name, files) in [
        (
            "BAT0",
            vec![
                ("type", "Battery"),
                ("status", "Discharging"),
                ("capacity", "41"),
            ],
        ),
        (
            "AC",
            vec![
                ("type", "Mains"),
                ("online", if mains_online { "1" } else { "0" }),
            ],
        ),
    ] {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for (f, v) in files {
            std::fs::write(dir.join(f), format!("{v}\n")).expect("write");
        }
    }
}

/// A real process that `not_running` can find: `sleep` with a mark in its
/// command line, killed when dropped.
struct Sleeper(Child);

impl Sleeper {
    fn start(mark: &str) -> Sleeper {
        Sleeper(
            Command::new("sleep")
                .arg(mark)
                .spawn()
                .expect("start sleep"),
        )
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A playbook with every kind of precondition; `port`, `need`, the folder
/// and the process mark come from `--var`s so one file can pass and fail
/// (tests run at once: only the failing test starts a `sleep 4242.5`).
const ALL_KINDS: &str = r#"ward: 1
name: guarded
vars:
  port: 1
  need: 1B
  mount: mnt
  mark: "9191.25"
preconditions:
  - path_exists: "{{ mount }}"
  - free_space: {path: ".", min: "{{ need }}"}
  - tcp: "127.0.0.1:{{ port }}"
  - command: [sh, -c, "echo checked-by-command; test -f ok"]
  - not_running: {name: sleep, cmdline: "{{ mark }}"}
  - on_ac_power: true
steps:
  - id: work
    run: echo ran >> journal
  - id: finally
    after: [work]
    when: always
    run: echo finally >> journal
"#;

#[test]
fn every_precondition_failing_skips_the_run_names_each_check_and_runs_no_step() {
    let s = Scratch::new();
    s.write("p.yml", ALL_KINDS);
    let power = s.path().join("power");
    power_tree(&power, false);
    let _sleeper = Sleeper::start("4242.5");
    assert!(wait_for(5, || {
        std::fs::read_dir("/proc")
            .expect("proc")
            .flatten()
            .any(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("4242.5"))
            })
    }));
    let port = closed_port().to_string();
    let run = s
        .ward()
        .args(["run", "p.yml", "--var", &format!("port={port}")])
        .args(["--var", "need=900T", "--var", "mark=4242.5"])
        .env("WARD_TEST_POWER_SUPPLY_DIR", &power.display().to_string())
        .run()
        .expect_code(6);
    // Each failed check is named, in order, on stderr (cron mails it).
    for (check, why) in [
        ("path_exists mnt", "does not exist"),
        ("free_space . >= 900.0T", "needed"),
        (&format!("tcp 127.0.0.1:{port}")[..], "refused"),
        ("command sh -c", "exit 1"),
        (
            "not_running {name: sleep, cmdline: \"4242.5\"}",
            "running: sleep (pid",
        ),
        ("on_ac_power", "BAT0 Discharging, 41%"),
    ] {
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains(check))
            .unwrap_or_else(|| panic!("no line for {check}:\n{}", run.stderr));
        assert!(
            line.starts_with("precondition FAILED") && line.contains(why),
            "{line}"
        );
    }
    assert!(run.stderr.contains("skipped: run "), "{}", run.stderr);
    // Nothing ran, not even the `when: always` step.
    assert!(!s.path().join("journal").exists());
    let status = s.status(None);
    assert_eq!(status["state"], "skipped");
    let message = status["message"].as_str().expect("message");
    assert!(
        message.contains("path_exists mnt") && message.contains("on_ac_power"),
        "{message}"
    );
    for step in ["work", "finally"] {
        let st = status_step(&status, step);
        assert_eq!(st["state"], "skipped", "{step}");
        assert_eq!(st["attempts"], 0, "{step}");
    }
    let checks = status["preconditions"]["checks"]
        .as_array()
        .expect("checks");
    assert_eq!(checks.len(), 6);
    assert!(checks.iter().all(|c| c["passed"] == false), "{checks:?}");
    // The command's output is kept in the run's log.
    let log = status["preconditions"]["log_path"].as_str().expect("log");
    let text = std::fs::read_to_string(log).expect("preconditions.log");
    assert!(text.contains("checked-by-command"), "{text}");
    // `ward status` and `ward runs` show it skipped, and why.
    let human = s.ward().arg("status").run().expect_code(0);
    assert!(human.stdout.contains("skipped"), "{}", human.stdout);
    assert!(
        human.stdout.contains("FAILED tcp 127.0.0.1"),
        "{}",
        human.stdout
    );
    let runs = s.ward().arg("runs").run().expect_code(0);
    assert!(
        runs.stdout.contains("skipped") && runs.stdout.contains("↳ preconditions were not met"),
        "{}",
        runs.stdout
    );
    // There is nothing to resume.
    let resume = s.ward().args(["resume", "--last"]).run().expect_code(2);
    assert!(resume.stderr.contains("was skipped"), "{}", resume.stderr);
    assert!(!s.path().join("journal").exists());
}

#[test]
fn every_precondition_holding_lets_the_run_go_on() {
    let s = Scratch::new();
    s.write("p.yml", ALL_KINDS);
    std::fs::create_dir(s.path().join("mnt")).expect("mkdir");
    s.write("ok", "");
    let power = s.path().join("power");
    power_tree(&power, true);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let run = s
        .ward()
        .args([
            "run",
            "p.yml",
            "--progress",
            "--var",
            &format!("port={port}"),
        ])
        .env("WARD_TEST_POWER_SUPPLY_DIR", &power.display().to_string())
        .run()
        .expect_code(0);
    assert_eq!(s.read("journal"), "ran\nfinally\n");
    assert_eq!(
        run.stdout.matches("precondition ok:").count(),
        6,
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("AC (Mains) online"), "{}", run.stdout);
    let status = s.status(None);
    assert_eq!(status["state"], "succeeded");
    let checks = status["preconditions"]["checks"]
        .as_array()
        .expect("checks");
    assert!(checks.iter().all(|c| c["passed"] == true), "{checks:?}");
}

#[test]
fn one_failed_check_is_enough_and_the_others_are_still_reported() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: one\npreconditions:\n  - path_exists: .\n  - path_exists: missing\n  - path_exists: p.yml\nsteps:\n  - id: a\n    run: echo ran > journal\n",
    );
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(6);
    assert_eq!(
        run.stderr.matches("precondition FAILED").count(),
        1,
        "{}",
        run.stderr
    );
    let status = s.status(None);
    let checks = status["preconditions"]["checks"]
        .as_array()
        .expect("checks");
    let passed: Vec<bool> = checks.iter().map(|c| c["passed"] == true).collect();
    assert_eq!(passed, [true, false, true]);
    assert!(!s.path().join("journal").exists());
}

#[test]
fn a_command_that_overruns_its_timeout_is_stopped_and_fails() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: slow\npreconditions:\n  - command: {argv: [sh, -c, 'echo $$ > check.pid; sleep 30'], timeout: 300ms}\nsteps:\n  - id: a\n    run: 'true'\n",
    );
    let started = std::time::Instant::now();
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(6);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        run.stderr.contains("did not finish within 300ms"),
        "{}",
        run.stderr
    );
    let pid = s.read("check.pid");
    assert!(
        !crate::harness::alive(pid.trim()),
        "the check's shell still runs"
    );
}

#[test]
fn skip_preconditions_runs_anyway_and_is_recorded() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: forced\npreconditions:\n  - path_exists: missing\nsteps:\n  - id: a\n    run: echo ran > journal\n",
    );
    s.ward()
        .args(["run", "p.yml", "--skip-preconditions"])
        .run()
        .expect_code(0);
    assert_eq!(s.read("journal"), "ran\n");
    let status = s.status(None);
    assert_eq!(status["preconditions"]["skipped_by_operator"], true);
    let human = s.ward().arg("status").run().expect_code(0);
    assert!(
        human.stdout.contains("not checked (--skip-preconditions)"),
        "{}",
        human.stdout
    );
}

#[test]
fn free_space_as_a_multiple_of_the_last_successful_runs_size() {
    let s = Scratch::new();
    s.write("src/data.bin", &"x".repeat(100_000));
    let playbook = |factor: &str| {
        format!(
            "ward: 1\nname: sized\npreconditions:\n  - free_space: {{path: ., min: {factor}x last}}\nsteps:\n  - id: copy\n    action: rsync\n    with: {{ src: src, dest: dest }}\n"
        )
    };
    // No successful run yet: passes, and says why.
    s.write("p.yml", &playbook("1000000000"));
    let first = s
        .ward()
        .args(["run", "p.yml", "--progress"])
        .run()
        .expect_code(0);
    assert!(
        first.stdout.contains("no successful run yet"),
        "{}",
        first.stdout
    );
    let first_id = s.status(None)["id"].as_str().expect("id").to_owned();
    // Now the last run copied 100,000 bytes: a billion times that is far
    // more than any disk here has free.
    let second = s.ward().args(["run", "p.yml"]).run().expect_code(6);
    assert!(
        second
            .stderr
            .contains(&format!("1000000000x the 97.7K of run {first_id}")),
        "{}",
        second.stderr
    );
    // A small multiple passes.
    s.write("p.yml", &playbook("1.5"));
    let third = s
        .ward()
        .args(["run", "p.yml", "--progress"])
        .run()
        .expect_code(0);
    assert!(third.stdout.contains("1.5x the 97.7K"), "{}", third.stdout);
}

#[test]
fn a_second_run_while_one_holds_the_lock_exits_3_with_one_line() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: nightly\nlock: backup-disk\nsteps:\n  - id: hold\n    run: touch started; while [ ! -f release ]; do sleep 0.02; done\n",
    );
    let mut first = s.ward().args(["run", "p.yml"]).spawn();
    assert!(wait_for(10, || s.path().join("started").exists()));
    let first_id = s.status(None)["id"].as_str().expect("id").to_owned();
    let second = s.ward().args(["run", "p.yml"]).run().expect_code(3);
    assert_eq!(second.stdout, "");
    let lines: Vec<&str> = second.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", second.stderr);
    let line = lines[0];
    for part in [
        "playbook `nightly`",
        "lock `backup-disk`",
        &format!("run {first_id}"),
        &format!("pid {}", first.id()),
    ] {
        assert!(line.contains(part), "missing {part}: {line}");
    }
    s.write("release", "");
    assert!(first.wait().expect("wait").success());
    // The refused run was not recorded.
    let runs = s.ward().args(["runs", "--json"]).run().expect_code(0);
    assert_eq!(runs.json().as_array().map(Vec::len), Some(1));
}

/// Local time `hours` from now, as WARD_NOW takes it.
fn now_plus(hours: i64) -> String {
    (chrono::Local::now() + chrono::Duration::hours(hours))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

#[test]
fn check_says_fresh_stale_and_never_and_exits_7() {
    let s = Scratch::new();
    s.write(
        "nightly.yml",
        "ward: 1\nname: nightly\nmax_age: 26h\nsteps:\n  - id: a\n    run: 'true'\n",
    );
    s.write(
        "weekly.yml",
        "ward: 1\nname: weekly\nmax_age: 8d\nsteps:\n  - id: a\n    run: test -f go\n",
    );
    s.write(
        "adhoc.yml",
        "ward: 1\nname: adhoc\nsteps:\n  - id: a\n    run: 'true'\n",
    );
    s.ward().args(["run", "nightly.yml"]).run().expect_code(0);
    s.ward().args(["run", "weekly.yml"]).run().expect_code(1);
    s.ward().args(["run", "adhoc.yml"]).run().expect_code(0);
    // Now: nightly is fresh, weekly never succeeded; adhoc has no max_age.
    let now = s
        .ward()
        .args(["check"])
        .env("WARD_NOW", &now_plus(1))
        .run()
        .expect_code(7);
    let lines: Vec<&str> = now.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", now.stdout);
    assert!(lines[0].starts_with("fresh  nightly") && lines[0].contains("max_age 1d2h"));
    assert!(lines[0].contains("last success "), "{}", lines[0]);
    assert!(lines[1].starts_with("never  weekly"), "{}", lines[1]);
    // Only nightly asked: fresh, exit 0.
    s.ward()
        .args(["check", "nightly"])
        .env("WARD_NOW", &now_plus(1))
        .run()
        .expect_code(0);
    // Two days later it is stale.
    let later = s
        .ward()
        .args(["check", "nightly", "--json"])
        .env("WARD_NOW", &now_plus(48))
        .run()
        .expect_code(7);
    let doc = later.json();
    assert_eq!(doc["ok"], false);
    let v = &doc["playbooks"][0];
    assert_eq!(v["playbook"], "nightly");
    assert_eq!(v["status"], "stale");
    assert_eq!(v["max_age_ms"], 26 * 3600 * 1000);
    assert!(v["age_ms"].as_i64().expect("age") > 47 * 3600 * 1000, "{v}");
    // The playbook files are not needed: the state recorded max_age.
    std::fs::remove_file(s.path().join("nightly.yml")).expect("rm");
    s.ward()
        .args(["check", "nightly"])
        .env("WARD_NOW", &now_plus(2))
        .run()
        .expect_code(0);
    // A playbook file that never ran: never, from the file's max_age.
    s.write(
        "new.yml",
        "ward: 1\nname: brand-new\nmax_age: 1h\nsteps:\n  - id: a\n    run: 'true'\n",
    );
    let new = s.ward().args(["check", "new.yml"]).run().expect_code(7);
    assert!(new.stdout.starts_with("never  brand-new"), "{}", new.stdout);
    // A name with no max_age recorded is a usage error, not a silent pass.
    let adhoc = s.ward().args(["check", "adhoc"]).run().expect_code(2);
    assert!(
        adhoc.stderr.contains("no `max_age` recorded"),
        "{}",
        adhoc.stderr
    );
}

#[test]
fn a_skipped_run_is_not_a_success_for_check() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: guarded\nmax_age: 1h\npreconditions:\n  - path_exists: missing\nsteps:\n  - id: a\n    run: 'true'\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(6);
    let run = s.ward().args(["check"]).run().expect_code(7);
    assert!(run.stdout.starts_with("never  guarded"), "{}", run.stdout);
}

#[test]
fn plan_lists_the_preconditions_without_checking_them() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: planned\nmax_age: 26h\nvars:\n  disk: /nonexistent-disk\npreconditions:\n  - path_exists: \"{{ disk }}\"\n  - free_space: {path: /, min: 1.5x last}\nsteps:\n  - id: a\n    run: echo ran > journal\n",
    );
    let text = s.ward().args(["plan", "p.yml"]).run().expect_code(0);
    assert!(
        text.stdout
            .contains("  - path_exists /nonexistent-disk\n  - free_space / >= 1.5x last\n"),
        "{}",
        text.stdout
    );
    let json = s
        .ward()
        .args(["plan", "p.yml", "--format", "json"])
        .run()
        .expect_code(0)
        .json();
    assert_eq!(json["preconditions"][0], "path_exists /nonexistent-disk");
    assert_eq!(json["max_age"], "1d2h");
    assert!(!s.path().join("journal").exists());
}

#[test]
fn the_schema_knows_every_precondition_and_refuses_an_unknown_one() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(crate::harness::repo_path("schemas/playbook.schema.json"))
            .expect("schema file"),
    )
    .expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let s = Scratch::new();
    let good = s.write("p.yml", ALL_KINDS);
    let more = s.write(
        "q.yml",
        "ward: 1\nname: q\nmax_age: 26h\npreconditions:\n  - free_space: {path: /, min: 1.5x last}\n  - command: {argv: ['true'], timeout: 5s}\n  - tcp: {address: \"[::1]:22\", timeout: 2s}\n  - not_running: [rsync, {name: [a, b], user: backup}]\nsteps:\n  - id: a\n    run: 'true'\n",
    );
    for path in [good, more] {
        let instance = ward::yaml_file_as_json(&path).expect("reads as JSON");
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        s.ward().arg("validate").arg(&path).run().expect_code(0);
    }
    let bad = s.write(
        "bad.yml",
        "ward: 1\nname: b\npreconditions:\n  - free_sapce: {path: /, min: 1G}\nsteps:\n  - id: a\n    run: 'true'\n",
    );
    let instance = ward::yaml_file_as_json(&bad).expect("reads as JSON");
    assert!(!validator.is_valid(&instance));
}

#[test]
fn check_counts_a_resumed_run_from_its_first_start() {
    let s = Scratch::new();
    // The copy takes 3 s, then the run fails; its resume only redoes the
    // last step, moments later.
    s.write(
        "p.yml",
        "ward: 1\nname: resumed\nmax_age: 2h\nsteps:\n  - id: copy\n    run: sleep 3\n  - id: verify\n    needs: copy\n    run: test -f go\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(1);
    s.write("go", "");
    s.ward().args(["resume", "--last"]).run().expect_code(0);
    let runs = s
        .ward()
        .args(["runs", "--json"])
        .run()
        .expect_code(0)
        .json();
    let started = crate::harness::json_ms(&runs[0]["started_at"]);
    let doc = s
        .ward()
        .args(["check", "--json"])
        .env("WARD_NOW", &now_plus(1))
        .run()
        .expect_code(0)
        .json();
    let v = &doc["playbooks"][0];
    assert_eq!(
        crate::harness::json_ms(&v["last_success"]),
        started,
        "{v} {runs}"
    );
    // An hour and the 3 s before the failure (WARD_NOW has whole seconds).
    assert!(
        v["age_ms"].as_i64().expect("age") >= 3600 * 1000 + 1500,
        "{v}"
    );
}

#[test]
fn check_reports_a_last_success_in_the_future_apart_and_exits_7() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: nightly\nmax_age: 26h\nsteps:\n  - id: a\n    run: 'true'\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let human = s
        .ward()
        .args(["check"])
        .env("WARD_NOW", &now_plus(-5))
        .run()
        .expect_code(7);
    assert!(
        human.stdout.starts_with("future  nightly") && human.stdout.contains("which is after now"),
        "{}",
        human.stdout
    );
    let doc = s
        .ward()
        .args(["check", "--json"])
        .env("WARD_NOW", &now_plus(-5))
        .run()
        .expect_code(7)
        .json();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["playbooks"][0]["status"], "future");
    assert!(doc["playbooks"][0]["age_ms"].is_null(), "{doc}");
}
