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
        // Restores ask before they overwrite (`confirm:`); no terminal here.
        .args(if name.starts_with("restore") {
            &["--yes"][..]
        } else {
            &[]
        })
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
    // As on any real night, the repository's folders were last changed
    // more than the margin (2 s) before the warm pass starts; else the
    // window's pass would copy them whole.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let backup = run(&s, &sys, "backup-full.yml", &[]);
    assert_eq!(backup.code, 0, "{}", backup.stderr);
    let status = s.status(None);
    // The warm pass (scheduler still running) copied the repository; the
    // copy in the window only looked for what changed since it started,
    // which is what keeps the window short.
    let log_of = |step: &str| {
        s.ward()
            .args(["log", "last", step])
            .run()
            .expect_code(0)
            .stdout
    };
    let log = log_of("warm-copy");
    let warm = log
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Number of regular files transferred: ")
        })
        .and_then(|n| n.replace(',', "").parse::<u64>().ok());
    assert!(warm.is_some_and(|n| n > 20), "warm pass: {log}");
    let step = status_step(&status, "copy-repository");
    assert_eq!(step["state"], "succeeded", "{step}");
    let details = &step["attempt_list"][0]["details"];
    assert_eq!(details["pass"], "changed", "{step}");
    // The stand-in's agent may have added a file since; nothing else
    // changed. The warm pass runs without `-H`: every file with two names
    // (each upload's gold/ and files/ copy) is listed to be linked.
    let (listed, linked) = (details["listed"].as_u64(), details["linked"].as_u64());
    assert!(linked.is_some_and(|n| n >= 2), "{step}");
    assert!(
        listed.zip(linked).is_some_and(|(l, k)| l - k <= 2),
        "{step}"
    );
    assert!(
        details["folders_read"].as_u64().is_some_and(|n| n > 50),
        "{step}"
    );
    let log = log_of("copy-repository");
    assert!(!log.contains("copying everything"), "{log}");
    assert!(
        sys.scheduler_up(),
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
    assert!(sys.scheduler_up(), "the scheduler runs after the restore");
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
    assert!(sys.scheduler_up());
}

/// Disaster 1: the plug is pulled in the middle of a backup (ward and the
/// scheduler die); `ward resume` completes it and the scheduler runs again.
#[test]
fn plug_pulled_mid_backup_then_resume() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    // Commit 5: after check-config, the warm pass (and its flush) and the
    // stop, with the dump, copy and query started: inside the window (the
    // assertions below check that the window ran again).
    let crashed = run_cmd(&s, &sys, "backup-full.yml")
        .env("WARD_FAULT_KILL_AFTER_COMMITS", "5")
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
        sys.scheduler_up(),
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
    assert!(sys.scheduler_up());
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
    assert!(sys.scheduler_up());
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

/// The rows the reunpack step decides, as text that a test compares whole:
/// the reunpack jobs (`upload:user:group`), their jobqueue rows
/// (`upload:type:args:pending|run:end_bits:runonpfile`), every jobdepends row
/// (`upload/job/type>upload/job/type`, in jq_pk order) and ununpack_ars.
struct ReunpackRows {
    jobs: String,
    queue: String,
    depends: String,
    ars: String,
}

fn reunpack_rows(sys: &FoSystem) -> ReunpackRows {
    let q = |sql: &str| sys.cluster.psql("fossology", sql);
    ReunpackRows {
        jobs: q(
            "SELECT string_agg(format('%s:%s:%s', job_upload_fk, job_user_fk, job_group_fk), ',' ORDER BY job_upload_fk, job_pk) \
             FROM job WHERE job_name = 'reunpack'",
        ),
        queue: q(
            "SELECT string_agg(format('%s:%s:%s:%s:%s:%s', j.job_upload_fk, q.jq_type, q.jq_args, \
             CASE WHEN q.jq_starttime IS NULL AND q.jq_endtime IS NULL THEN 'pending' ELSE 'run' END, q.jq_end_bits, coalesce(q.jq_runonpfile, '-')), ',' \
             ORDER BY j.job_upload_fk, q.jq_pk) FROM jobqueue q JOIN job j ON j.job_pk = q.jq_job_fk WHERE j.job_name = 'reunpack'",
        ),
        depends: q(
            "SELECT string_agg(format('%s/%s/%s>%s/%s/%s', ja.job_upload_fk, ja.job_name, a.jq_type, \
             jb.job_upload_fk, jb.job_name, b.jq_type), ',' ORDER BY a.jq_pk, b.jq_pk) \
             FROM jobdepends d JOIN jobqueue a ON a.jq_pk = d.jdep_jq_fk JOIN job ja ON ja.job_pk = a.jq_job_fk \
             JOIN jobqueue b ON b.jq_pk = d.jdep_jq_depends_fk JOIN job jb ON jb.job_pk = b.jq_job_fk",
        ),
        ars: q(
            "SELECT string_agg(upload_fk || ':' || ars_success::text, ',' ORDER BY upload_fk, ars_pk) FROM ununpack_ars",
        ),
    }
}

