//! The state folder is trusted only when no other user can change it; read
//! commands never create state; damaged databases and lock faults are state
//! errors (exit 4), a missing database exit 5; concurrent creation works.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Run, Scratch, chmod};

const PLAYBOOK: &str = "ward: 1\nname: demo\nsteps:\n  - id: hello\n    run: echo hi\n";

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).expect("stat").mode() & 0o7777
}

fn nobody() -> u32 {
    let out = Command::new("id")
        .args(["-u", "nobody"])
        .output()
        .expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("uid of nobody")
}

/// A scratch folder with the playbook and a private state folder made by a
/// first successful run.
fn with_state() -> Scratch {
    let s = Scratch::new();
    s.write("p.yml", PLAYBOOK);
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    s
}

fn state_dir(s: &Scratch) -> PathBuf {
    s.state().parent().expect("state folder").to_path_buf()
}

fn assert_refused(run: &Run, path: &Path, words: &str) {
    assert_eq!(
        run.code, 4,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert!(
        run.stderr.contains(&path.display().to_string()) && run.stderr.contains(words),
        "expected `{}` and `{words}` in:\n{}",
        path.display(),
        run.stderr
    );
}

#[test]
fn planted_lock_symlink_is_refused_and_its_target_untouched() {
    let s = with_state();
    let victim = s.write("victim", "precious\n");
    let lock = state_dir(&s).join("locks/demo.lock");
    std::fs::remove_file(&lock).expect("remove lock");
    std::os::unix::fs::symlink(&victim, &lock).expect("plant symlink");
    let run = s.ward().args(["run", "p.yml"]).run();
    assert_refused(&run, &lock, "symbolic link");
    assert_eq!(s.read("victim"), "precious\n");
}

#[test]
fn a_planted_step_log_symlink_is_not_followed() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: logs\nsteps:\n  - id: a\n    run: echo out; test -f go\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(1);
    let id = s.status(None)["id"].as_str().expect("run id").to_owned();
    let victim = s.write("victim", "precious\n");
    // The resume's attempt 2 would write here.
    let log = state_dir(&s).join("logs").join(&id).join("a.2.log");
    std::os::unix::fs::symlink(&victim, &log).expect("plant symlink");
    s.write("go", "");
    s.ward().args(["resume", "--last"]).run();
    assert_eq!(s.read("victim"), "precious\n");
    assert!(std::fs::symlink_metadata(&log).expect("link").is_symlink());
}

#[test]
fn state_folder_locks_or_logs_writable_by_others_are_refused() {
    let s = with_state();
    let dir = state_dir(&s);
    for (path, what) in [
        (dir.clone(), "the state folder (mode 0777)"),
        (dir.join("locks"), "the locks folder (mode 0777)"),
        (dir.join("logs"), "the logs folder (mode 0777)"),
    ] {
        chmod(&path, 0o777);
        let run = s.ward().args(["run", "p.yml"]).run();
        assert_refused(&run, &path, what);
        assert!(run.stderr.contains("chmod go-w"), "{}", run.stderr);
        // Read commands trust the folder no more than `run` does.
        assert_refused(&s.ward().args(["status"]).run(), &path, what);
        chmod(&path, 0o700);
    }
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
}

#[test]
fn a_state_folder_that_is_shared_like_tmp_is_refused_a_private_child_works() {
    let s = Scratch::new();
    s.write("p.yml", PLAYBOOK);
    let shared = s.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    chmod(&shared, 0o1777);
    // `--state shared/ward.db`: the shared folder itself would hold the state.
    let db = shared.join("ward.db");
    let run = s.ward().args(["run", "p.yml", "--state"]).arg(&db).run();
    assert_refused(&run, &shared, "mkdir -m 700");
    assert!(!db.exists(), "nothing may be created in a refused folder");
    // A private folder inside the sticky one is fine.
    let private = shared.join("private");
    std::fs::create_dir(&private).expect("mkdir");
    chmod(&private, 0o700);
    let db = private.join("ward.db");
    s.ward()
        .args(["run", "p.yml", "--state"])
        .arg(&db)
        .run()
        .expect_code(0);
    // Without the sticky bit others could rename `private` away and put
    // their own in its place.
    chmod(&shared, 0o777);
    let run = s.ward().args(["run", "p.yml", "--state"]).arg(&db).run();
    assert_refused(&run, &shared, "no sticky bit");
}

