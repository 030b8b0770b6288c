//! `ward resume`, locks, signals and crashes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::harness::{Scratch, alive, status_step, wait_for};

/// Ten steps in a small DAG. Each appends its id to `journal` and writes
/// `out/<id>` from its inputs, so the final files depend on every step.
const TEN: &str = "\
ward: 1
name: ten
max_parallel: 2
steps:
  - id: s01
    run: mkdir -p out; echo s01 >> journal; echo base > out/s01; sleep 0.02
  - id: s02
    needs: [s01]
    run: echo s02 >> journal; cat out/s01 > out/s02; echo two >> out/s02; sleep 0.02
  - id: s03
    needs: [s01]
    run: echo s03 >> journal; cat out/s01 > out/s03; echo three >> out/s03; sleep 0.02
  - id: s04
    needs: [s02]
    run: echo s04 >> journal; cat out/s02 > out/s04; sleep 0.02
  - id: s05
    needs: [s03]
    run: echo s05 >> journal; cat out/s03 > out/s05; sleep 0.02
  - id: s06
    needs: [s04, s05]
    run: echo s06 >> journal; cat out/s04 out/s05 > out/s06; sleep 0.02
  - id: s07
    needs: [s06]
    cmd: [bash, -c, 'echo s07 >> journal; sort out/s06 > out/s07; sleep 0.02']
  - id: s08
    needs: [s06]
    run: echo s08 >> journal; wc -l < out/s06 > out/s08; sleep 0.02
  - id: s09
    needs: [s07, s08]
    run: echo s09 >> journal; cat out/s07 out/s08 > out/s09; sleep 0.02
  - id: s10
    needs: [s09]
    run: echo s10 >> journal; sha256sum out/s09 | cut -c1-16 > out/s10
";

