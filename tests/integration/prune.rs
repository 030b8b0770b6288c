//! `history:` and `ward prune`: real runs of tiny playbooks, aged by
//! moving their recorded times back in the state database; then exactly
//! which runs and which log folders remain.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::harness::{Scratch, wait_for};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// A playbook `name` whose one step succeeds when the file `ok` exists.
fn gated(s: &Scratch, file: &str, name: &str, history: &str) -> PathBuf {
    s.write(
        file,
        &format!(
            "ward: 1\nname: {name}\n{history}steps:\n  - id: gate\n    run: echo out; test -e ok\n"
        ),
    )
}

/// Runs `file` once, succeeding or failing, and returns the run's id.
fn run_once(s: &Scratch, file: &Path, succeed: bool) -> String {
    let ok = s.path().join("ok");
    if succeed {
        std::fs::write(&ok, "").expect("ok");
    } else {
        let _ = std::fs::remove_file(&ok);
    }
    s.ward()
        .arg("run")
        .arg(file)
        .run()
        .expect_code(if succeed { 0 } else { 1 });
    let runs = s.ward().args(["runs", "--json", "--limit", "1"]).run();
    runs.expect_code(0).json()[0]["id"]
        .as_str()
        .expect("run id")
        .to_owned()
}

/// Moves run `id` back to `days` ago (start and end).
fn age(s: &Scratch, id: &str, days: i64) {
    let conn = rusqlite::Connection::open(s.state()).expect("sqlite");
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    let at = now_ms() - days * DAY_MS;
    let n = conn
        .execute(
            "UPDATE runs SET started_at = ?2, finished_at = CASE WHEN finished_at IS NULL \
             THEN NULL ELSE ?2 + 1000 END WHERE id = ?1",
            rusqlite::params![id, at],
        )
        .expect("age");
    assert_eq!(n, 1, "no run {id}");
}

/// Every recorded run id.
fn recorded(s: &Scratch) -> BTreeSet<String> {
    let conn = rusqlite::Connection::open(s.state()).expect("sqlite");
    let mut q = conn.prepare("SELECT id FROM runs").expect("query");
    q.query_map([], |r| r.get::<_, String>(0))
        .expect("ids")
        .collect::<Result<_, _>>()
        .expect("ids")
}

/// Rows of any table that still refer to a run not in `runs`.
fn dangling_rows(s: &Scratch) -> i64 {
    let conn = rusqlite::Connection::open(s.state()).expect("sqlite");
    ["steps", "attempts", "events"]
        .iter()
        .map(|t| {
            conn.query_row(
                &format!("SELECT count(*) FROM {t} WHERE run_id NOT IN (SELECT id FROM runs)"),
                [],
                |r| r.get::<_, i64>(0),
            )
            .expect("count")
        })
        .sum()
}

fn logs(s: &Scratch) -> PathBuf {
    s.state().parent().expect("state folder").join("logs")
}