#[test]
fn a_symlink_on_the_way_is_followed_only_if_its_owner_is_trusted() {
    let s = Scratch::new();
    s.write("p.yml", PLAYBOOK);
    let shared = s.path().join("shared");
    let private = s.path().join("private");
    for (dir, m) in [(&shared, 0o1777), (&private, 0o700)] {
        std::fs::create_dir(dir).expect("mkdir");
        chmod(dir, m);
    }
    // Root's own link in a sticky folder: only root can swap it.
    let link = shared.join("state");
    std::os::unix::fs::symlink(&private, &link).expect("symlink");
    let db = link.join("ward.db");
    s.ward()
        .args(["run", "p.yml", "--state"])
        .arg(&db)
        .run()
        .expect_code(0);
    // The same link owned by another user: they may point it elsewhere.
    std::os::unix::fs::lchown(&link, Some(nobody()), None).expect("lchown");
    let run = s.ward().args(["status", "--state"]).arg(&db).run();
    assert_refused(&run, &link, "nobody");
}

#[test]
fn a_folder_on_the_way_that_belongs_to_another_user_is_refused() {
    let s = Scratch::new();
    s.write("p.yml", PLAYBOOK);
    let theirs = s.path().join("theirs");
    std::fs::create_dir(&theirs).expect("mkdir");
    std::os::unix::fs::chown(&theirs, Some(nobody()), None).expect("chown");
    let db = theirs.join("mine/ward.db");
    let run = s.ward().args(["run", "p.yml", "--state"]).arg(&db).run();
    assert_refused(&run, &theirs, "nobody");
    assert!(!theirs.join("mine").exists());
}

#[test]
fn a_database_of_another_user_or_a_symlink_is_refused() {
    let s = with_state();
    // Another user's database would let them choose the playbook that
    // root's `ward resume --last` runs.
    std::os::unix::fs::chown(s.state(), Some(nobody()), None).expect("chown");
    for args in [
        &["resume", "--last"][..],
        &["status"][..],
        &["run", "p.yml"][..],
    ] {
        let run = s.ward().args(args).run();
        assert_refused(&run, &s.state(), "belongs to nobody");
    }
    std::os::unix::fs::chown(s.state(), Some(0), None).expect("chown back");
    let elsewhere = s.path().join("elsewhere.db");
    std::fs::rename(s.state(), &elsewhere).expect("move");
    std::os::unix::fs::symlink(&elsewhere, s.state()).expect("symlink");
    let run = s.ward().args(["resume", "--last"]).run();
    assert_refused(&run, &s.state(), "symbolic link");
}

#[test]
fn files_are_0600_and_folders_0700_under_umask_000_and_when_they_existed_looser() {
    let s = with_state();
    let dir = state_dir(&s);
    chmod(&dir.join("locks"), 0o755);
    chmod(&dir.join("logs"), 0o755);
    chmod(&dir.join("locks/demo.lock"), 0o644);
    chmod(&s.state(), 0o644);
    let out = Command::new("sh")
        .args(["-c", "umask 000 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_ward"))
        .args(["run", "p.yml"])
        .current_dir(s.path())
        .env("WARD_STATE", s.state())
        .env("NO_COLOR", "1")
        .output()
        .expect("ward");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = 0;
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).expect("stat");
            if m.is_dir() {
                assert_eq!(mode(&p), 0o700, "{}", p.display());
                stack.push(p);
            } else {
                assert_eq!(mode(&p), 0o600, "{}", p.display());
            }
            seen += 1;
        }
    }
    // The database, a lock, two run log folders with a log each, locks/, logs/.
    assert!(seen >= 8, "only {seen} entries in {}", dir.display());
}