fn outputs(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir.join("out"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read_to_string(e.path()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn journal_counts(s: &Scratch) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in s.read("journal").lines() {
        *counts.entry(line.to_owned()).or_default() += 1;
    }
    counts
}

fn reference_outputs() -> BTreeMap<String, String> {
    let s = Scratch::new();
    s.write("p.yml", TEN);
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    outputs(s.path())
}

/// Kills ward right after its N-th durable commit, resumes, and checks the
/// rules: all steps end succeeded, steps recorded succeeded before the kill
/// never run again, and the files equal those of an uninterrupted run.
fn crash_after_commit(n: u32, reference: &BTreeMap<String, String>) -> Result<(), String> {
    let s = Scratch::new();
    s.write("p.yml", TEN);
    let crashed = s
        .ward()
        .args(["run", "p.yml"])
        .env("WARD_FAULT_KILL_AFTER_COMMITS", &n.to_string())
        .run_allow_kill();
    if crashed.code == 0 {
        return Err(format!(
            "commit {n}: the run finished before the fault fired"
        ));
    }
    if crashed.code != -1 {
        return Err(format!(
            "commit {n}: exit {} instead of SIGKILL: {}",
            crashed.code, crashed.stderr
        ));
    }
    let before = s.step_states_if_any();
    let done_before: Vec<String> = before
        .iter()
        .filter(|(_, st)| *st == "succeeded")
        .map(|(k, _)| k.clone())
        .collect();
    let journal_before = journal_counts(&s);
    if before.is_empty() {
        // Killed before the run was recorded: nothing to resume, start again.
        s.ward().args(["run", "p.yml"]).run().expect_code(0);
    } else {
        let resumed = s.ward().args(["resume", "--last"]).run();
        if resumed.code != 0 {
            return Err(format!(
                "commit {n}: resume exit {}: {}",
                resumed.code, resumed.stderr
            ));
        }
        let runs = s
            .ward()
            .args(["runs", "--json"])
            .run()
            .expect_code(0)
            .json();
        if runs.as_array().map(Vec::len) != Some(1) {
            return Err(format!("commit {n}: resume created a new run: {runs}"));
        }
    }
    let after = s.step_states();
    if let Some((id, st)) = after.iter().find(|(_, st)| *st != "succeeded") {
        return Err(format!("commit {n}: step {id} ended {st}"));
    }
    let journal = journal_counts(&s);
    for id in &done_before {
        if journal.get(id) != journal_before.get(id) {
            return Err(format!(
                "commit {n}: {id} was recorded succeeded before the kill but ran again"
            ));
        }
    }
    if &outputs(s.path()) != reference {
        return Err(format!(
            "commit {n}: final files differ from an uninterrupted run"
        ));
    }
    Ok(())
}

#[test]
fn kill_dash_nine_at_every_commit_then_resume() {
    let reference = reference_outputs();
    assert_eq!(reference.len(), 10);
    // A 10-step run commits: run created, then one batch per scheduler turn
    // (about 12-16 here) and the end. Cover all of them, plus one past the end.
    let mut fired = 0;
    let mut failures = Vec::new();
    for n in 1..=30 {
        match crash_after_commit(n, &reference) {
            Ok(()) => fired += 1,
            Err(e) if e.contains("finished before the fault fired") => break,
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(fired >= 12, "only {fired} kill points reached");
}

#[test]
fn kill_dash_nine_while_steps_run_then_resume() {
    let reference = reference_outputs();
    let mut failures = Vec::new();
    for delay_ms in [15u64, 40, 70, 100, 130, 160, 200, 250] {
        let s = Scratch::new();
        s.write("p.yml", TEN);
        let mut child = s.ward().args(["run", "p.yml"]).spawn();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let before = s.step_states_if_any();
        let done_before: Vec<String> = before
            .iter()
            .filter(|(_, st)| *st == "succeeded")
            .map(|(k, _)| k.clone())
            .collect();
        let journal_before = journal_counts(&s);
        let code = if before.is_empty() {
            s.ward().args(["run", "p.yml"]).run().code
        } else {
            s.ward().args(["resume", "--last"]).run().code
        };
        if code != 0 {
            failures.push(format!("{delay_ms}ms: exit {code}"));
            continue;
        }
        if let Some((id, st)) = s.step_states().iter().find(|(_, st)| *st != "succeeded") {
            failures.push(format!("{delay_ms}ms: {id} ended {st}"));
        }
        let journal = journal_counts(&s);
        for id in &done_before {
            if journal.get(id) != journal_before.get(id) {
                failures.push(format!("{delay_ms}ms: {id} ran again"));
            }
        }
        if outputs(s.path()) != reference {
            failures.push(format!("{delay_ms}ms: final files differ"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn resume_of_a_failed_run_redoes_only_what_is_needed() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: window\nsteps:\n  - id: stop\n    run: echo stop >> journal\n  - id: dump\n    needs: [stop]\n    run: echo dump >> journal; test -f fixed\n  - id: unrelated\n    run: echo unrelated >> journal\n  - id: start\n    after: [stop, dump]\n    when: always\n    run: echo start >> journal\n",
    );
    let failed = s.ward().args(["run", "p.yml"]).run().expect_code(1);
    assert!(failed.stderr.contains("dump"), "{}", failed.stderr);
    let run_id = s.status(None)["id"].as_str().expect("id").to_owned();
    s.write("fixed", "");
    s.ward().args(["resume", &run_id]).run().expect_code(0);
    let journal: Vec<String> = s.read("journal").lines().map(str::to_owned).collect();
    let (first, second) =
        journal.split_at(journal.iter().position(|l| l == "start").expect("start") + 1);
    assert_eq!(first.len(), 4, "{journal:?}");
    // `start` undid `stop`, so the resume stops again before the dump and
    // starts again after it; `unrelated` is not repeated.
    assert_eq!(second, ["stop", "dump", "start"], "{journal:?}");
    let status = s.status(Some(&run_id));
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["resumes"], 1);
}

#[test]
fn a_failure_after_the_window_closed_does_not_reopen_it() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: after\nsteps:\n  - id: stop\n    run: echo stop >> journal\n  - id: dump\n    needs: [stop]\n    run: echo dump >> journal\n  - id: start\n    after: [stop, dump]\n    when: always\n    run: echo start >> journal\n  - id: snapshot\n    needs: [dump, start]\n    run: echo snapshot >> journal; test -f fixed\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(1);
    s.write("fixed", "");
    s.ward().args(["resume", "--last"]).run().expect_code(0);
    assert_eq!(s.read("journal"), "stop\ndump\nstart\nsnapshot\nsnapshot\n");
}

#[test]
fn resume_refuses_a_changed_playbook_unless_allowed() {
    let s = Scratch::new();
    s.write("p.yml", "ward: 1\nname: chg\nsteps:\n  - id: a\n    cmd: [touch, a]\n  - id: b\n    needs: [a]\n    run: test -f go\n");
    s.ward().args(["run", "p.yml"]).run().expect_code(1);
    s.write("p.yml", "ward: 1\nname: chg\nsteps:\n  - id: a\n    cmd: [touch, a]\n  - id: b\n    needs: [a]\n    run: test -f go || true\n");
    let run = s.ward().args(["resume", "--last"]).run().expect_code(2);
    assert!(run.stderr.contains("`b` changed"), "{}", run.stderr);
    assert!(!run.stderr.contains("`a` changed"), "{}", run.stderr);
    s.ward()
        .args(["resume", "--last", "--allow-changed"])
        .run()
        .expect_code(0);
    let run = s.ward().args(["resume", "--last"]).run().expect_code(0);
    assert!(
        run.stdout.contains("already succeeded at") && run.stdout.contains("nothing was resumed"),
        "{}",
        run.stdout
    );
    let run = s
        .ward()
        .args(["resume", "20990101-000000-dead"])
        .run()
        .expect_code(2);
    assert!(
        run.stderr.contains("no run `20990101-000000-dead`"),
        "{}",
        run.stderr
    );
}

#[test]
fn resume_keeps_the_runs_date() {
    let s = Scratch::new();
    s.write("p.yml", "ward: 1\nname: dated\nsteps:\n  - id: a\n    run: echo {{ ward.date }} >> dates; test -f go\n");
    s.ward()
        .args(["run", "p.yml"])
        .env("WARD_NOW", "2026-11-23T23:59:00")
        .run()
        .expect_code(1);
    s.write("go", "");
    s.ward()
        .args(["resume", "--last"])
        .env("WARD_NOW", "2026-11-24T00:05:00")
        .run()
        .expect_code(0);
    assert_eq!(s.read("dates"), "2026-11-23\n2026-11-23\n");
}

#[test]
fn second_concurrent_run_exits_3_and_names_the_holder() {
    let s = Scratch::new();
    s.write("p.yml", "ward: 1\nname: locked\nsteps:\n  - id: hold\n    run: touch started; while [ ! -f release ]; do sleep 0.02; done\n");
    let mut first = s.ward().args(["run", "p.yml"]).spawn();
    assert!(wait_for(10, || s.path().join("started").exists()));
    let first_id = s.status(None)["id"].as_str().expect("id").to_owned();
    let second = s.ward().args(["run", "p.yml"]).run().expect_code(3);
    assert!(
        second
            .stderr
            .contains("another run holds the lock `locked`"),
        "{}",
        second.stderr
    );
    assert!(second.stderr.contains(&first_id), "{}", second.stderr);
    let resume = s.ward().args(["resume", &first_id]).run().expect_code(3);
    assert!(
        resume.stderr.contains("holds the lock"),
        "{}",
        resume.stderr
    );
    s.write("release", "");
    assert!(first.wait().expect("wait").success());
}

#[test]
fn stale_lock_after_kill_is_reclaimed_and_the_run_shown_crashed() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: stale\nsteps:\n  - id: hold\n    run: echo $$ > step.pid; touch started; while [ ! -f release ]; do sleep 0.02; done; echo done >> journal\n",
    );
    let mut first = s.ward().args(["run", "p.yml"]).spawn();
    assert!(wait_for(10, || s.path().join("started").exists()));
    let first_id = s.status(None)["id"].as_str().expect("id").to_owned();
    first.kill().expect("kill -9");
    first.wait().expect("wait");
    // The step's process outlived ward; a new run must stop it first.
    let step_pid = s.read("step.pid").trim().to_owned();
    assert!(alive(&step_pid));
    std::fs::remove_file(s.path().join("started")).expect("rm");
    s.write("release", "");
    std::thread::sleep(Duration::from_millis(1));
    let second = s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert_eq!(second.stderr, "");
    let crashed = s.status(Some(&first_id));
    assert_eq!(crashed["state"], "crashed");
    assert_eq!(crashed["steps"][0]["state"], "interrupted");
    assert!(
        crashed["message"]
            .as_str()
            .expect("message")
            .contains("ended without recording an end")
    );
    // The crashed run can still be resumed.
    s.ward().args(["resume", &first_id]).run().expect_code(0);
    assert_eq!(s.status(Some(&first_id))["state"], "succeeded");
}

#[test]
fn resume_stops_the_dead_runs_leftover_steps_first() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: leftovers\nsteps:\n  - id: long\n    run: echo $$ >> pids; touch started; while [ ! -f release ]; do sleep 0.02; done\n",
    );
    let mut first = s.ward().args(["run", "p.yml"]).spawn();
    assert!(wait_for(10, || s.path().join("started").exists()));
    first.kill().expect("kill -9");
    first.wait().expect("wait");
    let orphan = s.read("pids").trim().to_owned();
    assert!(alive(&orphan), "the orphan survives ward");
    let mut resumed = s.ward().args(["resume", "--last"]).spawn();
    assert!(wait_for(10, || s.read("pids").lines().count() == 2));
    assert!(
        !alive(&orphan),
        "the orphan was stopped before the step ran again"
    );
    s.write("release", "");
    assert!(resumed.wait().expect("wait").success());
}

fn signal_test(signal: &str, code: i32) {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: sig\nsteps:\n  - id: long\n    run: echo $$ > long.pid; touch started; sleep 60\n  - id: next\n    needs: [long]\n    cmd: [touch, next.ran]\n  - id: restart\n    after: [long]\n    when: always\n    cmd: [touch, restart.ran]\n",
    );
    let mut child = s.ward().args(["run", "p.yml"]).spawn();
    assert!(wait_for(10, || s.path().join("started").exists()));
    let pid = child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-s", signal, &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(code), "{signal}");
    let long_pid = s.read("long.pid").trim().to_owned();
    assert!(wait_for(5, || !alive(&long_pid)), "step process stopped");
    assert!(
        s.path().join("restart.ran").exists(),
        "`when: always` ran after {signal}"
    );
    assert!(!s.path().join("next.ran").exists());
    let status = s.status(None);
    assert_eq!(status["state"], "interrupted");
    let states = s.step_states();
    assert_eq!(states["long"], "interrupted");
    assert_eq!(states["next"], "skipped");
    assert_eq!(states["restart"], "succeeded");
}

