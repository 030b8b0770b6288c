//! FOSSology end to end: the shipped playbooks against a small
//! FOSSology-like system (real PostgreSQL, real repository tree, a
//! scheduler stand-in with an agent process).

use std::process::Command;

use crate::harness::{Scratch, repo_path};

#[path = "../support/fossology.rs"]
mod system;
use system::FoSystem;

fn playbook(name: &str) -> String {
    repo_path(&format!("playbooks/fossology/{name}"))
        .display()
        .to_string()
}

fn run(s: &Scratch, sys: &FoSystem, name: &str, extra: &[&str]) -> crate::harness::Run {
    s.ward()
        .arg("run")
        .arg(playbook(name))
        .args(sys.vars(&s.path().join("backup")))
        .args(extra)
        .run()
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
    let counts = sys.counts();
    let files = sys.listing(None);
    let backup = run(&s, &sys, "backup-full.yml", &[]);
    assert_eq!(backup.code, 0, "{}", backup.stderr);
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
        |m: std::collections::BTreeMap<String, (Vec<u8>, u64)>| -> Vec<(String, Vec<u8>)> {
            m.into_iter().map(|(k, (v, _))| (k, v)).collect()
        };
    assert_eq!(strip_links(sys.listing(Some("gold"))), strip_links(gold));
    assert_eq!(sys.listing(Some("license")), license);
    assert!(
        !sys.repo.join("files").exists(),
        "unpacked files are re-created by reunpack, not restored"
    );
    // The upload whose job was unfinished at the backup point gets a reunpack job,
    // its unpack state is reset, and the unfinished job waits for the reunpack.
    assert_eq!(
        sys.cluster.psql(
            "fossology",
            "SELECT job_name || ':' || job_upload_fk FROM job WHERE job_name = 'reunpack'"
        ),
        "reunpack:3"
    );
    assert_eq!(
        sys.cluster.psql("fossology", "SELECT jq_type || ':' || jq_args FROM jobqueue jq JOIN job ON job_pk = jq_job_fk WHERE job_name = 'reunpack'"),
        "ununpack:3"
    );
    assert_eq!(
        sys.cluster.psql(
            "fossology",
            "SELECT ars_success FROM ununpack_ars WHERE upload_fk = 3"
        ),
        "f"
    );
    assert_eq!(
        sys.cluster.psql(
            "fossology",
            "SELECT count(*) FROM jobdepends d JOIN jobqueue q ON q.jq_pk = d.jdep_jq_depends_fk WHERE q.jq_type = 'ununpack' AND q.jq_args = '3' AND q.jq_starttime IS NULL"
        ),
        "1"
    );
    let mut expected = counts.clone();
    expected.insert(
        "job".into(),
        (counts["job"].parse::<u32>().expect("n") + 1).to_string(),
    );
    expected.insert(
        "jobqueue".into(),
        (counts["jobqueue"].parse::<u32>().expect("n") + 1).to_string(),
    );
    expected.insert(
        "jobdepends".into(),
        (counts["jobdepends"].parse::<u32>().expect("n") + 1).to_string(),
    );
    assert_eq!(sys.counts(), expected);
    assert!(sys.scheduler_running());
}