/// The jobdepends rows of the test system before any reunpack: each
/// upload's nomos waits for its ununpack.
const BASE_DEPENDS: [&str; 3] = [
    "1/upload-1.tar.gz/nomos>1/upload-1.tar.gz/ununpack",
    "2/upload-2.tar.gz/nomos>2/upload-2.tar.gz/ununpack",
    "3/upload-3.tar.gz/nomos>3/upload-3.tar.gz/ununpack",
];

/// What the restore wrote to report_dir: the uploads it queued a reunpack for.
fn queued_report(sys: &FoSystem) -> serde_json::Value {
    queued_report_in(&sys.root.join("reports"))
}

fn queued_report_in(dir: &std::path::Path) -> serde_json::Value {
    let file = std::fs::read_dir(dir)
        .expect("report dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("reunpack-queued-"))
        })
        .expect("reunpack report");
    serde_json::from_str(&std::fs::read_to_string(file).expect("read report")).expect("json")
}

/// A URL upload still downloading at the backup point (no gold archive,
/// wget_agent unfinished) gets no reunpack and its wget row is untouched;
/// the others, all of whose unpacked files are gone, get one each with the
/// upload's owner and group.
#[test]
fn gold_restore_leaves_a_download_in_progress_alone() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    let wget = sys.add_download_in_progress();
    let wget_row = |sys: &FoSystem| {
        sys.cluster.psql(
            "fossology",
            &format!("SELECT q::text FROM jobqueue q WHERE jq_pk = {wget}"),
        )
    };
    let before = wget_row(&sys);
    assert_eq!(run(&s, &sys, "backup-gold.yml", &[]).code, 0);
    wreck(&sys);
    let restore = run(&s, &sys, "restore-gold.yml", &[]);
    assert_eq!(restore.code, 0, "{}", restore.stderr);

    let rows = reunpack_rows(&sys);
    assert_eq!(rows.jobs, "1:101:201,2:102:202,3:103:203");
    assert_eq!(
        rows.queue,
        "1:ununpack:1:pending:0:-,2:ununpack:2:pending:0:-,3:ununpack:3:pending:0:-"
    );
    let mut depends = BASE_DEPENDS.to_vec();
    depends.insert(3, "3/upload-3.tar.gz/nomos>3/reunpack/ununpack");
    depends.extend([
        "4/x.tar.gz/ununpack>4/x.tar.gz/wget_agent",
        "4/x.tar.gz/nomos>4/x.tar.gz/ununpack",
    ]);
    assert_eq!(rows.depends, depends.join(","));
    assert_eq!(rows.ars, "1:false,2:false,3:false");
    assert_eq!(wget_row(&sys), before, "the wget row is untouched");
    assert_eq!(
        sys.cluster.psql(
            "fossology",
            &format!(
                "SELECT count(*) FROM jobdepends WHERE {wget} IN (jdep_jq_fk, jdep_jq_depends_fk)"
            )
        ),
        "1",
        "only upload 4's own ununpack waits for its download"
    );
    let report = queued_report(&sys);
    let uploads: Vec<_> = report
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["upload_pk"].clone())
        .collect();
    assert_eq!(uploads, [1, 2, 3], "{report}");
    assert!(sys.scheduler_up());
}