#[test]
fn read_commands_and_resume_never_create_state() {
    let s = Scratch::new();
    for db in [
        s.path().join("typo/dir/ward.db"),
        s.path().join("ward.db"),
        PathBuf::from("/nonexistent/dir/ward.db"),
    ] {
        for args in [
            &["status"][..],
            &["runs"][..],
            &["log", "last"][..],
            &["resume", "--last"][..],
        ] {
            let run = s.ward().args(args).arg("--state").arg(&db).run();
            assert_eq!(run.code, 5, "{args:?}: {}", run.stderr);
            assert!(
                run.stderr.contains(&db.display().to_string())
                    && run.stderr.contains("no state database"),
                "{args:?}: {}",
                run.stderr
            );
            assert!(!db.exists(), "{args:?} created {}", db.display());
        }
    }
    let left: Vec<_> = std::fs::read_dir(s.path())
        .expect("read_dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "created: {left:?}");
}

#[test]
fn an_empty_or_foreign_database_is_refused_with_a_hint_and_left_alone() {
    for content in ["", "this is not SQLite, it is a note somebody saved here\n"] {
        let s = Scratch::new();
        s.write("p.yml", PLAYBOOK);
        let dir = state_dir(&s);
        std::fs::create_dir(&dir).expect("mkdir");
        chmod(&dir, 0o700);
        std::fs::write(s.state(), content).expect("write db");
        chmod(&s.state(), 0o600);
        for args in [&["run", "p.yml"][..], &["status"][..], &["runs"][..]] {
            let run = s.ward().args(args).run();
            assert_refused(&run, &s.state(), "damaged");
            assert!(run.stderr.contains(".broken"), "{}", run.stderr);
        }
        assert_eq!(
            std::fs::read_to_string(s.state()).expect("db"),
            content,
            "the damaged file must not be touched"
        );
    }
}

#[test]
fn a_lock_file_that_cannot_be_used_is_a_state_error_not_a_held_lock() {
    let s = with_state();
    let lock = state_dir(&s).join("locks/demo.lock");
    std::fs::remove_file(&lock).expect("remove lock");
    std::fs::create_dir(&lock).expect("a folder where the lock file goes");
    let run = s.ward().args(["run", "p.yml"]).run();
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr.contains(&lock.display().to_string()) && !run.stderr.contains("another run"),
        "{}",
        run.stderr
    );
}

