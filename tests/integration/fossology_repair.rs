//! FOSSology repository repair (`playbooks/fossology/repair-repository.yml`):
//! part of the repository is lost while the database is fine. The repair
//! copies back what the snapshot has, keeps the database as it is (work done
//! after the backup included), re-queues what only a reunpack can re-create
//! and reports what is lost everywhere.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use crate::harness::{Scratch, repo_path};
use crate::system::{FoSystem, content_name};

fn playbook(name: &str) -> String {
    repo_path(&format!("playbooks/fossology/{name}"))
        .display()
        .to_string()
}

fn run(s: &Scratch, sys: &FoSystem, name: &str, extra: &[&str]) -> crate::harness::Run {
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
    sys.grow_named(400, 0);
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
        "copy-missing",
        "requeue-missing",
        "start-scheduler",
        "check-refused",
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
    sys.grow_named(100, 0);
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
    // The snapshot's names came from its manifest (its checksum holds), not
    // from a walk; only the 10 lost files were copied.
    let log = step_log(&s, "copy-missing");
    assert!(log.contains("snapshot listed from its manifest"), "{log}");
    assert!(log.contains("copied back: 10 file(s)"), "{log}");
    assert!(sys.scheduler_up());
}

/// What the last run's step `step` printed.
fn step_log(s: &Scratch, step: &str) -> String {
    s.ward()
        .args(["log", "last", step])
        .run()
        .expect_code(0)
        .stdout
}

/// The snapshot the repair copies from (`latest`), resolved.
fn snapshot_repo(s: &Scratch) -> std::path::PathBuf {
    std::fs::canonicalize(s.path().join("backup/snapshots/latest"))
        .expect("snapshot")
        .join("repository")
}

/// The repair checks each file before it copies it back: a snapshot file
/// whose content no longer matches its content-addressed name, or a file
/// that is not content-addressed and no longer matches the snapshot's
/// manifest, stays out of the repository; the run names it, copies back
/// everything else, re-queues the upload that needed it and fails at its
/// end.
#[test]
fn repair_refuses_snapshot_files_that_fail_their_check() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    sys.grow_named(100, 0);
    sys.record_unpacked_items();
    assert_eq!(run(&s, &sys, "backup-full.yml", &[]).code, 0);
    let files = sys.listing(None);
    let max_job = sys.cluster.psql("fossology", "SELECT max(job_pk) FROM job");
    let snap = snapshot_repo(&s);

    // Lost: 5 grown files, an unpacked item of upload 1, the license and
    // the log file (neither is content-addressed).
    let mut lost = some_unpacked_files(&sys, 5);
    let item = content_name(b"upload 1 item 1\n");
    let item_rel = sys
        .path_of("files", &item)
        .strip_prefix(&sys.repo)
        .expect("in repo")
        .display()
        .to_string();
    let license = "license/00/00/00/0a1b2c3d.lic.10".to_owned();
    let log = "logs/00/00/00/000001".to_owned();
    lost.extend([item_rel.clone(), license.clone(), log.clone()]);
    for f in &lost {
        std::fs::remove_file(sys.repo.join(f)).expect("lose");
    }
    // Damaged in the snapshot (a new file each time, so that `current/`,
    // which shares the snapshot's inodes, is the only other copy changed):
    // a grown file keeps its size but not its content, upload 1's item is
    // cut short, the license grows a byte.
    let damage = |rel: &str, body: &[u8]| {
        let p = snap.join(rel);
        std::fs::remove_file(&p).expect("unlink");
        std::fs::write(&p, body).expect("damage");
    };
    let grown = lost[2].clone();
    let len = std::fs::metadata(snap.join(&grown)).expect("meta").len() as usize;
    damage(&grown, &vec![b'x'; len]);
    damage(&item_rel, b"upload 1");
    damage(&license, b"MIT License!");

    let repair = run(&s, &sys, "repair-repository.yml", &[]);
    assert_eq!(repair.code, 1, "{}", repair.stderr);
    let states = s.step_states();
    for step in [
        "copy-missing",
        "requeue-missing",
        "start-scheduler",
        "check-lost",
    ] {
        assert_eq!(states[step], "succeeded", "{step}: {states:?}");
    }
    assert_eq!(states["check-refused"], "failed");
    assert!(sys.scheduler_up());
    // The run names each refused file and why.
    for (f, why) in [
        (&grown, "sha1 "),
        (&item_rel, "size 8 does not match its name"),
        (&license, "size 12 does not match the manifest (11)"),
    ] {
        assert!(
            repair.stderr.contains(&format!("{f}: {why}")),
            "{f}: {}",
            repair.stderr
        );
    }
    assert!(
        repair.stderr.contains("3 file(s) of snapshot"),
        "{}",
        repair.stderr
    );

    // Every other lost file is back as it was; the refused ones stay out.
    let mut expected = files.clone();
    for f in [&grown, &item_rel, &license] {
        expected.remove(f);
    }
    assert_eq!(sys.listing(None), expected);
    // Upload 1's item is re-created by a reunpack job, as for a file no
    // snapshot has.
    assert_eq!(
        sys.cluster.psql(
            "fossology",
            &format!(
                "SELECT string_agg(job_upload_fk::text, ',') FROM job WHERE job_pk > {max_job}"
            )
        ),
        "1"
    );
}

