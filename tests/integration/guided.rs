//! Guided restores: `confirm:` answered at a real pseudo-terminal, refused
//! without one, `--yes` recorded; `restore:` (snapshot choice, guards,
//! marker) and the lock a backup and a restore share.

use std::io::{Read, Write};
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::harness::Scratch;

/// Runs `cmd` with stdin, stdout and stderr on a pseudo-terminal; each
/// time the output so far contains `answers[n].0` (after the previous
/// answer), types `answers[n].1` and Enter. Returns the exit code and all
/// output.
pub(crate) fn run_answering(mut cmd: Command, answers: &[(&str, &str)]) -> (i32, String) {
    let (master, slave) = crate::progress::open_pty();
    cmd.stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave);
    let mut child = cmd.spawn().expect("ward starts");
    drop(cmd);
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut writer = master.try_clone().expect("dup master");
    let reader = {
        let seen = seen.clone();
        let mut master = master;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match master.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.lock().expect("lock").extend_from_slice(&buf[..n]),
                }
            }
        })
    };
    let mut from = 0;
    for (trigger, reply) in answers {
        let found = crate::harness::wait_for(60, || {
            let all = seen.lock().expect("lock");
            let text = String::from_utf8_lossy(&all[from.min(all.len())..]).into_owned();
            text.find(trigger)
                .map(|at| from += at + trigger.len())
                .is_some()
        });
        if !found {
            break;
        }
        writer
            .write_all(format!("{reply}\r").as_bytes())
            .expect("type");
    }
    let status = child.wait().expect("wait");
    drop(writer);
    reader.join().expect("reader");
    let out = seen.lock().expect("lock").clone();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out).into_owned(),
    )
}

