//! `ward probe`: every step checked read-only against a real system (real
//! rsync, a real PostgreSQL cluster), the right checks failing with a
//! clear detail, exact dry-run counts, and proof that nothing changed.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::harness::{Scratch, repo_path};
use crate::pg_cluster::Cluster;
use crate::system::FoSystem;

/// A backup: a dump, a copy, a snapshot of both, its verification.
const BACKUP: &str = r#"ward: 1
name: probe-backup
vars:
  src: src
  dest: backup/current/files
  pg_host: /nonexistent
  pg_port: 5432
  rsync: rsync
steps:
  - id: dump
    action: pg.dumpall
    with:
      dest: backup/current/db/all.sql.gz
      db: { host: "{{ pg_host }}", port: "{{ pg_port }}", user: postgres }
      args: [--clean, --if-exists]
      min_bytes: 100
  - id: copy
    action: rsync
    with: { src: "{{ src }}", dest: "{{ dest }}", program: "{{ rsync }}" }
  - id: snapshot
    needs: [dump, copy]
    action: snapshot.hardlink
    with: { src: backup/current, dir: backup/snapshots }
  - id: verify
    needs: [snapshot]
    action: verify
    with: { path: backup/snapshots/latest }
"#;

/// A restore of that backup: verify the snapshot, load the dump, copy the files back.
const RESTORE: &str = r#"ward: 1
name: probe-restore
vars:
  snapshot: latest
  from: "backup/snapshots/{{ snapshot }}"
  target: target
  pg_host: /nonexistent
  pg_port: 5432
  force: false
steps:
  - id: verify
    action: verify
    with: { path: "{{ from }}" }
  - id: restore-db
    needs: [verify]
    action: pg.restore
    with:
      src: "{{ from }}/db/all.sql.gz"
      db: { host: "{{ pg_host }}", port: "{{ pg_port }}", user: postgres }
      force: "{{ force }}"
  - id: restore-files
    needs: [verify]
    action: rsync
    with: { src: "{{ from }}/files", dest: "{{ target }}" }
"#;

fn pg_vars(c: &Cluster) -> Vec<String> {
    vec![
        "--var".into(),
        format!("pg_host={}", c.socket.display()),
        "--var".into(),
        format!("pg_port={}", c.port),
    ]
}

/// `ward probe --json FILE` with `args`.
fn probe_json(s: &Scratch, file: &str, args: &[String]) -> (i32, serde_json::Value) {
    let run = s.ward().args(["probe", "--json", file]).args(args).run();
    let json = run.json();
    (run.code, json)
}

