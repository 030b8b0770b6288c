//! snapshot.hardlink, verify and rotate at their edges: a second backup on
//! the same day, a user's own `manifest.json`, reserved names, trees deeper
//! than PATH_MAX, a full disk and the order of rotate and verify. Real
//! files, the real binary.

use std::path::Path;

use crate::harness::{Scratch, Tmpfs, snapshot_names};

/// snapshot -> verify `latest` -> rotate, as the docs show it.
const NIGHTLY: &str = "\
ward: 1
name: nightly
steps:
  - id: snapshot
    action: snapshot.hardlink
    with: { src: current, dir: snaps, hash: all }
  - id: verify
    needs: [snapshot]
    action: verify
    with: { path: snaps/latest }
  - id: rotate
    needs: [verify]
    action: rotate
    with: { dir: snaps, keep_last: 3 }
";

fn latest(snaps: &Path) -> String {
    std::fs::read_link(snaps.join("latest"))
        .expect("latest")
        .display()
        .to_string()
}

fn runs(s: &Scratch) -> usize {
    s.ward()
        .args(["runs", "--json"])
        .run()
        .expect_code(0)
        .json()
        .as_array()
        .map_or(0, Vec::len)
}

#[test]
fn a_second_run_on_the_same_day_makes_a_new_snapshot_and_a_resume_reuses_its_own() {
    let s = Scratch::new();
    s.write("current/morning.txt", "made in the morning\n");
    s.write("p.yml", NIGHTLY);
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let snaps = s.path().join("snaps");
    assert_eq!(latest(&snaps), "2026-11-23");

    // Noon: a file arrives and the operator backs up again, as a new run.
    s.write("current/noon.txt", "added at noon\n");
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert_eq!(latest(&snaps), "2026-11-23.2", "{}", run.stderr);
    assert_eq!(s.read("snaps/2026-11-23.2/noon.txt"), "added at noon\n");
    assert!(!snaps.join("2026-11-23/noon.txt").exists());
    s.ward()
        .arg("verify")
        .arg(snaps.join("2026-11-23.2"))
        .run()
        .expect_code(0);

    // A third run whose snapshot completes but whose step then fails
    // (here: `latest` cannot be switched), as if ward died right after the
    // rename: its resume must reuse that snapshot, not make a fourth.
    s.write("current/afternoon.txt", "added in the afternoon\n");
    std::fs::remove_file(snaps.join("latest")).expect("rm latest");
    std::fs::create_dir(snaps.join("latest")).expect("block latest");
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(1);
    assert!(
        run.stderr.contains("exists and is not a symlink"),
        "{}",
        run.stderr
    );
    assert!(snaps.join("2026-11-23.3").is_dir());
    std::fs::remove_dir(snaps.join("latest")).expect("unblock latest");
    let runs_before = runs(&s);
    s.ward().args(["resume", "--last"]).run().expect_code(0);
    assert_eq!(runs(&s), runs_before, "a resume is not a new run");
    assert_eq!(latest(&snaps), "2026-11-23.3");
    assert!(!snaps.join("2026-11-23.4").exists());
    assert_eq!(
        s.read("snaps/2026-11-23.3/afternoon.txt"),
        "added in the afternoon\n"
    );
    let log = s.ward().args(["log", "last", "snapshot"]).run().stdout;
    assert!(log.contains("completed by this run"), "{log}");

    // keep_last 3 counts `.2` and `.3` as the newest.
    s.write("current/evening.txt", "evening\n");
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert_eq!(
        snapshot_names(&snaps),
        ["2026-11-23.2", "2026-11-23.3", "2026-11-23.4"]
    );
    assert!(
        !snaps.join(".2026-11-23.manifest.json").exists(),
        "rotation deletes the manifest with its snapshot"
    );
}

