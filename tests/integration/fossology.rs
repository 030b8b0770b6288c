//! FOSSology end to end: the shipped playbooks against a small
//! FOSSology-like system (real PostgreSQL, real repository tree, a
//! scheduler stand-in with an agent process).

use std::process::Command;

use crate::harness::{Scratch, repo_path, status_step};

use crate::system::FoSystem;

fn playbook(name: &str) -> String {
    repo_path(&format!("playbooks/fossology/{name}"))
        .display()
        .to_string()
}

/// `ward run <playbook>` pointed at the test system and `<scratch>/backup`.
fn run_cmd(s: &Scratch, sys: &FoSystem, name: &str) -> crate::harness::Ward {
    s.ward()
        .arg("run")
        .arg(playbook(name))
        .args(sys.vars(&s.path().join("backup")))
}

fn run(s: &Scratch, sys: &FoSystem, name: &str, extra: &[&str]) -> crate::harness::Run {
    run_cmd(s, sys, name).args(extra).run()
}

fn wreck(sys: &FoSystem) {
    let _ = Command::new(&sys.scheduler).arg("--kill").status();
    sys.cluster.psql("postgres", "DROP DATABASE fossology");
    std::fs::remove_dir_all(&sys.repo).expect("rm repository");
}

#[test]
fn full_backup_then_disaster_then_full_restore() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    // Files under every hashed prefix, so both halves of the copy have work.
    sys.grow(64, 0);
    let counts = sys.counts();
    let files = sys.listing(None);
    let backup = run(&s, &sys, "backup-full.yml", &[]);
    assert_eq!(backup.code, 0, "{}", backup.stderr);
    let status = s.status(None);
    for half in ["copy-repository", "copy-repository-rest"] {
        let attempts = s
            .ward()
            .args(["log", "last", half])
            .run()
            .expect_code(0)
            .stdout;
        let transferred = attempts
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("Number of regular files transferred: ")
            })
            .and_then(|n| n.replace(',', "").parse::<u64>().ok());
        assert!(
            transferred.is_some_and(|n| n > 10),
            "{half} copied its share: {attempts}"
        );
        let step = status_step(&status, half);
        assert_eq!(step["state"], "succeeded", "{step}");
    }
    assert!(
        sys.scheduler_running(),
        "the scheduler runs again after the backup"
    );
    let snap = s.path().join("backup/snapshots/latest");
    let unfinished: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(snap.join("unfinished-jobs.json")).expect("jobs"),
    )
    .expect("json");
    assert_eq!(unfinished.as_array().map(Vec::len), Some(1), "{unfinished}");
    assert_eq!(unfinished[0]["jq_type"], "nomos");
    s.ward().arg("verify").arg(&snap).run().expect_code(0);

    wreck(&sys);
    let restore = run(&s, &sys, "restore-full.yml", &[]);
    assert_eq!(restore.code, 0, "{}", restore.stderr);
    assert_eq!(sys.counts(), counts, "every table's row count is back");
    assert_eq!(
        sys.listing(None),
        files,
        "every file is back, hard links included"
    );
    assert!(
        sys.scheduler_running(),
        "the scheduler runs after the restore"
    );
}

#[test]
fn gold_backup_then_disaster_then_gold_restore_requeues_unpack() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    let counts = sys.counts();
    let gold = sys.listing(Some("gold"));
    let license = sys.listing(Some("license"));
    let backup = run(&s, &sys, "backup-gold.yml", &[]);
    assert_eq!(backup.code, 0, "{}", backup.stderr);
    let repo_in_backup = s.path().join("backup/current/repository");
    assert!(repo_in_backup.join("gold").is_dir() && !repo_in_backup.join("files").exists());

    wreck(&sys);
    let restore = run(&s, &sys, "restore-gold.yml", &[]);
    assert_eq!(restore.code, 0, "{}", restore.stderr);
    let strip_links =
        |m: std::collections::BTreeMap<String, (String, u64)>| -> Vec<(String, String)> {
            m.into_iter().map(|(k, (v, _))| (k, v)).collect()
        };
    assert_eq!(strip_links(sys.listing(Some("gold"))), strip_links(gold));
    assert_eq!(sys.listing(Some("license")), license);
    assert!(
        !sys.repo.join("files").exists(),
        "unpacked files are re-created by reunpack, not restored"
    );
    // Every upload lost its unpacked files, so each gets one reunpack job;
    // upload 3's was also unfinished at the backup point, and its unfinished
    // job waits for the reunpack. Unpack state is reset.
    assert_eq!(
        sys.cluster.psql(
            "fossology",
            "SELECT string_agg(q.jq_type || ':' || q.jq_args, ',' ORDER BY q.jq_args) FROM jobqueue q JOIN job j ON j.job_pk = q.jq_job_fk WHERE j.job_name = 'reunpack'"
        ),
        "ununpack:1,ununpack:2,ununpack:3"
    );
    assert_eq!(
        sys.cluster.psql(
            "fossology",
            "SELECT count(*) FROM ununpack_ars WHERE ars_success"
        ),
        "0"
    );
    assert_eq!(
        sys.cluster.psql(
            "fossology",
            "SELECT count(*) FROM jobdepends d JOIN jobqueue q ON q.jq_pk = d.jdep_jq_depends_fk WHERE q.jq_type = 'ununpack' AND q.jq_args = '3' AND q.jq_starttime IS NULL"
        ),
        "1"
    );
    let added = |table: &str, n: u32| (counts[table].parse::<u32>().expect("n") + n).to_string();
    let mut expected = counts.clone();
    expected.insert("job".into(), added("job", 3));
    expected.insert("jobqueue".into(), added("jobqueue", 3));
    expected.insert("jobdepends".into(), added("jobdepends", 1));
    assert_eq!(sys.counts(), expected);
    assert!(sys.scheduler_running());
}

