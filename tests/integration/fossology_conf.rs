//! The FOSSology playbooks read FOSSology's own configuration (fossology.conf,
//! Db.conf), refuse to back up a folder that is not FOSSology's repository
//! before stopping anything, and restore after losing everything, the
//! database cluster included, with ward alone.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::harness::{Scratch, repo_path, status_step};

use crate::system::{DB_CONF_PASSWORD, FoSystem};

fn playbook(name: &str) -> String {
    repo_path(&format!("playbooks/fossology/{name}"))
        .display()
        .to_string()
}

/// `ward run <playbook>` with FOSSology's configuration in `etc` and no `repo`.
fn run(s: &Scratch, sys: &FoSystem, etc: &Path, name: &str, extra: &[&str]) -> crate::harness::Run {
    s.ward()
        .arg("run")
        .arg(playbook(name))
        // Restores ask before they overwrite (`confirm:`); no terminal here.
        .args(if name.starts_with("restore") {
            &["--yes"][..]
        } else {
            &[]
        })
        .args(sys.conf_vars(&s.path().join("backup"), etc))
        .args(extra)
        .run()
}

/// Whether the scheduler stand-in was ever told to stop.
fn scheduler_was_stopped(sys: &FoSystem) -> bool {
    std::fs::read_to_string(sys.scheduler.with_extension("events"))
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("down"))
}