#[test]
fn sigterm_stops_children_runs_finalizers_and_exits_143() {
    signal_test("TERM", 143);
}

#[test]
fn sigint_stops_children_runs_finalizers_and_exits_130() {
    signal_test("INT", 130);
}

/// A stop/copy/start window whose copy (a local rsync) leaves its output
/// unflushed: the executor flushes it in the background (recovery rule 6).
const UNFLUSHED: &str = "\
ward: 1
name: unflushed
steps:
  - id: stop
    run: echo stop >> journal
  - id: copy
    needs: [stop]
    action: rsync
    with: { src: data, dest: backup/current }
  - id: start
    after: [stop, copy]
    when: always
    run: echo start >> journal
";

/// Crashes the run at the first commit after which `copy` is recorded
/// succeeded with its flush still pending, in boot `boot-1`.
fn crashed_with_unflushed_copy() -> Scratch {
    for n in 2..12 {
        let s = Scratch::new();
        s.write("p.yml", UNFLUSHED);
        s.write("data/a", "alpha");
        s.write("data/sub/b", "beta");
        let crashed = s
            .ward()
            .args(["run", "p.yml"])
            .env("WARD_BOOT_ID", "boot-1")
            .env("WARD_FAULT_KILL_AFTER_COMMITS", &n.to_string())
            .run_allow_kill();
        assert_eq!(crashed.code, -1, "commit {n}: {}", crashed.stderr);
        let copy = status_step(&s.status(None), "copy");
        if copy["state"] == "succeeded" {
            assert_eq!(copy["unflushed"]["boot_id"], "boot-1", "{copy}");
            return s;
        }
    }
    panic!("no commit left the copy succeeded and unflushed");
}