/// A snapshot whose manifest is damaged: its names come from a walk, its
/// content-addressed files are still checked against their names and
/// copied back, and the files only the manifest could vouch for are
/// refused.
#[test]
fn repair_with_a_damaged_manifest_copies_only_what_names_vouch_for() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    sys.grow_named(50, 0);
    sys.record_unpacked_items();
    assert_eq!(run(&s, &sys, "backup-full.yml", &[]).code, 0);
    let files = sys.listing(None);
    let set = snapshot_repo(&s).parent().expect("set").to_path_buf();
    let manifest = set.parent().expect("snapshots").join(format!(
        ".{}.manifest.json",
        set.file_name().expect("name").to_string_lossy()
    ));
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::remove_file(&manifest).expect("unlink");
    std::fs::write(&manifest, text.replacen("\"size\":11,", "\"size\":12,", 1)).expect("damage");
    let mut lost = some_unpacked_files(&sys, 3);
    let license = "license/00/00/00/0a1b2c3d.lic.10".to_owned();
    lost.push(license.clone());
    for f in &lost {
        std::fs::remove_file(sys.repo.join(f)).expect("lose");
    }

    let repair = run(&s, &sys, "repair-repository.yml", &[]);
    assert_eq!(repair.code, 1, "{}", repair.stderr);
    assert!(
        repair.stderr.contains(&format!(
            "{license}: not content-addressed and manifest {} is damaged",
            manifest.display()
        )),
        "{}",
        repair.stderr
    );
    let log = step_log(&s, "copy-missing");
    assert!(log.contains("snapshot listed by a walk"), "{log}");
    let mut expected = files.clone();
    expected.remove(&license);
    assert_eq!(sys.listing(None), expected);
}

/// The repair only adds: a file that exists in the repository is left as
/// it is, even when the snapshot holds other content under its name, and
/// files the snapshot does not have stay.
#[test]
fn repair_never_overwrites_or_deletes_what_the_repository_has() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    sys.grow_named(100, 0);
    sys.record_unpacked_items();
    assert_eq!(run(&s, &sys, "backup-full.yml", &[]).code, 0);
    let picked = some_unpacked_files(&sys, 6);
    let (lost, kept) = picked.split_at(3);
    for f in lost {
        std::fs::remove_file(sys.repo.join(f)).expect("lose");
    }
    // In the repository since the backup: other content under a snapshot
    // file's name (a new inode, so the snapshot keeps its own), a
    // log rewritten, and a file the snapshot does not have.
    for f in kept {
        let p = sys.repo.join(f);
        std::fs::remove_file(&p).expect("unlink");
        std::fs::write(&p, b"changed in the repository").expect("write");
    }
    let log = sys.repo.join("logs/00/00/00/000001");
    std::fs::remove_file(&log).expect("unlink");
    std::fs::write(&log, b"agent log, longer now").expect("write");
    let extra = sys.repo.join("files/ff/ff/ff/made-after-the-backup");
    std::fs::create_dir_all(extra.parent().expect("parent")).expect("mkdir");
    std::fs::write(&extra, b"new").expect("write");
    let before = sys.listing(None);

    let repair = run(&s, &sys, "repair-repository.yml", &[]);
    assert_eq!(repair.code, 0, "{}", repair.stderr);
    let after = sys.listing(None);
    for (f, entry) in &before {
        assert_eq!(after.get(f), Some(entry), "{f} was changed or deleted");
    }
    let added: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    let mut lost_sorted: Vec<&String> = lost.iter().collect();
    lost_sorted.sort();
    assert_eq!(added, lost_sorted, "only the lost files were added");
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
    sys.grow_named(total, 20_000);
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