/// Disaster 1: the plug is pulled in the middle of a backup (ward and the
/// scheduler die); `ward resume` completes it and the scheduler runs again.
#[test]
fn plug_pulled_mid_backup_then_resume() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    // Commit 3: stop-scheduler recorded succeeded, dump/copy/query started.
    let crashed = run_cmd(&s, &sys, "backup-full.yml")
        .env("WARD_FAULT_KILL_AFTER_COMMITS", "3")
        .env("WARD_BOOT_ID", "before-the-power-cut")
        .run_allow_kill();
    assert_eq!(crashed.code, -1, "{}", crashed.stderr);
    let _ = Command::new(&sys.scheduler).arg("--kill").status();
    // Power comes back: the machine boots and starts the scheduler again.
    sys.start_scheduler();
    let resumed = s
        .ward()
        .args(["resume", "--last"])
        .env("WARD_BOOT_ID", "after-the-power-cut")
        .run();
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(
        sys.scheduler_running(),
        "the scheduler runs after the resumed backup"
    );
    let status = s.status(None);
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["resumes"], 1);
    // Ward died inside the stop-start window, so the window ran again: the
    // scheduler was stopped again before the dump and the copy.
    let stop = status_step(&status, "stop-scheduler");
    assert_eq!(stop["attempts"], 2, "{stop}");
    s.ward()
        .arg("verify")
        .arg(s.path().join("backup/snapshots/latest"))
        .run()
        .expect_code(0);
}

/// Disaster 2: everything is lost (database cluster and repository);
/// restore into a fresh cluster from the backup folder alone.
#[test]
fn lose_everything_then_restore_into_a_fresh_cluster() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    let counts = sys.counts();
    let files = sys.listing(None);
    assert_eq!(run(&s, &sys, "backup-full.yml", &[]).code, 0);
    let _ = Command::new(&sys.scheduler).arg("--kill").status();
    std::fs::remove_dir_all(&sys.repo).expect("rm repository");
    let fresh = crate::pg_cluster::Cluster::start();
    let restore = run(
        &s,
        &sys,
        "restore-full.yml",
        &[
            "--var",
            &format!("pg_host={}", fresh.socket.display()),
            "--var",
            &format!("pg_port={}", fresh.port),
        ],
    );
    assert_eq!(restore.code, 0, "{}", restore.stderr);
    let fresh_counts: std::collections::BTreeMap<String, String> = counts
        .keys()
        .map(|t| {
            (
                t.clone(),
                fresh.psql("fossology", &format!("SELECT count(*) FROM {t}")),
            )
        })
        .collect();
    assert_eq!(fresh_counts, counts);
    assert_eq!(sys.listing(None), files);
    assert!(sys.scheduler_running());
}

/// Disaster 3: only the database is lost; restore it and leave the
/// repository (which has moved on since the backup) untouched.
#[test]
fn lose_only_the_database() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    let counts = sys.counts();
    assert_eq!(run(&s, &sys, "backup-full.yml", &[]).code, 0);
    std::fs::write(
        sys.repo.join("logs/00/00/00/000002"),
        "written after the backup",
    )
    .expect("new log");
    let files = sys.listing(None);
    sys.cluster.psql("postgres", "DROP DATABASE fossology");
    let restore = run(
        &s,
        &sys,
        "restore-full.yml",
        &["--var", "restore_repository=false"],
    );
    assert_eq!(restore.code, 0, "{}", restore.stderr);
    assert_eq!(sys.counts(), counts);
    assert_eq!(sys.listing(None), files, "the repository is untouched");
    assert!(sys.scheduler_running());
}