/// An upload that lost one member file (its archive copy in files/ is
/// still there) is re-unpacked; its unfinished jobs, started or pending,
/// wait for the reunpack; an intact upload is left alone.
#[test]
fn gold_restore_reunpacks_an_upload_that_lost_a_member_file() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    // Upload 2 (its tree in uploadtree_2) has a copyright job still pending.
    sys.cluster.psql(
        "fossology",
        "INSERT INTO jobqueue (jq_job_fk, jq_type, jq_args) SELECT job_pk, 'copyright', '2' FROM job WHERE job_upload_fk = 2",
    );
    assert_eq!(run(&s, &sys, "backup-gold.yml", &[]).code, 0);
    let files = sys.unpacked_files(2);
    assert_eq!(files.len(), 3, "archive and two items: {files:?}");
    std::fs::remove_file(&files[2]).expect("lose a member file");
    assert!(files[0].exists(), "the archive copy is still in files/");

    let restore = run(
        &s,
        &sys,
        "restore-gold.yml",
        &["--var", "replace_existing_db=true"],
    );
    assert_eq!(restore.code, 0, "{}", restore.stderr);
    let rows = reunpack_rows(&sys);
    assert_eq!(
        rows.jobs, "2:102:202,3:103:203",
        "upload 2 lost a file, upload 3 was unfinished, upload 1 is intact"
    );
    assert_eq!(
        rows.queue,
        "2:ununpack:2:pending:0:-,3:ununpack:3:pending:0:-"
    );
    let mut depends = BASE_DEPENDS.to_vec();
    depends.extend([
        "3/upload-3.tar.gz/nomos>3/reunpack/ununpack",
        "2/upload-2.tar.gz/copyright>2/reunpack/ununpack",
    ]);
    depends.sort_by_key(|d| {
        // jq_pk order: upload 1..3's two rows, then the copyright row.
        [
            "1/",
            "2/upload-2.tar.gz/nomos",
            "3/upload-3.tar.gz/nomos>3/upload",
            "3/upload-3.tar.gz/nomos>3/reunpack",
            "2/upload-2.tar.gz/copyright",
        ]
        .iter()
        .position(|p| d.starts_with(p))
    });
    assert_eq!(rows.depends, depends.join(","));
    assert_eq!(rows.ars, "1:true,2:false,3:false");

    let report = queued_report(&sys);
    assert_eq!(report.as_array().map(Vec::len), Some(2), "{report}");
    assert_eq!(report[0]["upload_pk"], 2, "{report}");
    assert_eq!(report[0]["files_missing"], true, "{report}");
    assert_eq!(report[0]["unfinished"], false, "{report}");
    assert_eq!(report[0]["added"], true, "{report}");
    assert_eq!(report[0]["user_fk"], 102, "{report}");
    assert_eq!(report[0]["group_fk"], 202, "{report}");

    // Run again (as a resume after a crash would): nothing is added twice,
    // and the report names the same pending ununpack rows.
    rerun_requeue_step(&s, &sys);
    let again = reunpack_rows(&sys);
    assert_eq!(
        (again.jobs, again.queue, again.depends, again.ars),
        (rows.jobs, rows.queue, rows.depends, rows.ars)
    );
    let rerun = queued_report(&sys);
    for i in 0..2 {
        assert_eq!(rerun[i]["jq_pk"], report[i]["jq_pk"], "{rerun}");
        assert_eq!(rerun[i]["added"], false, "{rerun}");
    }
}

/// The selection and its changes are one transaction: when a statement
/// fails half-way, no job, jobqueue, jobdepends or ununpack_ars row is
/// changed, no report is written, the run fails and the scheduler stays
/// stopped.
#[test]
fn gold_restore_requeue_is_all_or_nothing() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    // A trigger that refuses new jobdepends rows: the last insert fails.
    sys.cluster.psql(
        "fossology",
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'refused by the test'; END$$;\
         CREATE TRIGGER refuse BEFORE INSERT ON jobdepends FOR EACH ROW EXECUTE FUNCTION refuse();",
    );
    assert_eq!(run(&s, &sys, "backup-gold.yml", &[]).code, 0);
    let before = reunpack_rows(&sys);
    let counts = sys.counts();
    wreck(&sys);
    let restore = run(&s, &sys, "restore-gold.yml", &[]);
    assert_eq!(restore.code, 1, "{}", restore.stderr);
    assert_eq!(s.step_states()["requeue-reunpack"], "failed");
    assert!(
        restore.stderr.contains("refused by the test"),
        "{}",
        restore.stderr
    );
    let after = reunpack_rows(&sys);
    assert_eq!(
        (after.jobs, after.queue, after.depends, after.ars),
        (before.jobs, before.queue, before.depends, before.ars)
    );
    assert_eq!(sys.counts(), counts);
    let reports: Vec<_> = std::fs::read_dir(sys.root.join("reports"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        reports.is_empty(),
        "no report and no temp file: {reports:?}"
    );
    assert!(!sys.scheduler_running());
}

