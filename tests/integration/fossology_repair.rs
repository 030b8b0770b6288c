//! FOSSology repository repair (`playbooks/fossology/repair-repository.yml`):
//! part of the repository is lost while the database is fine. The repair
//! copies back what the snapshot has, keeps the database as it is (work done
//! after the backup included), re-queues what only a reunpack can re-create
//! and reports what is lost everywhere.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use crate::harness::{Scratch, repo_path};
use crate::system::FoSystem;

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

/// The rows of `table` matching `filter`, as text, in a fixed order.
fn rows(sys: &FoSystem, table: &str, filter: &str) -> String {
    sys.cluster.psql(
        "fossology",
        &format!(
            "SELECT string_agg(t::text, E'\\n' ORDER BY t::text) FROM {table} t WHERE {filter}"
        ),
    )
}

/// `n` files of files/ that the snapshot has (the grown ones), picked evenly.
fn some_unpacked_files(sys: &FoSystem, n: usize) -> Vec<String> {
    let all: Vec<String> = sys
        .listing(Some("files"))
        .into_keys()
        .filter(|k| k.ends_with(|c: char| c.is_ascii_digit()))
        .collect();
    let step = (all.len() / n).max(1);
    all.into_iter().step_by(step).take(n).collect()
}

#[test]
fn repair_copies_back_lost_files_keeps_the_database_and_requeues_the_rest() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    sys.grow(400, 0);
    sys.record_unpacked_items();
    let backup = run(&s, &sys, "backup-full.yml", &[]);
    assert_eq!(backup.code, 0, "{}", backup.stderr);

    // A day of work after the backup: two new uploads and more rows.
    let (u4, _, items4) = sys.add_upload("after-4", &["item a\n", "item b\n"], 7, 3);
    let (u5, archive5, _) = sys.add_upload("after-5", &["item c\n"], 8, 4);
    let (_, archive6, _) = sys.add_upload("after-6", &["item d\n"], 8, 4);
    sys.cluster.psql(
        "fossology",
        "INSERT INTO jobqueue (jq_job_fk, jq_type, jq_args, jq_starttime, jq_endtime, jq_end_bits) \
         SELECT 1, 'copyright', g::text, now(), now(), 1 FROM generate_series(1, 10) g",
    );
    let files = sys.listing(None);
    let max_job = sys.cluster.psql("fossology", "SELECT max(job_pk) FROM job");
    let max_jq = sys
        .cluster
        .psql("fossology", "SELECT max(jq_pk) FROM jobqueue");
    let jobs_before = rows(&sys, "job", "true");
    let jobqueue_before = rows(&sys, "jobqueue", "true");
    let jobdepends_before = rows(&sys, "jobdepends", "true");
    let upload_before = rows(&sys, "upload", "true");
    let pfile_before = rows(&sys, "pfile", "true");
    let ars_before = rows(&sys, "ununpack_ars", &format!("upload_fk <> {u4}"));

    // The loss: 1% of files/, and gold/files archive pairs in every way.
    let mut lost = some_unpacked_files(&sys, 4);
    let a1 = sys.archive_of(1);
    let a2 = sys.archive_of(2);
    let a3 = sys.archive_of(3);
    let rel = |kind: &str, name: &str| {
        sys.path_of(kind, name)
            .strip_prefix(&sys.repo)
            .expect("in repo")
            .display()
            .to_string()
    };
    // Upload 1 loses both halves, upload 2 its gold, upload 3 its copy in files/.
    lost.extend([
        rel("gold", &a1),
        rel("files", &a1),
        rel("gold", &a2),
        rel("files", &a3),
    ]);
    // After the backup: upload 4 loses an unpacked item, upload 5 its
    // archive, upload 6 its gold file only (its copy in files/ is the same
    // content, so it is linked back).
    lost.push(rel("gold", &archive6));
    let gone = [
        rel("files", &items4[0]),
        rel("gold", &archive5),
        rel("files", &archive5),
    ];
    for f in lost.iter().chain(&gone) {
        std::fs::remove_file(sys.repo.join(f)).expect("lose");
    }

    let repair = run(&s, &sys, "repair-repository.yml", &[]);
    // Upload 5's archive is nowhere: the run says so and fails.
    assert_eq!(repair.code, 1, "{}", repair.stderr);
    assert!(
        repair
            .stderr
            .contains(&format!("upload(s) {u5}: archive in neither")),
        "{}",
        repair.stderr
    );
    let states = s.step_states();
    for step in [
        "verify-snapshot",
        "relink-archives",
        "copy-missing",
        "requeue-missing",
        "start-scheduler",
    ] {
        assert_eq!(states[step], "succeeded", "{step}: {states:?}");
    }
    assert_eq!(states["check-lost"], "failed");
    assert!(sys.scheduler_up(), "the scheduler runs after the repair");

    // Every lost file the snapshot has is back, byte for byte, with the
    // gold<->files hard links the backup had; nothing else changed.
    let mut expected = files.clone();
    for f in &gone {
        expected.remove(f);
    }
    assert_eq!(sys.listing(None), expected);
    for a in [&a1, &a2, &a3, &archive6] {
        let gold = std::fs::metadata(sys.path_of("gold", a))
            .expect("gold")
            .ino();
        let copy = std::fs::metadata(sys.path_of("files", a))
            .expect("files")
            .ino();
        assert_eq!(
            gold, copy,
            "archive {a} is one file in gold/ and files/ again"
        );
    }

    // The database is not rolled back: every row from before the repair is
    // as it was, the work after the backup included.
    assert_eq!(rows(&sys, "upload", "true"), upload_before);
    assert_eq!(rows(&sys, "pfile", "true"), pfile_before);
    assert_eq!(
        rows(&sys, "job", &format!("job_pk <= {max_job}")),
        jobs_before
    );
    assert_eq!(
        rows(&sys, "jobqueue", &format!("jq_pk <= {max_jq}")),
        jobqueue_before
    );
    assert_eq!(
        rows(
            &sys,
            "jobdepends",
            &format!("jdep_jq_depends_fk <= {max_jq}")
        ),
        jobdepends_before
    );
    assert_eq!(
        rows(&sys, "ununpack_ars", &format!("upload_fk <> {u4}")),
        ars_before
    );

    // Upload 4 lost an item no snapshot has: one reunpack job, owned by the
    // upload's user and group, unpack state reset, its pending nomos waiting
    // for it. Upload 5 (no archive anywhere) is not queued.
    assert_eq!(
        sys.cluster.psql(
            "fossology",
            &format!(
                "SELECT string_agg(concat_ws('|', j.job_upload_fk, j.job_user_fk, j.job_group_fk, q.jq_type, q.jq_args, q.jq_starttime IS NULL), ',') \
                 FROM job j JOIN jobqueue q ON q.jq_job_fk = j.job_pk WHERE j.job_pk > {max_job}"
            )
        ),
        format!("{u4}|7|3|ununpack|{u4}|t")
    );
    assert_eq!(
        sys.cluster.psql(
            "fossology",
            &format!(
                "SELECT string_agg(w.jq_type, ',') FROM jobdepends d JOIN jobqueue w ON w.jq_pk = d.jdep_jq_fk \
                 WHERE d.jdep_jq_depends_fk > {max_jq}"
            )
        ),
        "nomos"
    );
    assert_eq!(
        sys.cluster.psql(
            "fossology",
            &format!("SELECT ars_success FROM ununpack_ars WHERE upload_fk = {u4}")
        ),
        "f"
    );
    let reports = sys.root.join("reports");
    let report = |prefix: &str| -> String {
        let entry = std::fs::read_dir(&reports)
            .expect("reports")
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix}* report"));
        std::fs::read_to_string(entry.path()).expect("report")
    };
    assert_eq!(report("repair-lost-").trim(), u5.to_string());
    assert!(report("repair-queued-").starts_with(&format!("{u4} ")));

    // A second run finds nothing more to do: no second reunpack job.
    let again = run(&s, &sys, "repair-repository.yml", &[]);
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert_eq!(
        sys.cluster.psql(
            "fossology",
            &format!("SELECT count(*) FROM job WHERE job_pk > {max_job}")
        ),
        "1"
    );
}