/// How many times the scheduler stand-in was started (once when the system was built).
fn scheduler_starts(sys: &FoSystem) -> usize {
    std::fs::read_to_string(sys.scheduler.with_extension("events"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("up"))
        .count()
}

/// Every byte ward keeps under its state folder (database, WAL, logs).
fn state_bytes(s: &Scratch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack = vec![s.state().parent().expect("state folder").to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read state folder").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.extend(b);
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Lose everything: the scheduler, the database cluster (server stopped, data
/// folder removed), the repository and ward's link to it. restore-full,
/// given only the location of FOSSology's configuration and how to create a
/// cluster, brings back every row and every file.
#[test]
fn lose_everything_restore_with_no_cluster_at_all() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    let etc = s.path().join("etc");
    sys.write_conf(&etc, 3);
    let counts = sys.counts();
    let files = sys.listing(None);

    let backup = run(&s, &sys, &etc, "backup-full.yml", &[]);
    assert_eq!(backup.code, 0, "{}", backup.stderr);
    let link = sys.root.join("ward-work/repository");
    assert_eq!(
        std::fs::read_link(&link).expect("link to the repository"),
        sys.repo,
        "the repository host folder is derived from fossology.conf"
    );
    let snap = s.path().join("backup/snapshots/latest/repository");
    assert!(
        snap.join("gold").is_dir() && snap.join("files").is_dir(),
        "the snapshot holds the repository host folder's trees"
    );

    let _ = Command::new(&sys.scheduler).arg("--kill").status();
    sys.cluster.stop_immediately();
    std::fs::remove_dir_all(sys.cluster.data()).expect("rm cluster data");
    std::fs::remove_dir_all(&sys.repo).expect("rm repository");
    std::fs::remove_dir_all(sys.root.join("ward-work")).expect("rm ward's work folder");

    // `none` refuses, and touches nothing: the scheduler is not even stopped.
    let refused = run(
        &s,
        &sys,
        &etc,
        "restore-full.yml",
        &["--var", "create_cluster=none"],
    );
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("no PostgreSQL answers at")
            && refused.stderr.contains("create_cluster is none"),
        "{}",
        refused.stderr
    );
    assert!(!sys.repo.exists() || std::fs::read_dir(&sys.repo).expect("ls").next().is_none());
    let status = s.status(None);
    assert_eq!(status_step(&status, "ensure-cluster")["state"], "failed");
    assert_ne!(status_step(&status, "stop-scheduler")["state"], "succeeded");

    let create = sys.create_cluster_command();
    let restore = run(
        &s,
        &sys,
        &etc,
        "restore-full.yml",
        &["--var", &format!("create_cluster={create}")],
    );
    assert_eq!(restore.code, 0, "{}", restore.stderr);
    let log = s
        .ward()
        .args(["log", "last", "ensure-cluster"])
        .run()
        .expect_code(0)
        .stdout;
    assert!(log.contains("creating a cluster"), "{log}");
    assert_eq!(sys.counts(), counts, "every table's rows are back");
    assert_eq!(
        sys.listing(None),
        files,
        "every file is back, hard links included"
    );
    assert!(sys.scheduler_up(), "the scheduler runs after the restore");
    assert!(
        !contains(&state_bytes(&s), DB_CONF_PASSWORD),
        "Db.conf's password never reaches ward's state or logs"
    );
}

/// A repository that is not FOSSology's is refused before the scheduler is
/// stopped, with exit code 1 and a message that names what is wrong.
#[test]
fn a_repository_path_that_is_wrong_refuses_to_back_up() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    let etc = s.path().join("etc");
    let conf = sys.write_conf(&etc, 3);
    let good_conf = std::fs::read_to_string(&conf).expect("conf");
    let path = sys.repo.parent().expect("path").display().to_string();

    let refuse = |name: &str, extra: &[&str], expect: &[&str]| {
        let r = run(&s, &sys, &etc, name, extra);
        assert_eq!(r.code, 1, "{name} {extra:?}: {}", r.stderr);
        for e in expect {
            assert!(
                r.stderr.contains(e),
                "{name} {extra:?}: no `{e}` in {}",
                r.stderr
            );
        }
        assert!(
            !scheduler_was_stopped(&sys),
            "{name} {extra:?}: the scheduler was stopped"
        );
        assert!(sys.scheduler_up());
        assert_eq!(
            scheduler_starts(&sys),
            1,
            "{name} {extra:?}: a scheduler that was not stopped is not started again"
        );
        let status = s.status(None);
        assert_eq!(status_step(&status, "check-config")["state"], "failed");
        assert_ne!(status_step(&status, "stop-scheduler")["state"], "succeeded");
    };

    // fossology.conf's `path` given as the repository (the old documented value).
    refuse(
        "backup-gold.yml",
        &["--var", &format!("repo={path}")],
        &["has no gold/ folder", "is that the repository host folder?"],
    );
    // fossology.conf pointing at a folder that is not there.
    std::fs::write(&conf, good_conf.replace(&path, "/nonexistent/fossology")).expect("conf");
    refuse(
        "backup-full.yml",
        &[],
        &["/nonexistent/fossology/repository does not exist"],
    );
    // A split repository is refused, not half backed up.
    std::fs::write(
        &conf,
        good_conf.replace("[DIRECTORIES]", "storage2[] = files 80 ff\n\n[DIRECTORIES]"),
    )
    .expect("conf");
    refuse(
        "backup-full.yml",
        &[],
        &["splits the repository across hosts"],
    );
    // A depth that does not match the folders.
    std::fs::write(&conf, good_conf.replace("depth = 3", "depth = 2")).expect("conf");
    refuse(
        "backup-gold.yml",
        &[],
        &["not where FOSSology's depth 2 puts it"],
    );
    std::fs::write(&conf, &good_conf).expect("conf");
    // Db.conf naming another database than the playbook's.
    let db_conf = etc.join("Db.conf");
    let good_db = std::fs::read_to_string(&db_conf).expect("Db.conf");
    std::fs::write(
        &db_conf,
        good_db.replace("dbname=fossology", "dbname=fossy_prod"),
    )
    .expect("Db.conf");
    refuse("backup-full.yml", &[], &["--var fossology_db=fossy_prod"]);
    std::fs::write(&db_conf, &good_db).expect("Db.conf");
    // An empty gold/ (a disk not mounted).
    let gold = sys.repo.join("gold");
    let aside = sys.root.join("gold-aside");
    std::fs::rename(&gold, &aside).expect("move gold");
    std::fs::create_dir(&gold).expect("empty gold");
    refuse("backup-gold.yml", &[], &["gold is empty"]);
    std::fs::remove_dir(&gold).expect("rm empty gold");
    std::fs::rename(&aside, &gold).expect("gold back");

    // The standard configuration needs no --var repo: gold is backed up.
    let ok = run(&s, &sys, &etc, "backup-gold.yml", &[]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let backed_up = s.path().join("backup/snapshots/latest/repository/gold");
    let gold_files = sys.listing(Some("gold")).len();
    assert!(gold_files > 0);
    let mut n = 0;
    let mut stack = vec![backed_up];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read").flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    assert_eq!(n, gold_files, "every gold file is in the backup");

    // A work_dir others can write is refused: whoever can replace the link
    // there chooses what a restore overwrites.
    let work = sys.root.join("ward-work");
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let starts = scheduler_starts(&sys);
    let r = run(&s, &sys, &etc, "backup-gold.yml", &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("(work_dir) is owned by uid 0 with mode 777"),
        "{}",
        r.stderr
    );
    assert_eq!(
        scheduler_starts(&sys),
        starts,
        "nothing was stopped or started"
    );
    assert!(sys.scheduler_up());
    assert!(!contains(&state_bytes(&s), DB_CONF_PASSWORD));
}