#[test]
fn two_wards_creating_a_fresh_database_at_once_both_succeed() {
    for trial in 0..20 {
        let s = Scratch::new();
        s.write("a.yml", &PLAYBOOK.replace("demo", "a"));
        s.write("b.yml", &PLAYBOOK.replace("demo", "b"));
        let a = s.ward().args(["run", "a.yml"]).spawn();
        let b = s.ward().args(["run", "b.yml"]).spawn();
        for child in [a, b] {
            let out = child.wait_with_output().expect("wait");
            assert_eq!(
                out.status.code(),
                Some(0),
                "trial {trial}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let runs = s
            .ward()
            .args(["runs", "--json"])
            .run()
            .expect_code(0)
            .json();
        assert_eq!(runs.as_array().map(Vec::len), Some(2), "trial {trial}");
    }
}

#[test]
fn resume_last_of_a_succeeded_run_names_it_and_resumes_nothing() {
    let s = with_state();
    let id = s.status(None)["id"].as_str().expect("run id").to_owned();
    let run = s.ward().args(["resume", "--last"]).run().expect_code(0);
    for want in [
        id.as_str(),
        "playbook demo",
        "already succeeded at",
        "nothing was resumed",
    ] {
        assert!(run.stdout.contains(want), "`{want}` in:\n{}", run.stdout);
    }
    let runs = s
        .ward()
        .args(["runs", "--json"])
        .run()
        .expect_code(0)
        .json();
    assert_eq!(runs[0]["resumes"], 0, "{runs}");
}

/// Everything a command could change about a database file.
fn fingerprint(db: &Path) -> (Vec<u8>, u32, bool) {
    let mut side = db.as_os_str().to_owned();
    side.push("-wal");
    (
        std::fs::read(db).expect("read db"),
        mode(db),
        Path::new(&side).exists(),
    )
}

#[test]
fn another_programs_sqlite_database_is_refused_by_every_command_and_left_alone() {
    // (what the other program made, what ward must say it found)
    let cases: [(&str, &str); 3] = [
        ("CREATE TABLE users (x);", "other tables: users"),
        // ward's names, but not ward's (user_version 0).
        (
            "CREATE TABLE runs (x); CREATE TABLE steps (x); CREATE TABLE attempts (x); \
             CREATE TABLE events (x);",
            "schema version 0",
        ),
        ("CREATE TABLE t (x); DROP TABLE t;", "no tables"),
    ];
    for (sql, found) in cases {
        let s = Scratch::new();
        s.write("p.yml", PLAYBOOK);
        let dir = state_dir(&s);
        std::fs::create_dir(&dir).expect("mkdir");
        chmod(&dir, 0o700);
        {
            let conn = rusqlite::Connection::open(s.state()).expect("sqlite");
            conn.execute_batch(sql).expect("schema");
        }
        chmod(&s.state(), 0o644);
        let before = fingerprint(&s.state());
        for args in [
            &["runs"][..],
            &["status"][..],
            &["log", "last"][..],
            &["run", "p.yml"][..],
            &["resume", "--last"][..],
        ] {
            let run = s.ward().args(args).run();
            assert_refused(&run, &s.state(), "not ward's state database");
            assert!(run.stderr.contains(found), "{args:?}: {}", run.stderr);
            assert!(run.stderr.contains("fix:"), "{}", run.stderr);
            assert_eq!(
                fingerprint(&s.state()),
                before,
                "{args:?} changed the file, its mode or its journal"
            );
        }
        assert!(!dir.join("locks").exists() && !dir.join("logs").exists());
    }
}

#[test]
fn read_commands_never_upgrade_an_older_database_and_say_how() {
    let s = with_state();
    {
        let conn = rusqlite::Connection::open(s.state()).expect("sqlite");
        conn.pragma_update(None, "user_version", 1)
            .expect("downgrade");
    }
    let before = std::fs::read(s.state()).expect("read db");
    for args in [&["runs"][..], &["status"][..], &["log", "last"][..]] {
        let run = s.ward().args(args).run();
        assert_refused(&run, &s.state(), "older than this ward's");
        assert!(run.stderr.contains("ward resume"), "{}", run.stderr);
        assert_eq!(
            std::fs::read(s.state()).expect("read db"),
            before,
            "{args:?}"
        );
    }
}

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// ward with a watchdog: a hang shows as exit 124, not as a stuck test.
fn ward_within(s: &Scratch, secs: u32, args: &[&str]) -> Run {
    let out = Command::new("timeout")
        .arg(secs.to_string())
        .arg(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .current_dir(s.path())
        .env("WARD_STATE", s.state())
        .env("NO_COLOR", "1")
        .output()
        .expect("timeout runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_fifo_as_database_lock_or_log_is_refused_without_hanging() {
    // The database.
    let s = Scratch::new();
    s.write("p.yml", PLAYBOOK);
    let dir = state_dir(&s);
    std::fs::create_dir(&dir).expect("mkdir");
    chmod(&dir, 0o700);
    mkfifo(&s.state());
    for args in [
        &["runs"][..],
        &["status"][..],
        &["log", "last"][..],
        &["resume", "--last"][..],
        &["run", "p.yml"][..],
    ] {
        let run = ward_within(&s, 20, args);
        assert_refused(&run, &s.state(), "not a regular file");
    }
    // The lock file.
    let s = with_state();
    let lock = state_dir(&s).join("locks/demo.lock");
    std::fs::remove_file(&lock).expect("remove lock");
    mkfifo(&lock);
    assert_refused(
        &ward_within(&s, 20, &["run", "p.yml"]),
        &lock,
        "not a regular file",
    );
    // A step's log, read by `ward log`.
    let status = s.status(None);
    let log = crate::harness::status_step(&status, "hello")["log_path"]
        .as_str()
        .expect("log path")
        .to_owned();
    std::fs::remove_file(&log).expect("remove log");
    mkfifo(Path::new(&log));
    let run = ward_within(&s, 20, &["log", "last"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("not a regular file"), "{}", run.stdout);
}

#[test]
fn a_hard_linked_lock_or_database_is_refused_and_the_other_file_untouched() {
    let s = with_state();
    let victim = s.write("victim", "precious\n");
    chmod(&victim, 0o644);
    let lock = state_dir(&s).join("locks/demo.lock");
    std::fs::remove_file(&lock).expect("remove lock");
    std::fs::hard_link(&victim, &lock).expect("plant hard link");
    let run = s.ward().args(["run", "p.yml"]).run();
    assert_refused(&run, &lock, "hard links");
    assert_eq!(s.read("victim"), "precious\n");
    assert_eq!(mode(&victim), 0o644);
    std::fs::remove_file(&lock).expect("remove the planted name");

    let other = s.path().join("other-name.db");
    std::fs::hard_link(s.state(), &other).expect("second name of the db");
    for args in [&["runs"][..], &["run", "p.yml"][..]] {
        assert_refused(&s.ward().args(args).run(), &s.state(), "hard links");
    }
}

#[test]
fn a_read_only_or_inode_full_state_file_system_is_named_as_the_cause() {
    let s = Scratch::new();
    s.write("p.yml", PLAYBOOK);
    let disk =
        crate::harness::Tmpfs::mount(&s.path().join("disk"), "size=1m,mode=0700,nr_inodes=40");
    let db = disk.path.join("s").join("w.db");
    let db_arg = db.display().to_string();
    s.ward()
        .args(["run", "--state", &db_arg, "p.yml"])
        .run()
        .expect_code(0);
    let remount = |how: &str| {
        let done = Command::new("mount")
            .args(["-o", &format!("remount,{how}")])
            .arg(&disk.path)
            .status()
            .expect("mount");
        assert!(done.success(), "remount {how}");
    };
    remount("ro");
    for args in [&["runs"][..], &["run", "p.yml"][..]] {
        let run = s.ward().args(args).args(["--state", &db_arg]).run();
        assert_refused(&run, &db, "read-only file system");
    }
    remount("rw");
    for n in 0.. {
        if std::fs::write(disk.path.join(format!("f{n}")), "").is_err() {
            break;
        }
    }
    for args in [&["runs"][..], &["run", "p.yml"][..]] {
        let run = s.ward().args(args).args(["--state", &db_arg]).run();
        assert_refused(&run, &db, "no free inodes");
    }
}

#[test]
fn a_state_path_that_names_a_folder_asks_for_a_file_name() {
    let s = with_state();
    let folder = state_dir(&s);
    for given in [
        format!("{}/", folder.display()),
        folder.display().to_string(),
    ] {
        for args in [&["runs"][..], &["run", "p.yml"][..]] {
            let run = s.ward().args(args).args(["--state", &given]).run();
            assert_refused(&run, Path::new(&given), "must name the database file");
            assert!(
                run.stderr
                    .contains(&format!("--state {}/ward.db", folder.display())),
                "{}",
                run.stderr
            );
            assert!(!run.stderr.contains(".broken"), "{}", run.stderr);
        }
    }
}

#[test]
fn a_relative_xdg_state_home_is_ignored() {
    // Only users other than root use XDG_STATE_HOME (root uses /var/lib/ward).
    let s = Scratch::new();
    chmod(s.path(), 0o711);
    let home = s.path().join("home");
    std::fs::create_dir(&home).expect("mkdir home");
    std::fs::write(home.join("p.yml"), PLAYBOOK).expect("playbook");
    std::os::unix::fs::chown(&home, Some(nobody()), None).expect("chown");
    std::os::unix::fs::chown(home.join("p.yml"), Some(nobody()), None).expect("chown");
    chmod(&home, 0o700);
    let out = Command::new("setpriv")
        .args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_ward"))
        .args(["run", "p.yml"])
        .current_dir(&home)
        .env_remove("WARD_STATE")
        .env("HOME", &home)
        .env("XDG_STATE_HOME", "relative/state")
        .env("NO_COLOR", "1")
        .output()
        .expect("setpriv");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(home.join(".local/state/ward/ward.db").is_file());
    assert!(!home.join("relative").exists());
}