#[test]
fn a_resume_of_an_older_run_never_moves_latest_back() {
    let s = Scratch::new();
    s.write("current/morning.txt", "morning\n");
    s.write("p.yml", NIGHTLY);
    let snaps = s.path().join("snaps");
    // A run whose snapshot completes but whose step then fails (`latest`
    // cannot be switched), as if ward died right after the rename.
    std::fs::create_dir_all(snaps.join("latest")).expect("block latest");
    s.ward().args(["run", "p.yml"]).run().expect_code(1);
    assert!(snaps.join("2026-11-23").is_dir());
    let first = s
        .ward()
        .args(["runs", "--json"])
        .run()
        .expect_code(0)
        .json()[0]["id"]
        .as_str()
        .expect("run id")
        .to_owned();
    std::fs::remove_dir(snaps.join("latest")).expect("unblock latest");
    // Meanwhile a new run backs up a file that arrived at noon.
    s.write("current/noon.txt", "noon\n");
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert_eq!(latest(&snaps), "2026-11-23.2");
    // Resuming the first run reuses its own snapshot but leaves `latest`
    // at the newer one, which has the noon file.
    s.ward().args(["resume", &first]).run().expect_code(0);
    assert_eq!(latest(&snaps), "2026-11-23.2");
    assert!(!snaps.join("2026-11-23.3").exists());
    let log = s.ward().args(["log", &first, "snapshot"]).run().stdout;
    assert!(
        log.contains("stays at 2026-11-23.2, which is newer"),
        "{log}"
    );
}