/// Runs restore-gold's `requeue-reunpack` step once more, as ward runs it
/// (the templated line from `ward plan`, its env, bash with errexit,
/// nounset, pipefail).
fn rerun_requeue_step(s: &Scratch, sys: &FoSystem) {
    let plan = s
        .ward()
        .args(["plan", "--format", "json"])
        .arg(playbook("restore-gold.yml"))
        .args(sys.vars(&s.path().join("backup")))
        .run()
        .expect_code(0)
        .json();
    let step = plan["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|st| st["id"] == "requeue-reunpack"))
        .expect("requeue-reunpack step");
    let mut cmd = Command::new("bash");
    cmd.args(["-o", "errexit", "-o", "nounset", "-o", "pipefail", "-c"])
        .arg(step["run"].as_str().expect("run line"));
    for (k, v) in step["env"].as_object().expect("env") {
        cmd.env(k, v.as_str().expect("env value"));
    }
    let out = cmd.output().expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An upload that already has a pending ununpack (a reunpack queued before
/// the backup) gets no second one, though its files are missing; its
/// unpack state is still reset so that pending ununpack really runs.
#[test]
fn gold_restore_adds_no_second_pending_ununpack() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    sys.cluster.psql(
        "fossology",
        "INSERT INTO job (job_queued, job_name, job_upload_fk, job_user_fk, job_group_fk) VALUES (now(), 'reunpack', 1, 101, 201);\
         INSERT INTO jobqueue (jq_job_fk, jq_type, jq_args) VALUES (currval('job_job_pk_seq'), 'ununpack', '1');\
         UPDATE ununpack_ars SET ars_success = false WHERE upload_fk = 1;",
    );
    assert_eq!(run(&s, &sys, "backup-gold.yml", &[]).code, 0);
    for f in sys.unpacked_files(1) {
        std::fs::remove_file(f).expect("lose upload 1's files");
    }
    // A report folder whose name needs quoting in the shell.
    let reports = sys.root.join("rep orts'$(x)");
    let restore = run(
        &s,
        &sys,
        "restore-gold.yml",
        &[
            "--var",
            "replace_existing_db=true",
            "--var",
            &format!("report_dir={}", reports.display()),
        ],
    );
    assert_eq!(restore.code, 0, "{}", restore.stderr);
    let rows = reunpack_rows(&sys);
    assert_eq!(
        rows.jobs, "1:101:201,3:103:203",
        "only the one from before the backup for upload 1"
    );
    assert_eq!(
        rows.queue,
        "1:ununpack:1:pending:0:-,3:ununpack:3:pending:0:-"
    );
    assert_eq!(
        sys.cluster.psql(
            "fossology",
            "SELECT count(*) FROM jobqueue q JOIN job j ON j.job_pk = q.jq_job_fk WHERE j.job_upload_fk = 1 AND q.jq_type = 'ununpack' AND q.jq_endtime IS NULL"
        ),
        "1"
    );
    let mut depends = BASE_DEPENDS.to_vec();
    depends.push("3/upload-3.tar.gz/nomos>3/reunpack/ununpack");
    depends.sort_by_key(|d| {
        if d.starts_with("3/upload-3.tar.gz/nomos>3/r") {
            1
        } else {
            0
        }
    });
    assert_eq!(rows.depends, depends.join(","));
    assert_eq!(rows.ars, "1:false,2:true,3:false");
    let report = queued_report_in(&reports);
    assert_eq!(report[0]["upload_pk"], 1, "{report}");
    assert_eq!(report[0]["added"], false, "{report}");
    assert_eq!(report[0]["files_missing"], true, "{report}");
    assert_eq!(report[1]["upload_pk"], 3, "{report}");
    assert_eq!(report[1]["added"], true, "{report}");
    assert_eq!(report[1]["unfinished"], true, "{report}");
    let log = s
        .ward()
        .args(["log", "last", "requeue-reunpack"])
        .run()
        .expect_code(0)
        .stdout;
    assert!(log.contains("uploads to re-unpack: 1,3 ("), "{log}");
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
        failed.stderr.contains("db-point failed"),
        "{}",
        failed.stderr
    );
    let latest = std::fs::read_link(s.path().join("backup/snapshots/latest")).expect("latest");
    assert_eq!(latest.display().to_string(), "2026-11-20");
    assert!(!s.path().join("backup/snapshots/2026-11-21").exists());
    assert!(
        sys.scheduler_up(),
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