#[test]
fn unflushed_copy_is_redone_with_its_window_after_a_reboot() {
    let s = crashed_with_unflushed_copy();
    let resumed = s
        .ward()
        .args(["resume", "--last"])
        .env("WARD_BOOT_ID", "boot-2")
        .run()
        .expect_code(0);
    let status = s.status(None);
    assert_eq!(status["state"], "succeeded", "{}", resumed.stderr);
    let copy = status_step(&status, "copy");
    assert_eq!(copy["attempts"], 2, "the copy ran again: {copy}");
    assert!(copy["unflushed"].is_null(), "flushed at the end: {copy}");
    // The copy is inside the stop/start window, so the window ran again.
    assert_eq!(status_step(&status, "stop")["attempts"], 2);
    assert!(s.read("journal").ends_with("stop\nstart\n"));
    assert_eq!(s.read("backup/current/sub/b"), "beta");
}

#[test]
fn unflushed_copy_is_kept_and_flushed_when_the_machine_did_not_restart() {
    let s = crashed_with_unflushed_copy();
    let shown = s.ward().arg("status").run().expect_code(0).stdout;
    assert!(shown.contains("not yet flushed to disk"), "{shown}");
    s.ward()
        .args(["resume", "--last"])
        .env("WARD_BOOT_ID", "boot-1")
        .run()
        .expect_code(0);
    let status = s.status(None);
    assert_eq!(status["state"], "succeeded");
    let copy = status_step(&status, "copy");
    assert_eq!(copy["attempts"], 1, "the copy was kept: {copy}");
    assert!(copy["unflushed"].is_null(), "the resume flushed it: {copy}");
    assert_eq!(status_step(&status, "stop")["attempts"], 1);
}