/// The check `subject` of step `step` in a probe's JSON.
fn check(json: &serde_json::Value, step: &str, subject: &str) -> serde_json::Value {
    json["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["id"] == step))
        .and_then(|s| s["checks"].as_array())
        .and_then(|c| c.iter().find(|x| x["subject"] == subject))
        .cloned()
        .unwrap_or_else(|| panic!("no check `{subject}` of step `{step}` in {json:#}"))
}

fn verdict(json: &serde_json::Value, step: &str, subject: &str) -> String {
    check(json, step, subject)["verdict"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn detail(json: &serde_json::Value, step: &str, subject: &str) -> String {
    check(json, step, subject)["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

/// Every entry under `root`: type, size, mode, mtime (ns) and the sha256 of
/// a file's content or a link's target; links are not followed.
fn fingerprint(root: &Path) -> BTreeMap<String, String> {
    use sha2::Digest;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).expect("lstat");
        let ty = m.file_type();
        let content = if ty.is_file() {
            format!(
                "{:x}",
                sha2::Sha256::digest(std::fs::read(&p).expect("read"))
            )
        } else if ty.is_symlink() {
            std::fs::read_link(&p).expect("link").display().to_string()
        } else {
            String::new()
        };
        if ty.is_dir() {
            for e in std::fs::read_dir(&p).expect("read_dir").flatten() {
                stack.push(e.path());
            }
        }
        out.insert(
            p.strip_prefix(root).expect("prefix").display().to_string(),
            format!(
                "{:?} {} {:o} {}.{} {content}",
                ty,
                m.len(),
                m.mode(),
                m.mtime(),
                m.mtime_nsec()
            ),
        );
    }
    out
}

/// The whole cluster as text, without the random keys of pg_dumpall's
/// `\restrict` lines (new with each dump).
fn dumpall(c: &Cluster) -> String {
    let out = Command::new(c.bin().join("pg_dumpall"))
        .args(["-U", "postgres", "-h"])
        .arg(&c.socket)
        .args(["-p", &c.port.to_string()])
        .output()
        .expect("pg_dumpall");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A scratch folder with a source tree, a cluster with a database, and a
/// backup made by `ward run` (so there is a snapshot with a manifest).
fn backed_up() -> (Scratch, Cluster) {
    let s = Scratch::new();
    let c = Cluster::start();
    c.psql("postgres", "CREATE DATABASE shop");
    c.psql(
        "shop",
        "CREATE TABLE items (id int); INSERT INTO items VALUES (1), (2)",
    );
    write_file(&s.path().join("src/a.txt"), b"alpha");
    write_file(&s.path().join("src/sub/b.txt"), b"bravo!");
    s.write("backup.yml", BACKUP);
    s.write("restore.yml", RESTORE);
    s.ward()
        .args(["run", "backup.yml"])
        .args(pg_vars(&c))
        .run()
        .expect_code(0);
    (s, c)
}

#[test]
fn a_backup_probe_passes_and_each_broken_part_fails_with_a_clear_detail() {
    let (s, c) = backed_up();
    let (code, json) = probe_json(&s, "backup.yml", &pg_vars(&c));
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(json["result"], "passed");
    assert_eq!(json["playbook"], "probe-backup");
    assert!(json["checked_at"].as_str().is_some_and(|t| t.contains('T')));
    assert_eq!(verdict(&json, "dump", "postgres"), "pass");
    assert!(
        detail(&json, "dump", "postgres").contains("PostgreSQL 1"),
        "{json:#}"
    );
    assert_eq!(verdict(&json, "dump", "program pg_dumpall"), "pass");
    assert!(detail(&json, "copy", "program rsync").contains("rsync"));
    // The free space is weighed against the dump there now.
    assert!(
        detail(&json, "dump", "free space").contains("the size of the dump now at"),
        "{json:#}"
    );
    // `latest` exists from the run, but the snapshot step moves it first.
    assert_eq!(verdict(&json, "verify", "set"), "unknown");
    assert!(detail(&json, "verify", "set").contains("step `snapshot`"));

    // A PostgreSQL port where nothing answers.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let wrong = [
        "--var".to_owned(),
        "pg_host=127.0.0.1".to_owned(),
        "--var".to_owned(),
        format!("pg_port={port}"),
    ];
    let (code, json) = probe_json(&s, "backup.yml", &wrong);
    assert_eq!(code, 1, "{json:#}");
    assert_eq!(json["result"], "failed");
    assert_eq!(verdict(&json, "dump", "postgres"), "fail");
    let why = detail(&json, "dump", "postgres");
    assert!(
        why.contains("cannot connect to postgres@127.0.0.1") && why.contains(&port.to_string()),
        "{why}"
    );
    assert!(json["counts"]["fail"].as_u64().is_some_and(|n| n >= 1));

    // A program that is not there.
    let mut missing = pg_vars(&c);
    missing.extend(["--var".to_owned(), "rsync=/nonexistent/rsync".to_owned()]);
    let (code, json) = probe_json(&s, "backup.yml", &missing);
    assert_eq!(code, 1);
    assert_eq!(verdict(&json, "copy", "program /nonexistent/rsync"), "fail");
    assert!(detail(&json, "copy", "program /nonexistent/rsync").contains("No such file"));
    assert_eq!(verdict(&json, "copy", "tree"), "unknown");

    // A source that is gone.
    let mut gone = pg_vars(&c);
    gone.extend(["--var".to_owned(), "src=no-such-src".to_owned()]);
    let (code, json) = probe_json(&s, "backup.yml", &gone);
    assert_eq!(code, 1);
    assert_eq!(verdict(&json, "copy", "src"), "fail");
    assert!(detail(&json, "copy", "src").contains("no-such-src"));

    // The text table says the same, and exit 1 is FAILED.
    let text = s
        .ward()
        .args(["probe", "backup.yml"])
        .args(&missing)
        .run()
        .expect_code(1);
    assert!(text.stdout.starts_with("STEP"), "{}", text.stdout);
    assert!(text.stdout.contains("FAIL"), "{}", text.stdout);
    assert!(text.stdout.contains("probe FAILED:"), "{}", text.stdout);
    assert!(
        text.stdout.contains("nothing was changed"),
        "{}",
        text.stdout
    );
}

#[test]
fn an_unwritable_destination_fails() {
    let s = Scratch::new();
    write_file(&s.path().join("src/a.txt"), b"alpha");
    let locked = s.path().join("locked");
    std::fs::create_dir_all(&locked).expect("mkdir");
    s.write(
        "copy.yml",
        "ward: 1\nname: copy\nsteps:\n  - id: copy\n    action: rsync\n    with: { src: src, dest: locked/current }\n",
    );
    let args = ["probe", "--json", "copy.yml"];
    let run = if rustix::process::geteuid().is_root() {
        // root writes anywhere mode bits say no: make the folder a
        // read-only bind mount in a mount namespace of ward's own.
        let usable = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "true"])
            .status()
            .is_ok_and(|s| s.success());
        if !usable {
            eprintln!("skipped: unshare --mount is not available here");
            return;
        }
        let dir = locked.display().to_string();
        s.ward_via(&[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            "mount --bind \"$1\" \"$1\" && mount -o remount,ro,bind \"$1\" && shift && exec \"$@\"",
            "sh",
            &dir,
        ])
        .args(args)
        .run()
    } else {
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        s.ward().args(args).run()
    };
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let json = run.json();
    assert_eq!(verdict(&json, "copy", "dest"), "fail");
    let why = detail(&json, "copy", "dest");
    assert!(
        why.contains("cannot be created") && why.contains("not writable"),
        "{why}"
    );
}

#[test]
fn the_dry_run_counts_are_exact() {
    let s = Scratch::new();
    let src = s.path().join("src");
    let dest = s.path().join("dest");
    // Unchanged: 3 files of 10 + 20 + 30 bytes, a folder.
    for (name, size) in [("same1", 10), ("same2", 20), ("dir/same3", 30)] {
        write_file(&src.join(name), &vec![b's'; size]);
        write_file(&dest.join(name), &vec![b's'; size]);
    }
    // New: 2 files (100 and 7 bytes) and a folder holding one of them.
    write_file(&src.join("new1"), &[b'n'; 100]);
    write_file(&src.join("newdir/new2"), &[b'n'; 7]);
    // Changed: one file of another size (dest 5 bytes, source 50).
    write_file(&src.join("changed"), &[b'c'; 50]);
    write_file(&dest.join("changed"), &[b'o'; 5]);
    // Deleted: two files only in dest (11 and 13 bytes).
    write_file(&dest.join("gone1"), &[b'g'; 11]);
    write_file(&dest.join("dir/gone2"), &[b'g'; 13]);
    // The same times everywhere, so only the entries above differ.
    let stamp = "202601010000";
    for root in [&src, &dest] {
        let ok = Command::new("find")
            .arg(root)
            .args(["-exec", "touch", "-h", "-t", stamp, "{}", "+"])
            .status()
            .expect("touch");
        assert!(ok.success());
    }
    s.write(
        "copy.yml",
        "ward: 1\nname: copy\nsteps:\n  - id: copy\n    action: rsync\n    with: { src: src, dest: dest }\n",
    );
    let before = fingerprint(s.path());
    let (code, json) = probe_json(&s, "copy.yml", &[]);
    assert_eq!(code, 0, "{json:#}");
    let tree = &check(&json, "copy", "tree")["tree"];
    let tally = |k: &str| {
        (
            tree[k]["count"].as_u64().unwrap_or(99),
            tree[k]["bytes"].as_u64().unwrap_or(99),
        )
    };
    // new1, newdir/, newdir/new2: 107 bytes.
    assert_eq!(tally("restored"), (3, 107), "{tree:#}");
    // The file whose content differs; `dir/` itself, which loses gone2, is not
    // itemized (its time is the same).
    assert_eq!(tally("replaced"), (1, 50), "{tree:#}");
    assert_eq!(tally("deleted"), (2, 24), "{tree:#}");
    // ./, dir/, same1, same2, dir/same3: 60 bytes.
    assert_eq!(tally("unchanged"), (5, 60), "{tree:#}");
    let mut listed: Vec<(String, String)> = tree["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["change"].as_str().unwrap_or("").to_owned(),
                e["path"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    listed.sort();
    let want: Vec<(String, String)> = [
        ("deleted", "dir/gone2"),
        ("deleted", "gone1"),
        ("replaced", "changed"),
        ("restored", "new1"),
        ("restored", "newdir/"),
        ("restored", "newdir/new2"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(listed, want);
    assert!(
        detail(&json, "copy", "tree")
            .starts_with("restored 3 (107B), replaced 1 (50B), deleted 2 (24B), unchanged 5 (60B)"),
        "{json:#}"
    );
    // --list prints the same paths under the table.
    let text = s
        .ward()
        .args(["probe", "--list", "copy.yml"])
        .run()
        .expect_code(0);
    for line in [
        "  + new1 (100 B)",
        "  ~ changed (50 B)",
        "  - dir/gone2 (13 B)",
    ] {
        assert!(text.stdout.contains(line), "{line}\n{}", text.stdout);
    }
    assert_eq!(fingerprint(s.path()), before, "the probe changed files");
    assert!(!s.state().exists(), "the probe made a state database");
}

#[test]
fn a_restore_probe_changes_nothing_and_says_what_it_would_replace() {
    let (s, c) = backed_up();
    // The source changed since the backup: the restore would put it back.
    write_file(&s.path().join("target/a.txt"), b"ALPHA, changed");
    write_file(&s.path().join("target/extra.txt"), b"not in the backup");
    let before = fingerprint(s.path());
    let cluster_before = dumpall(&c);

    // The snapshot verifies; `shop` exists and `force` is off: the
    // restore would refuse.
    let (code, json) = probe_json(&s, "restore.yml", &pg_vars(&c));
    assert_eq!(code, 1, "{json:#}");
    assert_eq!(verdict(&json, "verify", "set"), "pass", "{json:#}");
    assert_eq!(verdict(&json, "verify", "manifest"), "pass", "{json:#}");
    assert_eq!(verdict(&json, "restore-db", "dump"), "pass");
    assert!(
        detail(&json, "restore-db", "dump").contains("creates shop"),
        "{json:#}"
    );
    assert_eq!(verdict(&json, "restore-db", "databases"), "fail");
    assert!(
        detail(&json, "restore-db", "databases").contains("already has databases shop"),
        "{json:#}"
    );
    let tree = &check(&json, "restore-files", "tree")["tree"];
    // sub/ and sub/b.txt come back, a.txt is put back as it was, extra.txt goes.
    assert_eq!(tree["restored"]["count"], 2, "{tree:#}");
    assert_eq!(tree["restored"]["bytes"], 6, "{tree:#}");
    assert_eq!(tree["deleted"]["count"], 1, "{tree:#}");
    assert_eq!(tree["deleted"]["bytes"], 17, "{tree:#}");
    let entries = tree["entries"].as_array().expect("entries");
    assert!(
        entries
            .iter()
            .any(|e| e["change"] == "replaced" && e["path"] == "a.txt" && e["bytes"] == 5),
        "{tree:#}"
    );

    // With `force`, it would replace `shop`: a warning, not a failure.
    let mut forced = pg_vars(&c);
    forced.extend(["--var".to_owned(), "force=true".to_owned()]);
    let (code, json) = probe_json(&s, "restore.yml", &forced);
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(verdict(&json, "restore-db", "databases"), "warn");
    assert!(detail(&json, "restore-db", "databases").contains("would replace shop"));

    // A snapshot that does not exist.
    let mut missing = pg_vars(&c);
    missing.extend(["--var".to_owned(), "snapshot=2020-01-01".to_owned()]);
    let (code, json) = probe_json(&s, "restore.yml", &missing);
    assert_eq!(code, 1);
    assert_eq!(verdict(&json, "verify", "set"), "fail");
    assert!(
        detail(&json, "verify", "set").contains("2020-01-01")
            && detail(&json, "verify", "set").contains("does not exist"),
        "{json:#}"
    );

    assert_eq!(fingerprint(s.path()), before, "the probe changed files");
    assert!(
        dumpall(&c) == cluster_before,
        "the probe changed the cluster"
    );
    // No run was recorded by the probes.
    let runs = s
        .ward()
        .args(["runs", "--json"])
        .run()
        .expect_code(0)
        .json();
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs:#}");

    // A damaged snapshot does not verify.
    let latest = std::fs::canonicalize(s.path().join("backup/snapshots/latest")).expect("latest");
    std::fs::remove_file(latest.join("files/a.txt")).expect("rm");
    let (code, json) = probe_json(&s, "restore.yml", &forced);
    assert_eq!(code, 1);
    assert_eq!(verdict(&json, "verify", "manifest"), "fail");
    assert!(
        detail(&json, "verify", "manifest").contains("files/a.txt"),
        "{json:#}"
    );
}

#[test]
fn the_shipped_full_restore_probes_against_a_test_system() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    let backup = repo_path("playbooks/fossology/backup-full.yml");
    let restore = repo_path("playbooks/fossology/restore-full.yml");
    let vars = sys.vars(&s.path().join("backup"));
    s.ward()
        .arg("run")
        .arg(&backup)
        .args(&vars)
        .run()
        .expect_code(0);
    let runs_before = s.ward().args(["runs", "--json"]).run().json();
    let before = fingerprint(s.path());
    let cluster_before = dumpall(&sys.cluster);

    let run = s
        .ward()
        .arg("probe")
        .arg("--json")
        .arg(&restore)
        .args(&vars)
        .run();
    let json = run.json();
    // FOSSology's database is there and `replace_existing_db` is off.
    assert_eq!(run.code, 1, "{json:#}");
    assert_eq!(
        verdict(&json, "verify-snapshot", "manifest"),
        "pass",
        "{json:#}"
    );
    assert_eq!(verdict(&json, "check-config", "program bash"), "pass");
    assert_eq!(verdict(&json, "check-config", "script"), "pass", "{json:#}");
    assert_eq!(
        verdict(
            &json,
            "stop-scheduler",
            &format!("program {}", sys.scheduler.display())
        ),
        "pass"
    );
    assert!(
        detail(&json, "stop-scheduler", "wait_gone").contains("running now"),
        "{json:#}"
    );
    assert_eq!(
        verdict(&json, "restore-db", "databases"),
        "fail",
        "{json:#}"
    );
    assert!(detail(&json, "restore-db", "databases").contains("fossology"));
    assert!(
        detail(&json, "restore-db", "dump").contains("creates fossology"),
        "{json:#}"
    );
    let tree = &check(&json, "restore-repository", "tree")["tree"];
    // Nothing changed in the repository since the backup.
    assert_eq!(tree["restored"]["count"], 0, "{tree:#}");
    assert_eq!(tree["deleted"]["count"], 0, "{tree:#}");
    assert!(
        tree["unchanged"]["count"].as_u64().is_some_and(|n| n > 10),
        "{tree:#}"
    );

    let mut replace = vars.clone();
    replace.extend(["--var".to_owned(), "replace_existing_db=true".to_owned()]);
    let run = s
        .ward()
        .arg("probe")
        .arg("--json")
        .arg(&restore)
        .args(&replace)
        .run();
    let json = run.json();
    assert_eq!(run.code, 0, "{json:#}");
    assert_eq!(verdict(&json, "restore-db", "databases"), "warn");

    assert_eq!(fingerprint(s.path()), before, "the probe changed files");
    assert!(
        dumpall(&sys.cluster) == cluster_before,
        "the probe changed the cluster"
    );
    assert!(sys.scheduler_running(), "the probe stopped nothing");
    let runs_after = s.ward().args(["runs", "--json"]).run().json();
    assert_eq!(runs_after, runs_before);
}

#[test]
fn preconditions_are_checked_as_a_run_checks_them() {
    let s = Scratch::new();
    write_file(&s.path().join("src/a.txt"), b"alpha");
    s.write(
        "pre.yml",
        "ward: 1\nname: pre\npreconditions:\n  - path_exists: src\n  - path_exists: no-such-disk\n  - free_space: {path: src, min: 1.5x last}\n  - command: {argv: [sh, -c, 'echo checked; exit 0']}\n  - command: {argv: [sh, -c, 'echo not mounted >&2; exit 3']}\nsteps:\n  - id: copy\n    action: rsync\n    with: { src: src, dest: dest }\n",
    );
    let before = fingerprint(s.path());
    let (code, json) = probe_json(&s, "pre.yml", &[]);
    assert_eq!(code, 1, "{json:#}");
    let pre: Vec<(String, String)> = json["preconditions"]
        .as_array()
        .expect("preconditions")
        .iter()
        .map(|c| {
            (
                c["verdict"].as_str().unwrap_or("").to_owned(),
                c["detail"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(pre.len(), 5, "{pre:?}");
    assert_eq!(pre[0].0, "pass");
    assert_eq!(pre[1].0, "fail");
    assert!(pre[1].1.contains("no-such-disk"), "{pre:?}");
    assert_eq!(pre[2].0, "unknown");
    assert!(pre[2].1.contains("last run's size"), "{pre:?}");
    assert_eq!(pre[3], ("pass".to_owned(), "exit 0".to_owned()));
    // The output is told, as the log it went to is gone.
    assert_eq!(
        pre[4],
        ("fail".to_owned(), "exit 3, output: not mounted".to_owned())
    );
    let text = s.ward().args(["probe", "pre.yml"]).run().expect_code(1);
    assert!(text.stdout.contains("(preconditions)"), "{}", text.stdout);
    assert_eq!(fingerprint(s.path()), before, "the probe changed files");
    assert!(!s.state().exists(), "the probe made a state database");
}

/// A server that accepts the connection and then never answers (an
/// overloaded one, or something else on that port): the probe gives up
/// with a clear failure instead of hanging.
#[test]
fn a_server_that_never_answers_fails_the_probe_instead_of_hanging_it() {
    let s = Scratch::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let held = std::thread::spawn(move || {
        // Hold the one connection open, silent, until the probe gives up.
        let (mut stream, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 512];
        while matches!(std::io::Read::read(&mut stream, &mut buf), Ok(n) if n > 0) {}
    });
    s.write(
        "q.yml",
        &format!(
            "ward: 1\nname: q\nsteps:\n  - id: ask\n    action: pg.query\n    \
             with: {{ sql: \"SELECT 1\", db: {{ host: 127.0.0.1, port: {port}, user: postgres }} }}\n"
        ),
    );
    let (code, json) = probe_json(&s, "q.yml", &[]);
    assert_ne!(code, 0, "{json:#}");
    assert_eq!(verdict(&json, "ask", "postgres"), "fail", "{json:#}");
    assert!(
        detail(&json, "ask", "postgres").contains("did not answer within"),
        "{json:#}"
    );
    held.join().expect("listener");
}