/// Disaster 4: an agent and its storage are lost (part of the repository):
/// the full restore brings it back; the gold-only restore re-queues it.
#[test]
fn lose_part_of_the_repository() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    let files = sys.listing(None);
    assert_eq!(run(&s, &sys, "backup-full.yml", &[]).code, 0);
    let lost: Vec<String> = files
        .keys()
        .filter(|k| k.starts_with("files/"))
        .take(3)
        .cloned()
        .collect();
    for f in &lost {
        std::fs::remove_file(sys.repo.join(f)).expect("lose");
    }
    // The database survived; the full restore replaces it as it was at the backup.
    let restore = run(
        &s,
        &sys,
        "restore-full.yml",
        &["--var", "replace_existing_db=true"],
    );
    assert_eq!(restore.code, 0, "{}", restore.stderr);
    assert_eq!(sys.listing(None), files, "the lost files are back");

    let g = Scratch::new();
    let sys = FoSystem::build(&g.path().join("fo"));
    assert_eq!(run(&g, &sys, "backup-gold.yml", &[]).code, 0);
    // Lose the unpacked files of upload 1 only (its archive link in files/ included).
    let archive_1 = sys.cluster.psql(
        "fossology",
        "SELECT lower(pfile_sha1 || '.' || pfile_md5 || '.' || pfile_size) FROM pfile JOIN upload ON pfile_fk = pfile_pk WHERE upload_pk = 1",
    );
    let p = sys.repo.join(format!(
        "files/{}/{}/{}/{archive_1}",
        &archive_1[0..2],
        &archive_1[2..4],
        &archive_1[4..6]
    ));
    std::fs::remove_file(&p).expect("lose upload 1");
    let restore = run(
        &g,
        &sys,
        "restore-gold.yml",
        &["--var", "replace_existing_db=true"],
    );
    assert_eq!(restore.code, 0, "{}", restore.stderr);
    assert_eq!(
        sys.cluster.psql(
            "fossology",
            "SELECT string_agg(q.jq_args, ',' ORDER BY q.jq_args) FROM jobqueue q JOIN job j ON j.job_pk = q.jq_job_fk WHERE j.job_name = 'reunpack'"
        ),
        "1,3",
        "upload 1 lost its unpacked files; upload 3 was unfinished"
    );
}

/// A failing producer (the database stops during the dump) fails the run,
/// leaves `latest` on the last good snapshot and still restarts the scheduler.
#[test]
fn failing_dump_keeps_latest_and_restarts_the_scheduler() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    let night = |day: u32| {
        run_cmd(&s, &sys, "backup-full.yml")
            .env("WARD_NOW", &format!("2026-11-{day:02}T02:00:00"))
            .run()
    };
    assert_eq!(night(20).code, 0);
    sys.cluster.stop_immediately();
    let failed = night(21);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("pg_dumpall failed"),
        "{}",
        failed.stderr
    );
    let latest = std::fs::read_link(s.path().join("backup/snapshots/latest")).expect("latest");
    assert_eq!(latest.display().to_string(), "2026-11-20");
    assert!(!s.path().join("backup/snapshots/2026-11-21").exists());
    assert!(
        sys.scheduler_running(),
        "the scheduler was restarted although the backup failed"
    );
    let states = s.step_states();
    assert_eq!(states["start-scheduler"], "succeeded");
    assert_eq!(states["snapshot"], "skipped");
}

/// Seven nightly backups with simulated dates: one snapshot a night,
/// rotation as configured, unchanged files shared across snapshots.
#[test]
fn seven_nightly_backups() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    for day in 1..=7u32 {
        std::fs::write(
            sys.repo.join(format!("logs/00/00/00/night{day}")),
            format!("night {day}"),
        )
        .expect("log");
        let run = run_cmd(&s, &sys, "backup-full.yml")
            .args([
                "--var",
                "keep_daily=5",
                "--var",
                "keep_weekly=0",
                "--var",
                "keep_monthly=0",
            ])
            .env("WARD_NOW", &format!("2026-11-{day:02}T02:00:00"))
            .run();
        assert_eq!(run.code, 0, "night {day}: {}", run.stderr);
    }
    let snaps = s.path().join("backup/snapshots");
    let names = crate::harness::snapshot_names(&snaps);
    assert_eq!(
        names,
        [
            "2026-11-03",
            "2026-11-04",
            "2026-11-05",
            "2026-11-06",
            "2026-11-07"
        ]
    );
    assert!(
        snaps
            .join("2026-11-07/repository/logs/00/00/00/night7")
            .exists()
    );
    assert!(
        !snaps
            .join("2026-11-03/repository/logs/00/00/00/night4")
            .exists(),
        "old snapshots are not changed"
    );
    use std::os::unix::fs::MetadataExt;
    let license = "repository/license/00/00/00/0a1b2c3d.lic.10";
    let a = std::fs::metadata(snaps.join("2026-11-03").join(license))
        .expect("a")
        .ino();
    let b = std::fs::metadata(snaps.join("2026-11-07").join(license))
        .expect("b")
        .ino();
    assert_eq!(a, b, "unchanged files share one inode across snapshots");
    assert_eq!(
        s.ward()
            .args(["runs", "--json"])
            .run()
            .expect_code(0)
            .json()
            .as_array()
            .map(Vec::len),
        Some(7)
    );
}