/// Names in the logs folder.
fn log_folders(s: &Scratch) -> BTreeSet<String> {
    std::fs::read_dir(logs(s))
        .expect("logs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).clone()).collect()
}

/// The ids of a `ward prune --json` report's runs and orphan folders.
fn listed(report: &serde_json::Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let ids = |key: &str, field: &str| -> BTreeSet<String> {
        report[key]
            .as_array()
            .expect(key)
            .iter()
            .map(|r| r[field].as_str().expect(field).to_owned())
            .collect()
    };
    (ids("runs", "id"), ids("orphan_logs", "run_id"))
}

#[test]
fn prune_keeps_what_it_promises_and_dry_run_removes_nothing() {
    let s = Scratch::new();
    let a = gated(
        &s,
        "a.yml",
        "a",
        "history: { keep_days: 30, keep_runs: 2 }\n",
    );
    let b = gated(&s, "b.yml", "b", "");
    // (A day keeps every run while they are made; then they are aged.)
    let e = gated(
        &s,
        "e.yml",
        "e",
        "history: { keep_days: 1, keep_runs: 0 }\n",
    );

    // a: the newest two are recent; the last failure (a2) is old.
    let plan_a = [
        (false, 200),
        (true, 190),
        (false, 180),
        (true, 170),
        (true, 160),
        (true, 10),
        (true, 1),
    ];
    let a_ids: Vec<String> = plan_a.iter().map(|&(ok, _)| run_once(&s, &a, ok)).collect();
    // b: no `history:`, so 90 days / 50 runs: three old runs all stay.
    let b_ids: Vec<String> = (0..3).map(|_| run_once(&s, &b, true)).collect();
    // e: keeps nothing by age or count; the last success (e1) is old.
    let plan_e = [
        (true, 300),
        (true, 290),
        (false, 280),
        (false, 270),
        (false, 260),
    ];
    let e_ids: Vec<String> = plan_e.iter().map(|&(ok, _)| run_once(&s, &e, ok)).collect();
    for (id, (_, days)) in a_ids.iter().zip(plan_a) {
        age(&s, id, days);
    }
    for id in &b_ids {
        age(&s, id, 200);
    }
    for (id, (_, days)) in e_ids.iter().zip(plan_e) {
        age(&s, id, days);
    }

    // Logs left by a run the state no longer holds (as after a crash
    // between a prune's commit and its log removal).
    let orphan = logs(&s).join("20250101-000000-abcd");
    std::fs::create_dir(&orphan).expect("orphan");
    std::fs::write(orphan.join("gate.1.log"), "old output\n").expect("orphan log");

    let all: BTreeSet<String> = recorded(&s);
    assert_eq!(all.len(), 15);
    let folders_before = log_folders(&s);

    // a: a0, a3, a4 go. a5, a6: newest two and recent; a2: the last
    // failure and newest unfinished run; a1: the run before it that ran.
    // e: e0 and e2 go. e4: the newest (and last failure); e3: the run
    // before it; e1: the last success.
    let gone = set(&[&a_ids[0], &a_ids[3], &a_ids[4], &e_ids[0], &e_ids[2]]);

    let dry = s
        .ward()
        .args(["prune", "--dry-run", "--json"])
        .run()
        .expect_code(0)
        .json();
    assert_eq!(dry["dry_run"], true);
    // Times as every read command gives them: RFC 3339 with an offset.
    for run in dry["runs"].as_array().expect("runs") {
        let at = run["started_at"].as_str().expect("started_at is text");
        assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    }
    let (dry_runs, dry_orphans) = listed(&dry);
    assert_eq!(dry_runs, gone);
    assert_eq!(dry_orphans, set(&[&"20250101-000000-abcd".to_owned()]));
    assert_eq!(recorded(&s), all, "a dry run removes no run");
    assert_eq!(log_folders(&s), folders_before, "a dry run removes no log");
    let human_dry = s.ward().args(["prune", "--dry-run"]).run().expect_code(0);
    for id in &gone {
        assert!(
            human_dry
                .stdout
                .contains(&format!("would remove run {id} ")),
            "{}",
            human_dry.stdout
        );
    }

    let done = s
        .ward()
        .args(["prune", "--json"])
        .run()
        .expect_code(0)
        .json();
    assert_eq!(done["dry_run"], false);
    assert_eq!(listed(&done), listed(&dry), "the dry run listed what goes");
    assert_eq!(done["totals"], dry["totals"]);
    // Five runs of one log each, and the orphan's log.
    assert_eq!(done["totals"]["runs"], 5);
    assert_eq!(done["totals"]["log_files"], 6);
    assert!(done["totals"]["bytes"].as_u64().expect("bytes") > 0);

    let kept: BTreeSet<String> = all.difference(&gone).cloned().collect();
    assert_eq!(recorded(&s), kept);
    assert_eq!(dangling_rows(&s), 0, "every row of a removed run goes");
    let mut folders = folders_before.clone();
    folders.retain(|f| !gone.contains(f) && f != "20250101-000000-abcd");
    assert_eq!(log_folders(&s), folders);
    assert_eq!(folders, kept, "each kept run keeps its logs");

    // The failed run to resume is still whole.
    let e_status = s.status(Some(&e_ids[4]));
    assert_eq!(e_status["state"], "failed", "{e_status}");
    assert_eq!(e_status["steps"][0]["state"], "failed", "{e_status}");

    // A second prune finds nothing more.
    let again = s.ward().args(["prune"]).run().expect_code(0);
    assert_eq!(again.stdout.trim(), "nothing removed");
}

#[test]
fn the_policy_a_run_recorded_applies_without_the_playbook_and_after_each_run() {
    let s = Scratch::new();
    let p = gated(
        &s,
        "p.yml",
        "p",
        "history: { keep_days: 1, keep_runs: 1 }\n",
    );
    let ids: Vec<String> = (0..4).map(|_| run_once(&s, &p, true)).collect();
    assert_eq!(recorded(&s).len(), 4, "a day keeps them while they are new");
    // `ward prune` applies the recorded policy; the playbook is gone.
    std::fs::remove_file(&p).expect("rm p.yml");
    for id in &ids {
        age(&s, id, 10);
    }
    let out = s.ward().args(["prune"]).run().expect_code(0);
    assert!(
        out.stdout.contains("removed 3 runs and 3 log files"),
        "{}",
        out.stdout
    );
    assert_eq!(recorded(&s), set(&[&ids[3]]));
    // A new policy is recorded by the next run and applied at its end,
    // which says so at a terminal (here: --progress).
    gated(
        &s,
        "p.yml",
        "p",
        "history: { keep_days: 0, keep_runs: 0 }\n",
    );
    std::fs::write(s.path().join("ok"), "").expect("ok");
    let run = s
        .ward()
        .args(["run", "--progress", "p.yml"])
        .run()
        .expect_code(0);
    assert!(
        run.stdout.contains("history: removed 1 run and 1 log file"),
        "{}",
        run.stdout
    );
    assert!(!recorded(&s).contains(&ids[3]));
    assert!(!logs(&s).join(&ids[3]).exists());
    // Without --progress (as under cron) nothing is said.
    let quiet = s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert_eq!(quiet.stdout, "");
    assert_eq!(recorded(&s).len(), 1, "only the newest run of p stays");
}

#[test]
fn a_running_run_and_a_starting_run_keep_their_logs() {
    let s = Scratch::new();
    // Two playbooks of one name under different locks: a run of c1 can
    // be older than finished runs of c2 and still running.
    let history = "history: { keep_days: 1, keep_runs: 0 }\n";
    s.write(
        "c1.yml",
        &format!(
            "ward: 1\nname: c\nlock: c1\n{history}steps:\n  - id: wait\n    run: \
             'echo started; while [ ! -e release ]; do sleep 0.05; done'\n"
        ),
    );
    s.write(
        "c2.yml",
        &format!("ward: 1\nname: c\nlock: c2\n{history}steps:\n  - id: a\n    run: 'true'\n"),
    );
    // d waits in its precondition: logs written, run not yet recorded.
    s.write(
        "d.yml",
        "ward: 1\nname: d\npreconditions:\n  - command: [sh, -c, 'while [ ! -e go ]; do sleep \
         0.05; done; true']\nsteps:\n  - id: a\n    run: echo done\n",
    );
    let mut long = s.ward().args(["run", "c1.yml"]).spawn();
    let running = || {
        let runs = s.ward().args(["runs", "--json", "--playbook", "c"]).run();
        // Until the first run creates the state, there is none to read.
        (runs.code == 0)
            .then(|| runs.json())?
            .as_array()
            .and_then(|a| a.iter().find(|r| r["state"] == "running").cloned())
    };
    assert!(wait_for(30, || running().is_some()), "c1 never started");
    let long_id = running().expect("running")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let long_log = logs(&s).join(&long_id).join("wait.1.log");
    assert!(wait_for(30, || long_log.exists()), "no log for {long_id}");

    for _ in 0..3 {
        s.ward().args(["run", "c2.yml"]).run().expect_code(0);
    }

    let mut starting = s.ward().args(["run", "d.yml"]).spawn();
    let d_folder = || {
        log_folders(&s).into_iter().find(|f| {
            !recorded(&s).contains(f) && logs(&s).join(f).join("preconditions.log").exists()
        })
    };
    assert!(
        wait_for(30, || d_folder().is_some()),
        "d never wrote its log"
    );
    let d_id = d_folder().expect("d");

    // Every run 200 days back, in the order they ran.
    let conn = rusqlite::Connection::open(s.state()).expect("sqlite");
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    conn.execute(
        "UPDATE runs SET started_at = started_at - ?1, finished_at = finished_at - ?1",
        [200 * DAY_MS],
    )
    .expect("age");
    drop(conn);
    let report = s
        .ward()
        .args(["prune", "--json"])
        .run()
        .expect_code(0)
        .json();
    let (runs, orphans) = listed(&report);
    assert!(!runs.contains(&long_id), "{report}");
    assert!(orphans.is_empty(), "{report}");
    assert!(long_log.exists(), "the running run's log was removed");
    assert!(
        logs(&s).join(&d_id).join("preconditions.log").exists(),
        "the starting run's log was removed"
    );
    // Of c2's three finished runs, the newest stays.
    assert_eq!(runs.len(), 2, "{report}");

    std::fs::write(s.path().join("go"), "").expect("go");
    std::fs::write(s.path().join("release"), "").expect("release");
    assert!(starting.wait().expect("d").success());
    assert!(long.wait().expect("c1").success());
    assert!(recorded(&s).contains(&d_id));
    assert!(logs(&s).join(&d_id).join("a.1.log").exists());
}

#[test]
fn symlinks_and_foreign_names_in_the_logs_folder_are_never_followed_or_removed() {
    let s = Scratch::new();
    let p = gated(&s, "p.yml", "p", "");
    run_once(&s, &p, true);
    let outside = s.path().join("outside");
    std::fs::create_dir(&outside).expect("outside");
    std::fs::write(outside.join("gate.1.log"), "precious\n").expect("victim");
    std::fs::write(outside.join("file.log"), "precious\n").expect("victim");
    // A link named like a run's folder, to a folder outside.
    std::os::unix::fs::symlink(&outside, logs(&s).join("20250101-000000-0bad")).expect("link");
    // An orphan folder holding a link to a file outside, and a log.
    let orphan = logs(&s).join("20250101-000000-0ddd");
    std::fs::create_dir(&orphan).expect("orphan");
    std::os::unix::fs::symlink(outside.join("file.log"), orphan.join("evil.log")).expect("link");
    std::fs::write(orphan.join("gate.1.log"), "x\n").expect("log");
    // A folder not named as ward names runs.
    let foreign = logs(&s).join("notes");
    std::fs::create_dir(&foreign).expect("foreign");
    std::fs::write(foreign.join("a.log"), "mine\n").expect("foreign file");

    let out = s.ward().args(["prune"]).run().expect_code(0);
    assert!(out.stderr.contains("left alone"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(outside.join("gate.1.log")).expect("victim"),
        "precious\n"
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("file.log")).expect("victim"),
        "precious\n"
    );
    assert!(logs(&s).join("20250101-000000-0bad").is_symlink());
    assert!(orphan.join("evil.log").is_symlink(), "the link stays");
    assert!(!orphan.join("gate.1.log").exists(), "the orphan's log goes");
    assert!(foreign.join("a.log").exists());
    // What is left alone is warned about again, but not listed as removed.
    let again = s.ward().args(["prune"]).run().expect_code(0);
    assert_eq!(again.stdout.trim(), "nothing removed");
    assert!(again.stderr.contains("evil.log"), "{}", again.stderr);
}

#[test]
fn prune_of_an_unknown_playbook_says_so() {
    let s = Scratch::new();
    let p = gated(&s, "p.yml", "p", "");
    run_once(&s, &p, true);
    let out = s
        .ward()
        .args(["prune", "--playbook", "nope"])
        .run()
        .expect_code(2);
    assert!(
        out.stderr.contains("no run of playbook `nope`"),
        "{}",
        out.stderr
    );
    let out = s
        .ward()
        .args(["prune", "--playbook", "p"])
        .run()
        .expect_code(0);
    assert_eq!(out.stdout.trim(), "nothing removed");
}

#[test]
fn a_prune_that_fails_after_a_run_is_a_warning_and_the_exit_code_stands() {
    let s = Scratch::new();
    let p = gated(&s, "p.yml", "p", "");
    run_once(&s, &p, true);
    // A FIFO where a lock file of another lock belongs: ward refuses to
    // read it, so it cannot tell which runs are starting, and prunes nothing.
    let fifo = s
        .state()
        .parent()
        .expect("state folder")
        .join("locks/other.lock");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert!(
        run.stderr
            .contains("warning: the history of playbook `p` was not pruned"),
        "{}",
        run.stderr
    );
    std::fs::remove_file(s.path().join("ok")).expect("rm ok");
    let failed = s.ward().args(["run", "p.yml"]).run().expect_code(1);
    assert!(
        failed.stderr.contains("was not pruned"),
        "{}",
        failed.stderr
    );
    // `ward prune` itself says so and fails (the state cannot be read).
    s.ward().args(["prune"]).run().expect_code(4);
    std::fs::remove_file(&fifo).expect("rm fifo");
    s.ward().args(["prune"]).run().expect_code(0);
}

#[test]
fn a_second_database_in_the_folder_keeps_its_logs_and_a_night_prints_nothing() {
    let s = Scratch::new();
    let p = gated(&s, "p.yml", "p", "");
    // Runs recorded in the harness's database (its logs in the shared logs/).
    let mine = run_once(&s, &p, true);
    let other_db = s.state().parent().expect("state folder").join("other.db");
    s.ward()
        .arg("run")
        .arg("--state")
        .arg(&other_db)
        .arg(&p)
        .run()
        .expect_code(0);
    // A file someone left in a run folder of the logs.
    let foreign = logs(&s).join(&mine).join("notes.txt");
    std::fs::write(&foreign, "mine\n").expect("notes");

    // A plain run (no terminal, as under cron) prunes and sweeps: it says
    // nothing, and removes none of the other database's logs.
    let night = s.ward().arg("run").arg(&p).run().expect_code(0);
    assert_eq!(night.stdout, "", "{}", night.stdout);
    assert_eq!(night.stderr, "", "{}", night.stderr);
    let all_logs = log_folders(&s);
    assert!(all_logs.contains(&mine), "{all_logs:?}");
    assert_eq!(all_logs.len(), 3, "each run's logs stay: {all_logs:?}");

    // `ward prune` of either database says why it sweeps nothing.
    for db in [s.state(), other_db.clone()] {
        let out = s
            .ward()
            .arg("prune")
            .arg("--state")
            .arg(&db)
            .run()
            .expect_code(0);
        assert!(
            out.stdout
                .contains("note: log folders of runs not recorded in"),
            "{}",
            out.stdout
        );
        assert_eq!(log_folders(&s), all_logs);
    }
}