#[test]
fn a_finished_run_leaves_nothing_unflushed() {
    let s = Scratch::new();
    s.write("p.yml", UNFLUSHED);
    s.write("data/a", "alpha");
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let status = s.status(None);
    assert!(
        status_step(&status, "copy")["unflushed"].is_null(),
        "{status}"
    );
    assert_eq!(s.read("backup/current/a"), "alpha");
}

#[test]
fn output_removed_by_a_later_step_before_its_flush_is_not_an_error() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: staging\nsteps:\n  - id: copy\n    action: rsync\n    with: { src: data, dest: staging/tree }\n  - id: cleanup\n    needs: [copy]\n    cmd: [rm, -rf, staging]\n",
    );
    s.write("data/a", "alpha");
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert!(!s.path().join("staging").exists());
    assert!(status_step(&s.status(None), "copy")["unflushed"].is_null());
}

#[test]
fn a_compensating_copy_is_flushed_before_the_run_ends() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: undo\nsteps:\n  - id: change\n    cmd: [touch, changed]\n    compensate: put-back\n  - id: put-back\n    action: rsync\n    with: { src: saved, dest: restored }\n  - id: fail\n    needs: [change]\n    cmd: [\"false\"]\n",
    );
    s.write("saved/a", "alpha");
    s.ward().args(["run", "p.yml"]).run().expect_code(1);
    let status = s.status(None);
    let undo = status_step(&status, "put-back");
    assert_eq!(undo["state"], "succeeded", "{undo}");
    assert!(undo["unflushed"].is_null(), "{undo}");
    assert_eq!(s.read("restored/a"), "alpha");
}