#[test]
fn two_playbooks_snapshotting_one_folder_at_once_both_succeed() {
    let s = Scratch::new();
    for i in 0..3000 {
        s.write(&format!("current/d{}/f{i}", i % 30), "x");
    }
    for name in ["one", "two"] {
        s.write(
            &format!("{name}.yml"),
            &NIGHTLY.replace("name: nightly", &format!("name: {name}")),
        );
    }
    for round in 0..3 {
        let _ = std::fs::remove_dir_all(s.path().join("snaps"));
        let start = |p: &str| s.ward().args(["run", p]).spawn();
        let (a, b) = (start("one.yml"), start("two.yml"));
        for child in [a, b] {
            let out = child.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(
            snapshot_names(&s.path().join("snaps")),
            ["2026-11-23", "2026-11-23.2"],
            "round {round}"
        );
    }
}

#[test]
fn suffixes_sort_by_number_not_by_text() {
    let s = Scratch::new();
    s.write("current/f", "x");
    s.write("p.yml", &NIGHTLY.replace("keep_last: 3", "keep_last: 2"));
    for _ in 0..11 {
        s.ward().args(["run", "p.yml"]).run().expect_code(0);
    }
    let snaps = s.path().join("snaps");
    assert_eq!(latest(&snaps), "2026-11-23.11");
    assert_eq!(snapshot_names(&snaps), ["2026-11-23.10", "2026-11-23.11"]);
}

#[test]
fn a_step_that_names_an_older_snapshot_by_date_fails_clearly() {
    let s = Scratch::new();
    s.write("current/f", "x");
    s.write(
        "p.yml",
        "ward: 1\nname: dated\nsteps:\n  - id: snapshot\n    action: snapshot.hardlink\n    with: { src: current, dir: snaps }\n  - id: verify\n    needs: [snapshot]\n    action: verify\n    with: { path: \"snaps/{{ ward.date }}\" }\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(1);
    assert!(
        run.stderr.contains("was made by an earlier run")
            && run.stderr.contains("this run's snapshot is")
            && run.stderr.contains("2026-11-23.2"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_users_manifest_json_is_kept_and_legacy_snapshots_still_verify() {
    let s = Scratch::new();
    let users = "{\"my\": \"own manifest\", \"version\": 3}\n";
    s.write("current/manifest.json", users);
    s.write("current/dir/data.txt", "data\n");
    s.write("p.yml", NIGHTLY);
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let snaps = s.path().join("snaps");
    let set = snaps.join("2026-11-23");
    assert_eq!(
        std::fs::read(set.join("manifest.json")).expect("user's file"),
        users.as_bytes()
    );
    assert!(snaps.join(".2026-11-23.manifest.json").is_file());
    s.ward().arg("verify").arg(&set).run().expect_code(0);
    // Restoring the snapshot gives the user's file back.
    s.write(
        "restore.yml",
        "ward: 1\nname: restore\nsteps:\n  - id: restore\n    action: rsync\n    with: { src: snaps/latest, dest: restored }\n",
    );
    s.ward().args(["run", "restore.yml"]).run().expect_code(0);
    assert_eq!(s.read("restored/manifest.json"), users);

    // A snapshot in the layout of earlier versions: ward's manifest inside.
    s.write("legacy-src/a.txt", "legacy\n");
    s.write(
        "legacy.yml",
        "ward: 1\nname: legacy\nvars:\n  day: \"2026-11-01\"\nsteps:\n  - id: snapshot\n    action: snapshot.hardlink\n    with: { src: legacy-src, dir: old, name: \"{{ day }}\" }\n",
    );
    s.ward().args(["run", "legacy.yml"]).run().expect_code(0);
    let old = s.path().join("old");
    std::fs::rename(
        old.join(".2026-11-01.manifest.json"),
        old.join("2026-11-01/manifest.json"),
    )
    .expect("legacy layout");
    s.ward()
        .arg("verify")
        .arg(old.join("2026-11-01"))
        .run()
        .expect_code(0);
    // ... a verify step marks it, and rotation counts it and deletes it
    // (with its in-tree manifest) once a newer one exists.
    s.write(
        "old.yml",
        "ward: 1\nname: old\nvars:\n  set: \"2026-11-01\"\nsteps:\n  - id: verify\n    action: verify\n    with: { path: \"old/{{ set }}\" }\n  - id: rotate\n    needs: [verify]\n    action: rotate\n    with: { dir: old, keep_last: 1 }\n",
    );
    s.ward().args(["run", "old.yml"]).run().expect_code(0);
    assert!(old.join(".2026-11-01.verified").is_file());
    s.ward()
        .args(["run", "legacy.yml", "--var", "day=2026-11-02"])
        .run()
        .expect_code(0);
    s.ward()
        .args(["run", "old.yml", "--var", "set=2026-11-02"])
        .run()
        .expect_code(0);
    assert_eq!(snapshot_names(&old), ["2026-11-02"]);
    assert!(!old.join(".2026-11-01.verified").exists());
    // A user's `manifest.json` in a snapshot whose own manifest is gone is
    // not taken for ward's.
    std::fs::remove_file(snaps.join(".2026-11-23.manifest.json")).expect("rm");
    let run = s.ward().arg("verify").arg(&set).run().expect_code(1);
    assert!(
        run.stderr
            .contains(".2026-11-23.manifest.json does not exist")
            && run.stderr.contains("is not a ward manifest"),
        "{}",
        run.stderr
    );
    let run = s
        .ward()
        .args(["verify", "snaps/no-such"])
        .run()
        .expect_code(1);
    assert!(
        run.stderr.contains("cannot open backup set snaps/no-such"),
        "{}",
        run.stderr
    );
}

#[test]
fn reserved_snapshot_names_are_refused_at_validate_time_with_their_place() {
    let s = Scratch::new();
    for (name, expect) in [
        (".x.deleting", "reserved for ward's own files"),
        ("day.partial", "`.partial` are reserved"),
        ("day.verified", "`.verified` are reserved"),
        ("day.base", "`.base` are reserved"),
        ("day.manifest.json", "`.manifest.json` are reserved"),
        ("latest", "name of the `latest` link"),
        ("..", "one plain name"),
        ("a/b", "one plain name"),
    ] {
        s.write(
            "p.yml",
            &format!(
                "ward: 1\nname: reserved\nsteps:\n  - id: snapshot\n    action: snapshot.hardlink\n    with:\n      src: current\n      dir: snaps\n      name: \"{name}\"\n"
            ),
        );
        let run = s.ward().args(["validate", "p.yml"]).run().expect_code(2);
        assert!(
            run.stderr.contains(expect) && run.stderr.contains("p.yml:9:13"),
            "{name}: {}",
            run.stderr
        );
    }
    // The same through a template.
    s.write(
        "t.yml",
        "ward: 1\nname: templated\nvars:\n  day: ok\nsteps:\n  - id: snapshot\n    action: snapshot.hardlink\n    with: { src: current, dir: snaps, name: \"{{ day }}\" }\n",
    );
    s.ward().args(["validate", "t.yml"]).run().expect_code(0);
    let run = s
        .ward()
        .args(["run", "t.yml", "--var", "day=.x.deleting"])
        .run()
        .expect_code(2);
    assert!(run.stderr.contains("reserved"), "{}", run.stderr);
    assert!(!s.path().join("snaps").exists(), "nothing was created");
}

#[test]
fn rotate_without_a_verify_before_it_is_a_warning_with_its_place_and_a_plain_log() {
    let s = Scratch::new();
    s.write("current/f", "x");
    // The natural order, and the trap: rotate runs before verify.
    s.write(
        "p.yml",
        "ward: 1\nname: trap\nsteps:\n  - id: snapshot\n    action: snapshot.hardlink\n    with: { src: current, dir: snaps }\n  - id: rotate\n    needs: [snapshot]\n    action: rotate\n    with: { dir: snaps, keep_last: 3 }\n  - id: verify\n    needs: [rotate]\n    action: verify\n    with: { path: snaps/latest }\n",
    );
    let run = s.ward().args(["validate", "p.yml"]).run().expect_code(0);
    assert!(
        run.stderr.contains("warning[rotate-before-verify]")
            && run.stderr.contains("p.yml:9:13")
            && run.stderr.contains("snapshot -> verify -> rotate"),
        "{}",
        run.stderr
    );
    for day in 1..=5 {
        s.ward()
            .args(["run", "p.yml"])
            .env("WARD_NOW", &format!("2026-11-{day:02}T02:00:00"))
            .run()
            .expect_code(0);
    }
    // The trap itself: four kept for `keep_last: 3`, and the log says why.
    assert_eq!(snapshot_names(&s.path().join("snaps")).len(), 4);
    let log = s.ward().args(["log", "last", "rotate"]).run().stdout;
    assert!(
        log.contains("not counted and kept: 2026-11-05")
            && log.contains("Run `verify` before `rotate`"),
        "{log}"
    );
    let status = s.status(None);
    let summary = crate::harness::status_step(&status, "rotate")["reason"].to_string();
    assert!(
        summary.contains("1 unverified kept and not counted"),
        "{status}"
    );

    // The documented order has no warning and keeps exactly three.
    s.write("p.yml", NIGHTLY);
    let run = s.ward().args(["validate", "p.yml"]).run().expect_code(0);
    assert!(
        !run.stderr.contains("rotate-before-verify"),
        "{}",
        run.stderr
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert_eq!(snapshot_names(&s.path().join("snaps")).len(), 3);
}

/// Runs `script` in `bash` inside `dir` (deep trees are built and changed
/// with relative `cd` steps: their absolute paths are too long for the
/// system calls a test would use).
fn sh(dir: &Path, script: &str) {
    // bash, not sh: dash cannot `cd` once the absolute path passes PATH_MAX.
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .status()
        .expect("sh");
    assert!(status.success(), "{script}");
}

/// 30 folders of 200-byte names: over 6,000 bytes of path, with a file on every level.
const DEEP: &str = "n=$(printf 'd%.0s' $(seq 200)); for i in $(seq 30); do echo \"level $i\" > f; mkdir $n && cd $n || exit 1; done; echo bottom > file.txt";

#[test]
fn a_tree_deeper_than_path_max_snapshots_verifies_and_rotates_away() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("current")).expect("mkdir");
    sh(&s.path().join("current"), DEEP);
    s.write(
        "p.yml",
        "ward: 1\nname: deep\nsteps:\n  - id: snapshot\n    action: snapshot.hardlink\n    with: { src: current, dir: snaps, hash: all }\n  - id: verify\n    needs: [snapshot]\n    action: verify\n    with: { path: snaps/latest }\n  - id: rotate\n    needs: [verify]\n    action: rotate\n    with: { dir: snaps, keep_last: 1, min_keep: 1 }\n",
    );
    let night = |day: u32| {
        s.ward()
            .args(["run", "p.yml"])
            .env("WARD_NOW", &format!("2026-11-{day:02}T02:00:00"))
            .run()
            .expect_code(0)
    };
    night(1);
    let snaps = s.path().join("snaps");
    let manifest =
        std::fs::read_to_string(snaps.join(".2026-11-01.manifest.json")).expect("manifest");
    assert!(
        manifest.contains("/file.txt\""),
        "the deepest file is listed"
    );
    s.ward()
        .arg("verify")
        .arg(snaps.join("2026-11-01"))
        .run()
        .expect_code(0);
    // Damage at the bottom is found (the copy is unlinked first: it is a hard link).
    let bottom = "n=$(printf 'd%.0s' $(seq 200)); for i in $(seq 30); do cd $n || exit 1; done";
    sh(
        &snaps.join("2026-11-01"),
        &format!("{bottom}; rm file.txt; echo BOTTOM > file.txt"),
    );
    let run = s
        .ward()
        .arg("verify")
        .arg(snaps.join("2026-11-01"))
        .run()
        .expect_code(1);
    assert!(
        run.stdout.contains("changed") && run.stdout.contains("/file.txt"),
        "{}",
        run.stdout
    );
    sh(
        &snaps.join("2026-11-01"),
        &format!("{bottom}; rm file.txt; echo bottom > file.txt"),
    );
    // The next night's rotation deletes the whole deep snapshot.
    night(2);
    assert_eq!(snapshot_names(&snaps), ["2026-11-02"]);
    let left: Vec<String> = std::fs::read_dir(&snaps)
        .expect("read")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("2026-11-01"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_leftover_partial_deeper_than_path_max_is_removed_by_the_next_run() {
    let s = Scratch::new();
    s.write("current/f", "x");
    std::fs::create_dir_all(s.path().join("snaps/2026-11-23.partial")).expect("mkdir");
    sh(&s.path().join("snaps/2026-11-23.partial"), DEEP);
    s.write("p.yml", NIGHTLY);
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert!(!s.path().join("snaps/2026-11-23.partial").exists());
    assert_eq!(latest(&s.path().join("snaps")), "2026-11-23");
}

#[test]
fn a_snapshot_folder_inside_its_source_is_refused_before_anything_is_made() {
    let s = Scratch::new();
    s.write("data/f", "x");
    std::os::unix::fs::symlink("data", s.path().join("via-link")).expect("symlink");
    // As written: `ward validate` (exit 2); through `..` or a symlink: at run time (exit 1).
    for (dir, code) in [
        ("data/snaps", 2),
        ("data", 2),
        ("data/./x/../snaps", 1),
        ("via-link/snaps", 1),
    ] {
        s.write(
            "p.yml",
            &format!(
                "ward: 1\nname: nested\nsteps:\n  - id: snapshot\n    action: snapshot.hardlink\n    with: {{ src: data, dir: \"{dir}\" }}\n"
            ),
        );
        let run = s.ward().args(["run", "p.yml"]).run().expect_code(code);
        assert!(
            run.stderr.contains("is inside the tree it snapshots"),
            "{dir}: {}",
            run.stderr
        );
        let names: Vec<String> = std::fs::read_dir(s.path().join("data"))
            .expect("read")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["f"], "{dir}: nothing was created");
    }
}

/// Asserts that a failed snapshot left nothing in `snaps` but the folder's
/// lock file (empty, reused by the next run).
fn assert_nothing_left(snaps: &Path) {
    let left: Vec<String> = std::fs::read_dir(snaps)
        .expect("read")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".ward-snapshot.lock")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Fills the file system of `dir` with one file; returns its path.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    // The last partial block too.
    while f.write(&[0u8; 512]).is_ok_and(|n| n > 0) {}
    path
}

#[test]
fn a_snapshot_on_a_full_disk_names_the_path_and_leaves_nothing_behind() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let s = Scratch::new();
    let disk = s.path().join("disk");
    let _mount = Tmpfs::mount(&disk, "size=2m,nr_inodes=200");
    for i in 0..20 {
        crate::harness::write(&disk, &format!("current/dir{}/file{i}", i % 4), "data\n");
    }
    s.write(
        "p.yml",
        "ward: 1\nname: full\nsteps:\n  - id: snapshot\n    action: snapshot.hardlink\n    with: { src: disk/current, dir: disk/snaps, hash: all }\n",
    );
    let filler = fill(&disk);
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(1);
    let snaps = disk.join("snaps");
    assert!(
        run.stderr.contains("No space left on device")
            && run.stderr.contains(&snaps.display().to_string()),
        "the message names the path: {}",
        run.stderr
    );
    assert_nothing_left(&snaps);
    // With space again, the next run makes the snapshot.
    std::fs::remove_file(filler).expect("rm filler");
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert_eq!(latest(&snaps), "2026-11-23");
    assert_eq!(
        std::fs::read_to_string(snaps.join("2026-11-23/dir3/file7")).expect("file"),
        "data\n"
    );

    // Out of inodes while linking: room for the snapshot folder and its
    // `.partial`, not for the folders inside.
    std::fs::remove_dir_all(&snaps).expect("rm snaps");
    let mut fillers = Vec::new();
    for i in 0.. {
        let f = disk.join(format!("inode{i}"));
        if std::fs::write(&f, "").is_err() {
            break;
        }
        fillers.push(f);
    }
    for f in fillers.iter().rev().take(2) {
        std::fs::remove_file(f).expect("free an inode");
    }
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(1);
    assert!(
        run.stderr.contains("No space left on device")
            && run.stderr.contains("cannot create")
            && run
                .stderr
                .contains(&snaps.join("2026-11-23.partial").display().to_string()),
        "the message names the folder: {}",
        run.stderr
    );
    assert_nothing_left(&snaps);
}

#[test]
fn a_chain_of_two_thousand_folders_snapshots_and_rotates_away_with_a_low_open_file_limit() {
    use rustix::fs::{CWD, Mode, OFlags, mkdirat, openat};
    let s = Scratch::new();
    let current = s.path().join("current");
    std::fs::create_dir_all(&current).expect("mkdir");
    // 2,100 levels of `d/`: 4,200 bytes of path, built one level at a time.
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut fd = openat(CWD, &current, flags, Mode::empty()).expect("open");
    for _ in 0..2100 {
        mkdirat(&fd, "d", Mode::from_raw_mode(0o755)).expect("mkdirat");
        fd = openat(&fd, "d", flags, Mode::empty()).expect("openat");
    }
    let file = openat(
        &fd,
        "bottom.txt",
        OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .expect("create");
    rustix::io::write(&file, b"at the bottom\n").expect("write");
    drop((file, fd));
    s.write(
        "p.yml",
        "ward: 1\nname: chain\nsteps:\n  - id: snapshot\n    action: snapshot.hardlink\n    with: { src: current, dir: snaps, hash: all }\n  - id: verify\n    needs: [snapshot]\n    action: verify\n    with: { path: snaps/latest }\n  - id: rotate\n    needs: [verify]\n    action: rotate\n    with: { dir: snaps, keep_last: 1, min_keep: 1 }\n",
    );
    // ward under a soft limit of 256 open files (it raises it to the hard limit).
    let night = |day: u32| {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg("ulimit -Sn 256 && exec \"$0\" run p.yml")
            .arg(env!("CARGO_BIN_EXE_ward"))
            .current_dir(s.path())
            .env("WARD_STATE", s.state())
            .env("WARD_NOW", format!("2026-11-{day:02}T02:00:00"))
            .env("NO_COLOR", "1")
            .output()
            .expect("ward");
        assert!(
            out.status.success(),
            "night {day}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    night(1);
    let manifest = s.read("snaps/.2026-11-01.manifest.json");
    assert!(
        manifest.contains("/bottom.txt\""),
        "the deepest file is listed"
    );
    night(2);
    let snaps = s.path().join("snaps");
    assert_eq!(snapshot_names(&snaps), ["2026-11-02"]);
    // The temp folder's own cleanup recurses; GNU rm does not.
    for tree in ["current", "snaps"] {
        assert!(
            std::process::Command::new("rm")
                .args(["-rf", tree])
                .current_dir(s.path())
                .status()
                .expect("rm")
                .success()
        );
    }
}