/// Loss only of files the snapshot has: everything is back, no job is
/// queued, the run succeeds.
#[test]
fn repair_of_files_the_snapshot_has_queues_nothing() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    sys.grow(100, 0);
    sys.record_unpacked_items();
    assert_eq!(run(&s, &sys, "backup-full.yml", &[]).code, 0);
    let files = sys.listing(None);
    let counts = sys.counts();
    for f in some_unpacked_files(&sys, 10) {
        std::fs::remove_file(sys.repo.join(f)).expect("lose");
    }
    let repair = run(&s, &sys, "repair-repository.yml", &[]);
    assert_eq!(repair.code, 0, "{}", repair.stderr);
    assert_eq!(sys.listing(None), files);
    assert_eq!(sys.counts(), counts, "no row added or removed");
    assert!(sys.scheduler_up());
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Measures (prints, does not assert) the repair of 1% lost files against
/// the full restore on the same loss, side by side, in alternating order.
/// `cargo test --test integration repair_time -- --ignored --nocapture`
#[test]
#[ignore = "a measurement for docs/PERFORMANCE.md, not a check"]
fn repair_time_against_full_restore() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    let total: usize = std::env::var("WARD_REPAIR_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    sys.grow(total, 20_000);
    sys.record_unpacked_items();
    assert_eq!(run(&s, &sys, "backup-full.yml", &[]).code, 0);
    let files = sys.listing(None);
    let lose = |round: usize| {
        let all: Vec<String> = files
            .keys()
            .filter(|k| k.starts_with("files/"))
            .cloned()
            .collect();
        let n = all.len() / 100;
        for f in all.iter().skip(round).step_by(100).take(n) {
            std::fs::remove_file(sys.repo.join(f)).expect("lose");
        }
    };
    let timed = |name: &str, extra: &[&str]| {
        let t = Instant::now();
        let r = run(&s, &sys, name, extra);
        let took = t.elapsed();
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        assert_eq!(sys.listing(None), files);
        let steps: Vec<String> = s.status(None)["steps"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|st| format!("{} {}ms", st["id"], st["duration_ms"]))
                    .collect()
            })
            .unwrap_or_default();
        let down = sys.last_downtime().unwrap_or_default();
        println!(
            "{name} {took:?}, scheduler down {down:?}: {}",
            steps.join(", ")
        );
        (took, down)
    };
    let (mut repair, mut restore) = (Vec::new(), Vec::new());
    for round in 0..5 {
        let mut one = |which: bool| {
            lose(round);
            if which {
                repair.push(timed("repair-repository.yml", &[]));
            } else {
                restore.push(timed(
                    "restore-full.yml",
                    &["--var", "replace_existing_db=true"],
                ));
            }
        };
        one(round % 2 == 0);
        one(round % 2 != 0);
    }
    // For scale: the full restore of a repository lost entirely.
    let mut everything = Vec::new();
    for _ in 0..3 {
        std::fs::remove_dir_all(&sys.repo).expect("lose everything");
        everything.push(timed(
            "restore-full.yml",
            &["--var", "replace_existing_db=true"],
        ));
    }
    let wall = |v: &[(Duration, Duration)]| median(v.iter().map(|x| x.0).collect());
    let down = |v: &[(Duration, Duration)]| median(v.iter().map(|x| x.1).collect());
    let (r, f, e) = (wall(&repair), wall(&restore), wall(&everything));
    println!(
        "repository: {} files; 1% of files/ lost each round\n\
         repair:                    median {r:?}, scheduler down {:?}\n\
         full restore, same loss:   median {f:?}, scheduler down {:?}\n\
         full restore, all lost:    median {e:?}, scheduler down {:?}\n\
         ratio to the same loss {:.2}, to all lost {:.2}",
        files.len(),
        down(&repair),
        down(&restore),
        down(&everything),
        r.as_secs_f64() / f.as_secs_f64(),
        r.as_secs_f64() / e.as_secs_f64()
    );
}