/// Event messages of `kind` recorded for run `run`.
pub(crate) fn events(s: &Scratch, run: &str, kind: &str) -> Vec<String> {
    let db = rusqlite::Connection::open(s.state()).expect("open state");
    let mut stmt = db
        .prepare("SELECT message FROM events WHERE run_id = ?1 AND kind = ?2 ORDER BY rowid")
        .expect("prepare");
    stmt.query_map(rusqlite::params![run, kind], |r| r.get::<_, String>(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

fn last_run_id(s: &Scratch) -> String {
    s.status(None)["id"].as_str().expect("run id").to_owned()
}

const WIPE: &str = "\
ward: 1
name: wipe-all
vars:
  what: the database
steps:
  - id: check
    run: \"echo checked > checked\"
  - id: wipe
    needs: check
    confirm: \"Replace {{ what }} with the dump?\"
    run: \"echo wiped > wiped\"
  - id: after
    needs: wipe
    run: \"echo after > after\"
";

#[test]
fn the_right_word_at_a_terminal_lets_the_step_run() {
    let s = Scratch::new();
    let book = s.write("wipe.yml", WIPE);
    let cmd = s.ward().arg("run").arg(&book).command();
    let (code, out) = run_answering(cmd, &[("to go on", "wipe-all")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Replace the database with the dump?"), "{out}");
    assert!(out.contains("type `wipe-all`"), "{out}");
    // What the step will do is shown with the question.
    assert!(
        out.contains("step `wipe` does: echo wiped > wiped"),
        "{out}"
    );
    // The question came after the step before it: that one had run.
    assert_eq!(s.read("checked").trim(), "checked");
    assert_eq!(s.read("wiped").trim(), "wiped");
    assert_eq!(s.read("after").trim(), "after");
    let id = last_run_id(&s);
    let notes = events(&s, &id, "confirmed");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("step `wipe`"), "{notes:?}");
    assert!(notes[0].contains("typed `wipe-all`"), "{notes:?}");
    assert!(notes[0].contains("uid"), "who: {notes:?}");
}

#[test]
fn a_wrong_word_fails_the_step_and_nothing_after_it_runs() {
    let s = Scratch::new();
    let book = s.write("wipe.yml", WIPE);
    let cmd = s.ward().arg("run").arg(&book).command();
    let (code, out) = run_answering(cmd, &[("to go on", "yes")]);
    assert_eq!(code, 8, "{out}");
    assert_eq!(s.read("checked").trim(), "checked");
    assert!(!s.path().join("wiped").exists());
    assert!(!s.path().join("after").exists());
    let states = s.step_states();
    assert_eq!(states["wipe"], "failed");
    assert_eq!(states["after"], "skipped");
    let id = last_run_id(&s);
    let notes = events(&s, &id, "not-confirmed");
    assert!(
        notes[0].contains("`yes` was typed, not `wipe-all`"),
        "{notes:?}"
    );
}

#[test]
fn without_a_terminal_and_without_yes_nothing_runs_or_is_recorded() {
    let s = Scratch::new();
    let book = s.write("wipe.yml", WIPE);
    let r = s.ward().arg("run").arg(&book).run().expect_code(8);
    assert!(
        r.stderr.contains("step `wipe` must be confirmed"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--yes"), "{}", r.stderr);
    // Not even the step before it ran, and no run was recorded.
    assert!(!s.path().join("checked").exists());
    assert!(s.step_states_if_any().is_empty());
}

#[test]
fn yes_is_recorded_with_who_gave_it() {
    let s = Scratch::new();
    let book = s.write("wipe.yml", WIPE);
    s.ward()
        .args(["run", "--yes"])
        .arg(&book)
        .env("SUDO_USER", "alice")
        .run()
        .expect_code(0);
    assert_eq!(s.read("after").trim(), "after");
    let id = last_run_id(&s);
    let notes = events(&s, &id, "confirmed");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("with --yes"), "{notes:?}");
    assert!(notes[0].contains("via sudo by alice"), "{notes:?}");
    assert!(notes[0].contains("step `wipe`"), "{notes:?}");
}

#[test]
fn a_resume_asks_again_only_for_steps_not_yet_confirmed() {
    let s = Scratch::new();
    // `wipe` fails once after it was confirmed: the resume does not ask
    // again for it (it had an attempt), but for `second` it must.
    let book = s.write(
        "wipe.yml",
        "ward: 1\nname: wipe-all\nsteps:\n  - id: wipe\n    confirm: Wipe?\n    run: \"test -e go\"\n  - id: second\n    needs: wipe\n    confirm: { prompt: Second?, word: again }\n    run: \"echo second > second\"\n",
    );
    s.ward()
        .args(["run", "--yes"])
        .arg(&book)
        .run()
        .expect_code(1);
    s.write("go", "");
    // No terminal, no --yes: `second` still needs its answer.
    let r = s.ward().args(["resume", "--last"]).run().expect_code(8);
    assert!(r.stderr.contains("`second`"), "{}", r.stderr);
    assert!(!r.stderr.contains("`wipe`"), "{}", r.stderr);
    let cmd = s.ward().args(["resume", "--last"]).command();
    let (code, out) = run_answering(cmd, &[("to go on", "again")]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("Wipe?"), "{out}");
    assert!(out.contains("Second?"), "{out}");
    assert_eq!(s.read("second").trim(), "second");
}

#[test]
fn confirm_is_checked_like_every_key() {
    let s = Scratch::new();
    let book = s.write(
        "bad.yml",
        "ward: 1\nname: b\nsteps:\n  - id: a\n    confirm: { word: x }\n    run: \"true\"\n  - id: c\n    confirm: { prompt: \"{{ nope }}\", wrod: x }\n    run: \"true\"\n",
    );
    let r = s.ward().arg("validate").arg(&book).run().expect_code(2);
    assert!(r.stderr.contains("bad.yml:5:14"), "{}", r.stderr);
    assert!(r.stderr.contains("has no `prompt`"), "{}", r.stderr);
    assert!(r.stderr.contains("unknown key `wrod`"), "{}", r.stderr);
    assert!(r.stderr.contains("nope"), "{}", r.stderr);
    let book = s.write(
        "bad.yml",
        "ward: 1\nname: b\nsteps:\n  - id: a\n    compensate: undo\n    run: \"true\"\n  - id: undo\n    confirm: Undo?\n    run: \"true\"\n",
    );
    let r = s.ward().arg("validate").arg(&book).run().expect_code(2);
    assert!(r.stderr.contains("bad.yml:8:14"), "{}", r.stderr);
    assert!(r.stderr.contains("compensation step"), "{}", r.stderr);
    // `--snapshot` and `--override` are for restore playbooks only.
    let plain = s.write(
        "plain.yml",
        "ward: 1\nname: p\nsteps:\n  - id: a\n    run: \"true\"\n",
    );
    let r = s
        .ward()
        .args(["plan", "--snapshot", "latest"])
        .arg(&plain)
        .run()
        .expect_code(2);
    assert!(r.stderr.contains("`restore:`"), "{}", r.stderr);
    let r = s
        .ward()
        .args(["run", "--override", "host"])
        .arg(&plain)
        .run()
        .expect_code(2);
    assert!(r.stderr.contains("`restore:`"), "{}", r.stderr);
}

/// A backup of a small "system": its data file goes into a snapshot
/// (`scope: full`), then its "service" is started unless a restore is
/// unfinished. It shares the lock `sys` with the restore.
const BACKUP: &str = "\
ward: 1
name: nightly
lock: sys
vars:
  snap_name: \"{{ ward.date }}\"
  marker: work/restore-in-progress
preconditions:
  - path_absent: \"{{ marker }}\"
steps:
  - id: data
    run: \"mkdir -p current && rm -f current/data && echo {{ snap_name }} > current/data\"
  - id: snap
    needs: data
    action: snapshot.hardlink
    with: { src: current, dir: snaps, name: \"{{ snap_name }}\", scope: full }
  - id: verify
    needs: snap
    action: verify
    with: { path: \"snaps/{{ snap_name }}\" }
";

/// Restores the data file from the chosen snapshot; the `put-back` step
/// asks first; `finish` fails while `fail-finish` exists; `wait` waits
/// for a file `go` when `hold` exists.
const RESTORE: &str = "\
ward: 1
name: restore-sys
lock: sys
vars:
  snaps: snaps
  from: \"{{ snaps }}/latest\"
  marker: work/restore-in-progress
restore:
  snapshots: \"{{ snaps }}\"
  snapshot_var: from
  marker: \"{{ marker }}\"
  guards: { host: true, playbook: [nightly], scope: full }
steps:
  - id: wait
    run: \"if [ -e hold ]; then touch waiting; while [ ! -e go ]; do sleep 0.05; done; fi\"
  - id: put-back
    needs: wait
    confirm: \"Replace the data with {{ from }}?\"
    run: \"cp '{{ from }}/data' restored && echo '{{ from }}' > restored-from\"
  - id: finish
    needs: put-back
    run: \"test ! -e fail-finish\"
  - id: start
    needs: finish
    action: service.start
    with: { start: [bash, -c, \"echo started >> started\"], blocked_by: \"{{ marker }}\" }
";

/// Two snapshots, `2026-11-20` (older) and `2026-11-21`.
fn system() -> (Scratch, std::path::PathBuf, std::path::PathBuf) {
    let s = Scratch::new();
    let backup = s.write("backup.yml", BACKUP);
    let restore = s.write("restore.yml", RESTORE);
    for day in ["2026-11-20", "2026-11-21"] {
        s.ward()
            .args(["run", "--var", &format!("snap_name={day}")])
            .arg(&backup)
            .run()
            .expect_code(0);
    }
    (s, backup, restore)
}

fn restored(s: &Scratch) -> String {
    s.read("restored").trim().to_owned()
}

#[test]
fn snapshot_forms_choose_what_is_restored_and_the_choice_is_recorded() {
    let (s, _, restore) = system();
    let run = |snapshot: &str| {
        let _ = std::fs::remove_file(s.path().join("restored"));
        s.ward()
            .args(["run", "--yes", "--snapshot", snapshot])
            .arg(&restore)
            .run()
    };
    run("latest").expect_code(0);
    assert_eq!(restored(&s), "2026-11-21");
    run("2026-11-20").expect_code(0);
    assert_eq!(restored(&s), "2026-11-20");
    run("2026-11-21").expect_code(0);
    assert_eq!(restored(&s), "2026-11-21");
    let path = s.path().join("snaps/2026-11-20");
    run(&path.display().to_string()).expect_code(0);
    assert_eq!(restored(&s), "2026-11-20");
    let id = last_run_id(&s);
    let chosen = events(&s, &id, "snapshot-chosen");
    assert!(chosen[0].contains("2026-11-20"), "{chosen:?}");
    assert!(chosen[0].contains("verified"), "{chosen:?}");
    assert!(chosen[0].contains("scope full"), "{chosen:?}");
    // Without --snapshot and without a terminal: the var's default (latest).
    s.ward()
        .args(["run", "--yes"])
        .arg(&restore)
        .run()
        .expect_code(0);
    assert_eq!(restored(&s), "2026-11-21");
    // Nothing matches: a usage error, nothing run.
    let _ = std::fs::remove_file(s.path().join("restored"));
    let r = run("2025-01-01").expect_code(2);
    assert!(r.stderr.contains("no snapshot matches"), "{}", r.stderr);
    assert!(r.stderr.contains("2026-11-20"), "{}", r.stderr);
    let r = run(&s.path().join("current").display().to_string()).expect_code(2);
    assert!(r.stderr.contains("no ward manifest"), "{}", r.stderr);
    assert!(!s.path().join("restored").exists());
}

#[test]
fn at_a_terminal_the_operator_picks_the_snapshot_from_a_list() {
    let (s, _, restore) = system();
    let cmd = s.ward().arg("run").arg(&restore).command();
    let (code, out) = run_answering(
        cmd,
        &[
            ("restore which one? [1-2]: ", "2"),
            ("to go on", "restore-sys"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    // Newest first, each with its date, size, files, verification and scope.
    let first = out.find("1) 2026-11-21").expect("listed first");
    let second = out.find("2) 2026-11-20").expect("listed second");
    assert!(first < second, "{out}");
    assert!(out.contains("verified  scope full"), "{out}");
    assert!(out.contains("files"), "{out}");
    // The question shows what will be restored.
    assert!(out.contains("snapshot:  "), "{out}");
    assert!(out.contains("by playbook nightly"), "{out}");
    assert_eq!(restored(&s), "2026-11-20");
}

/// Runs `ward` in a UTS namespace of its own whose host name is `name`.
fn as_host(s: &Scratch, name: &str) -> crate::harness::Ward {
    let script = format!("hostname {name} && exec \"$0\" \"$@\"");
    s.ward_via(&["unshare", "--uts", "--", "sh", "-c", &script])
}

#[test]
fn each_guard_refuses_a_mismatch_unless_overridden_and_the_override_is_recorded() {
    let (s, backup, _) = system();
    // A snapshot made on another host.
    as_host(&s, "elsewhere")
        .args(["run", "--var", "snap_name=2026-11-22"])
        .arg(&backup)
        .run()
        .expect_code(0);
    let restore = |text: &str| s.write("restore.yml", text);
    let run = |extra: &[&str]| {
        let _ = std::fs::remove_file(s.path().join("restored"));
        s.ward()
            .args(["run", "--yes"])
            .args(extra)
            .arg(s.path().join("restore.yml"))
            .run()
    };
    restore(RESTORE);
    let r = run(&["--snapshot", "2026-11-22"]).expect_code(9);
    assert!(r.stderr.contains("guard `host`"), "{}", r.stderr);
    assert!(r.stderr.contains("host `elsewhere`"), "{}", r.stderr);
    assert!(r.stderr.contains("--override host"), "{}", r.stderr);
    assert!(!s.path().join("restored").exists());
    run(&["--snapshot", "2026-11-22", "--override", "host"]).expect_code(0);
    assert_eq!(restored(&s), "2026-11-22");
    let notes = events(&s, &last_run_id(&s), "guard-overridden");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("guard `host`"), "{notes:?}");
    assert!(notes[0].contains("uid"), "{notes:?}");

    restore(&RESTORE.replace("playbook: [nightly]", "playbook: [weekly]"));
    let r = run(&["--snapshot", "2026-11-21"]).expect_code(9);
    assert!(r.stderr.contains("guard `playbook`"), "{}", r.stderr);
    assert!(r.stderr.contains("playbook `nightly`"), "{}", r.stderr);
    run(&["--snapshot", "2026-11-21", "--override", "playbook"]).expect_code(0);
    assert_eq!(events(&s, &last_run_id(&s), "guard-overridden").len(), 1);

    restore(&RESTORE.replace("scope: full", "scope: gold-only"));
    let r = run(&["--snapshot", "2026-11-21"]).expect_code(9);
    assert!(r.stderr.contains("guard `scope`"), "{}", r.stderr);
    assert!(r.stderr.contains("scope `full`"), "{}", r.stderr);
    run(&["--snapshot", "2026-11-21", "--override", "scope"]).expect_code(0);

    // `format`: the default snapshot is no ward snapshot at all.
    restore(RESTORE);
    let r = run(&["--var", "from=current"]).expect_code(9);
    assert!(r.stderr.contains("guard `format`"), "{}", r.stderr);
    assert!(!s.path().join("restored").exists());
    run(&["--var", "from=current", "--override", "format"]).expect_code(0);
    assert_eq!(restored(&s), "2026-11-22");

    // Not a guard: a usage error.
    let r = run(&["--override", "colour"]).expect_code(2);
    assert!(r.stderr.contains("no such guard"), "{}", r.stderr);
}

#[test]
fn the_postgres_guard_compares_the_servers_major_version() {
    let c = crate::pg_cluster::Cluster::start();
    let s = Scratch::new();
    s.write(
        "backup.yml",
        &format!(
            "ward: 1\nname: nightly\nsteps:\n  - id: dump\n    action: pg.dumpall\n    with: {{ db: {}, dest: current/all.sql.gz }}\n  - id: snap\n    needs: dump\n    action: snapshot.hardlink\n    with: {{ src: current, dir: snaps, scope: full }}\n",
            c.conn()
        ),
    );
    s.ward().args(["run", "backup.yml"]).run().expect_code(0);
    let restore = |db: &str, no_server: &str| {
        s.write(
            "restore.yml",
            &format!(
                "ward: 1\nname: r\nvars:\n  from: snaps/latest\nrestore:\n  snapshots: snaps\n  snapshot_var: from\n  guards:\n    postgres: {{ db: {db}, no_server: {no_server} }}\nsteps:\n  - id: put-back\n    run: \"echo done > done\"\n"
            ),
        );
        s.ward().args(["run", "restore.yml"]).run()
    };
    restore(&c.conn(), "refuse").expect_code(0);
    // No server at that port: refused (its creation is not this playbook's)...
    let gone = format!(
        "{{ host: \"{}\", port: 1, user: postgres }}",
        c.socket.display()
    );
    std::fs::remove_file(s.path().join("done")).expect("done");
    let r = restore(&gone, "refuse").expect_code(9);
    assert!(r.stderr.contains("guard `postgres`"), "{}", r.stderr);
    assert!(r.stderr.contains("no server answering"), "{}", r.stderr);
    assert!(r.stderr.contains("PostgreSQL "), "{}", r.stderr);
    assert!(!s.path().join("done").exists());
    // ...unless the playbook says it creates one.
    restore(&gone, "pass").expect_code(0);
    // The plan shows the guards and, with --snapshot, what they say.
    let plan = s
        .ward()
        .args(["plan", "restore.yml", "--snapshot", "latest"])
        .run()
        .expect_code(0);
    assert!(
        plan.stdout.contains("guards: format; postgres major"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("every guard passes"),
        "{}",
        plan.stdout
    );
}

#[test]
fn an_unfinished_restore_leaves_its_marker_and_backups_and_starts_wait_for_it() {
    let (s, backup, restore) = system();
    s.write("fail-finish", "");
    s.ward()
        .args(["run", "--yes"])
        .arg(&restore)
        .run()
        .expect_code(1);
    let id = last_run_id(&s);
    let marker = s.read("work/restore-in-progress");
    assert!(marker.contains(&id), "{marker}");
    assert!(marker.contains("snaps/2026-11-21"), "{marker}");
    // A backup of the system refuses to start (recorded skipped).
    let r = s
        .ward()
        .args(["run", "--var", "snap_name=2026-11-23"])
        .arg(&backup)
        .run()
        .expect_code(6);
    assert!(
        r.stderr.contains(&format!("restore run {id}")),
        "{}",
        r.stderr
    );
    assert!(!s.path().join("snaps/2026-11-23").exists());
    // Another run's start of the service refuses while the marker is there.
    let start = s.write(
        "start.yml",
        "ward: 1\nname: start\nsteps:\n  - id: start\n    action: service.start\n    with: { start: [bash, -c, \"echo started >> started\"], blocked_by: work/restore-in-progress }\n",
    );
    let r = s.ward().arg("run").arg(&start).run().expect_code(1);
    assert!(r.stderr.contains("a restore is unfinished"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("ward resume {id}")),
        "{}",
        r.stderr
    );
    assert!(!s.path().join("started").exists());
    // The resume finishes the restore: its own start is allowed, and the
    // marker goes as the very last thing.
    std::fs::remove_file(s.path().join("fail-finish")).expect("rm");
    s.ward().args(["resume", "--yes", &id]).run().expect_code(0);
    assert_eq!(s.read("started").trim(), "started");
    assert!(!s.path().join("work/restore-in-progress").exists());
    s.ward()
        .args(["run", "--var", "snap_name=2026-11-23"])
        .arg(&backup)
        .run()
        .expect_code(0);
}

#[test]
fn a_restore_killed_mid_run_leaves_its_marker() {
    let (s, _, restore) = system();
    s.write("hold", "");
    let mut child = s.ward().args(["run", "--yes"]).arg(&restore).spawn();
    assert!(crate::harness::wait_for(30, || s
        .path()
        .join("waiting")
        .exists()));
    assert!(s.path().join("work/restore-in-progress").exists());
    // SIGKILL: nothing can clean up.
    child.kill().expect("kill");
    let _ = child.wait();
    let marker = s.read("work/restore-in-progress");
    let id = last_run_id(&s);
    assert!(marker.contains(&id), "{marker}");
    // Its resume finishes the restore, and only then the marker goes.
    std::fs::remove_file(s.path().join("hold")).expect("rm hold");
    s.write("go", "");
    s.ward().args(["resume", "--yes", &id]).run().expect_code(0);
    assert_eq!(restored(&s), "2026-11-21");
    assert!(!s.path().join("work/restore-in-progress").exists());
}

#[test]
fn a_backup_and_a_restore_of_the_same_system_share_one_lock() {
    let (s, backup, restore) = system();
    s.write("hold", "");
    let mut child = s.ward().args(["run", "--yes"]).arg(&restore).spawn();
    assert!(crate::harness::wait_for(30, || s
        .path()
        .join("waiting")
        .exists()));
    let r = s
        .ward()
        .args(["run", "--var", "snap_name=2026-11-23"])
        .arg(&backup)
        .run()
        .expect_code(3);
    assert!(r.stderr.contains("sys"), "{}", r.stderr);
    s.write("go", "");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn restore_is_checked_like_every_key() {
    let s = Scratch::new();
    let book = s.write(
        "bad.yml",
        "ward: 1\nname: b\nvars: { x: 1 }\nrestore:\n  snapshots: snaps\n  snapshot_var: nope\nsteps:\n  - id: a\n    run: \"true\"\n",
    );
    let r = s.ward().arg("validate").arg(&book).run().expect_code(2);
    assert!(r.stderr.contains("bad.yml:6:17"), "{}", r.stderr);
    assert!(r.stderr.contains("not one of `vars:`"), "{}", r.stderr);
    let book = s.write(
        "bad.yml",
        "ward: 1\nname: b\nvars: { x: 1 }\nrestore:\n  snapshots: snaps\n  snapshot_var: x\n  guards: { hots: true }\n  colour: red\nsteps:\n  - id: a\n    run: \"true\"\n",
    );
    let r = s.ward().arg("validate").arg(&book).run().expect_code(2);
    assert!(r.stderr.contains("unknown key `colour`"), "{}", r.stderr);
    assert!(r.stderr.contains("bad.yml:8:3"), "{}", r.stderr);
}

#[test]
fn while_a_question_is_on_the_screen_other_steps_run_but_print_after_the_answer() {
    let s = Scratch::new();
    let book = s.write(
        "chatty.yml",
        // `wipe` waits until `chatty` printed two ticks: under load `chatty`
        // may start only after the answer, and must not end without one.
        "ward: 1\nname: chatty\nsteps:\n  - id: chatty\n    run: \"n=0; while [ ! -e wiped ]; do echo tick; n=$((n+1)); if [ $n -ge 2 ]; then touch chatting; fi; sleep 0.05; done; echo chatty-done\"\n  - id: wipe\n    confirm: Wipe it?\n    run: \"while [ ! -e chatting ]; do sleep 0.05; done; touch wiped\"\n",
    );
    let cmd = s.ward().arg("run").arg(&book).command();
    let (code, out) = run_answering(cmd, &[("to go on", "chatty")]);
    assert_eq!(code, 0, "{out}");
    let asked = out.find("to go on").expect("asked");
    let answered = asked
        + out[asked..]
            .find("chatty\r\n")
            .expect("the typed answer echoed");
    // Nothing of the running step came between the question and the answer...
    assert!(!out[asked..answered].contains("tick"), "{out}");
    // ...but it went on: what it printed meanwhile came after the answer.
    assert!(out[answered..].contains("chatty │ tick"), "{out}");
    assert!(out[answered..].contains("chatty-done"), "{out}");
}

#[test]
fn a_resume_restores_the_snapshot_the_run_chose_even_if_latest_moved() {
    let (s, _, restore) = system();
    s.write("hold", "");
    // No --snapshot, no terminal: the var's default, `snaps/latest`.
    let mut child = s.ward().args(["run", "--yes"]).arg(&restore).spawn();
    assert!(crate::harness::wait_for(30, || s
        .path()
        .join("waiting")
        .exists()));
    child.kill().expect("kill");
    let _ = child.wait();
    let id = last_run_id(&s);
    // `latest` now points at the older snapshot (e.g. moved by hand).
    let latest = s.path().join("snaps/latest");
    std::fs::remove_file(&latest).expect("rm latest");
    std::os::unix::fs::symlink("2026-11-20", &latest).expect("link");
    std::fs::remove_file(s.path().join("hold")).expect("rm hold");
    s.ward().args(["resume", "--yes", &id]).run().expect_code(0);
    // The one the guards checked and the marker named, not the new `latest`.
    assert_eq!(restored(&s), "2026-11-21");
    assert!(
        s.read("restored-from").contains("snaps/2026-11-21"),
        "{}",
        s.read("restored-from")
    );
}

#[test]
fn a_date_with_two_snapshots_that_day_says_which_it_restores() {
    let (s, backup, restore) = system();
    // A second snapshot of 2026-11-21: named `2026-11-21.2` (its verify
    // step, naming the first, fails; the snapshot is complete).
    s.ward()
        .args(["run", "--var", "snap_name=2026-11-21"])
        .arg(&backup)
        .run()
        .expect_code(1);
    assert!(s.path().join("snaps/2026-11-21.2").is_dir());
    let r = s
        .ward()
        .args(["run", "--yes", "--snapshot", "2026-11-21"])
        .arg(&restore)
        .run()
        .expect_code(0);
    assert!(
        s.read("restored-from").contains("snaps/2026-11-21.2"),
        "{}",
        s.read("restored-from")
    );
    // The operator is told the day had more than one, and how to get the other.
    assert!(
        r.stderr.contains("2 snapshots were made that day"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.trim_end().ends_with("snaps/2026-11-21"),
        "{}",
        r.stderr
    );
    s.ward()
        .args(["run", "--yes", "--snapshot"])
        .arg(s.path().join("snaps/2026-11-21"))
        .arg(&restore)
        .run()
        .expect_code(0);
    assert!(
        s.read("restored-from").ends_with("snaps/2026-11-21\n"),
        "{}",
        s.read("restored-from")
    );
}

#[test]
fn a_damaged_manifest_leaves_that_snapshot_out_and_never_stands_in_for_latest() {
    let (s, _, restore) = system();
    let snaps = s.path().join("snaps");
    let manifest_of = |name: &str| {
        let p = snaps.join(format!(".{name}.manifest.json"));
        assert!(
            p.is_file(),
            "manifest next to the snapshot: {}",
            p.display()
        );
        p
    };
    // The older snapshot's manifest edited (its checksum no longer matches):
    // the newest is still restored, and the damaged one is named.
    let older = manifest_of("2026-11-20");
    let text = std::fs::read_to_string(&older).expect("read");
    std::fs::write(&older, text.replacen("full", "fulL", 1)).expect("forge");
    let r = s
        .ward()
        .args(["run", "--yes", "--snapshot", "latest"])
        .arg(&restore)
        .run()
        .expect_code(0);
    assert_eq!(restored(&s), "2026-11-21");
    assert!(
        r.stderr.contains("snapshot 2026-11-20 left out"),
        "{}",
        r.stderr
    );
    // Asked for by name: refused with why, nothing run.
    let _ = std::fs::remove_file(s.path().join("restored"));
    let r = s
        .ward()
        .args(["run", "--yes", "--snapshot", "2026-11-20"])
        .arg(&restore)
        .run()
        .expect_code(2);
    assert!(r.stderr.contains("checksum"), "{}", r.stderr);
    // The newest damaged: `latest` refuses rather than restore an older one.
    let newest = manifest_of("2026-11-21");
    std::fs::write(&newest, "{ not json").expect("damage");
    let r = s
        .ward()
        .args(["run", "--yes", "--snapshot", "latest"])
        .arg(&restore)
        .run()
        .expect_code(2);
    assert!(
        r.stderr.contains("2026-11-21 cannot be restored"),
        "{}",
        r.stderr
    );
    assert!(!s.path().join("restored").exists());
}
