//! `rotate` records which files it unlinked a name of unchanged
//! (`.NAME.unlinks.json` beside the latest snapshot), so that the next
//! `snapshot.hardlink` with `hash: all` does not read the whole tree again
//! for the change times the unlinks moved; a file changed before or after
//! the rotation is still read. Real files, the real binary.

use std::path::Path;

use crate::harness::{SNAP_AND_VERIFY, Scratch, sha256_hex, status_step};

/// A rotation keeping the newest `keep` snapshots.
fn rotation(keep: u32) -> String {
    format!(
        "ward: 1\nname: rot\nsteps:\n  - id: rotate\n    action: rotate\n    \
         with: {{ dir: snaps, keep_last: {keep} }}\n"
    )
}

fn night(day: u32) -> String {
    format!("2026-11-{day:02}T02:00:00")
}

/// `current`: 30 files in folders and a second name of one of them.
/// Returns the number of file names (what a snapshot hashes).
fn fill(s: &Scratch) -> u64 {
    for i in 0..30 {
        s.write(
            &format!("current/d{}/f{i:02}.txt", i % 4),
            &format!("file {i} {}\n", "x".repeat(i * 7)),
        );
    }
    std::fs::hard_link(
        s.path().join("current/d0/f00.txt"),
        s.path().join("current/again.txt"),
    )
    .expect("hard link");
    31
}

/// Runs a playbook on night `day`, expecting success.
fn run(s: &Scratch, playbook: &str, day: u32) {
    s.ward()
        .args(["run", playbook])
        .env("WARD_NOW", &night(day))
        .run()
        .expect_code(0);
}

/// Snapshot (and verify) on night `day`: (files read, hashes carried).
fn snapshot(s: &Scratch, day: u32) -> (u64, u64) {
    run(s, "snap.yml", day);
    let d = status_step(&s.status(None), "snapshot")["attempt_list"][0]["details"].clone();
    (
        d["hashed_read"].as_u64().expect("hashed_read"),
        d["hashed_carried"].as_u64().expect("hashed_carried"),
    )
}

fn unlinks(s: &Scratch, name: &str) -> serde_json::Value {
    serde_json::from_str(&s.read(&format!("snaps/.{name}.unlinks.json"))).expect("unlinks")
}

fn sum_of(s: &Scratch, name: &str, path: &str) -> serde_json::Value {
    let m: serde_json::Value =
        serde_json::from_str(&s.read(&format!("snaps/.{name}.manifest.json"))).expect("manifest");
    m["entries"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["path"] == path))
        .map(|e| e["sha256"].clone())
        .unwrap_or_else(|| panic!("no {path} in {name}"))
}

/// Rewrites `path` in place with another content of the same size and
/// sets its mtime back: only the change time says it changed.
fn rewrite_keeping_size_and_mtime(path: &Path) -> Vec<u8> {
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("mtime");
    let mut body = std::fs::read(path).expect("read");
    body[0] ^= 0x20;
    std::fs::write(path, &body).expect("write");
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(mtime))
        .expect("set mtime back");
    body
}

/// Nights 1 and 2: snapshot and verify; night 2 rotates 01 away.
fn two_nights_and_a_rotation(s: &Scratch) -> u64 {
    let n = fill(s);
    s.write("snap.yml", SNAP_AND_VERIFY);
    s.write("rot.yml", &rotation(1));
    assert_eq!(snapshot(s, 1), (n, 0));
    assert_eq!(snapshot(s, 2), (0, n));
    n
}

#[test]
fn after_a_nightly_rotation_the_next_snapshot_reads_nothing_unchanged() {
    let s = Scratch::new();
    let n = two_nights_and_a_rotation(&s);
    run(&s, "rot.yml", 2);
    assert!(!s.path().join("snaps/2026-11-01").exists());
    let log = s.ward().args(["log", "last", "rotate"]).run().stdout;
    assert!(log.contains("lost a name unchanged: recorded in"), "{log}");
    let u = unlinks(&s, "2026-11-02");
    assert_eq!(u["format"], "ward-unlinks/1");
    let windows = u["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 1, "{u}");
    // Every file (inode) of the latest snapshot lost its name in 01.
    assert_eq!(
        windows[0]["inodes"].as_array().expect("inodes").len() as u64,
        n - 1
    );
    assert!(windows[0]["from"].as_i64() <= windows[0]["to"].as_i64());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(s.path().join("snaps/.2026-11-02.unlinks.json"))
            .expect("meta")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o644);

    // Night 3: nothing is read, every hash carried.
    assert_eq!(snapshot(&s, 3), (0, n));
    let log = s.ward().args(["log", "last", "snapshot"]).run().stdout;
    assert!(
        log.contains("a change time a rotation's unlink left"),
        "{log}"
    );
    // The nightly chain goes on: 02 rotated away with its side files,
    // and 04 reads nothing either.
    run(&s, "rot.yml", 3);
    assert!(!s.path().join("snaps/.2026-11-02.unlinks.json").exists());
    assert!(!s.path().join("snaps/.2026-11-02.manifest.json").exists());
    assert!(s.path().join("snaps/.2026-11-03.unlinks.json").exists());
    assert_eq!(snapshot(&s, 4), (0, n));
    // The unlinks file is not taken for a snapshot.
    assert_eq!(
        crate::harness::snapshot_names(&s.path().join("snaps")),
        ["2026-11-03", "2026-11-04"]
    );
}

#[test]
fn a_file_changed_before_or_after_the_rotation_is_read_again() {
    let s = Scratch::new();
    let n = two_nights_and_a_rotation(&s);
    // Changed between the verify and the rotation: its stat before the
    // unlink is not the recorded one, so it is not recorded.
    let before = rewrite_keeping_size_and_mtime(&s.path().join("current/d1/f05.txt"));
    run(&s, "rot.yml", 2);
    let u = unlinks(&s, "2026-11-02");
    assert_eq!(
        u["windows"][0]["inodes"].as_array().expect("inodes").len() as u64,
        n - 2,
        "{u}"
    );
    // Changed after the rotation: its change time is past the window.
    let after = rewrite_keeping_size_and_mtime(&s.path().join("current/d2/f10.txt"));
    assert_eq!(snapshot(&s, 3), (2, n - 2));
    assert_eq!(sum_of(&s, "2026-11-03", "d1/f05.txt"), sha256_hex(&before));
    assert_eq!(sum_of(&s, "2026-11-03", "d2/f10.txt"), sha256_hex(&after));
}

#[test]
fn an_unlinks_file_others_may_write_or_of_another_manifest_is_ignored() {
    // Writable by others: not ward's own.
    let s = Scratch::new();
    let n = two_nights_and_a_rotation(&s);
    run(&s, "rot.yml", 2);
    let path = s.path().join("snaps/.2026-11-02.unlinks.json");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .expect("chmod");
    assert_eq!(snapshot(&s, 3), (n, 0));
    let log = s.ward().args(["log", "last", "snapshot"]).run().stdout;
    assert!(
        log.contains("ignoring what rotations recorded") && log.contains("not ward's own"),
        "{log}"
    );

    // Of another manifest (its checksum is not the one beside it).
    let s = Scratch::new();
    let n = two_nights_and_a_rotation(&s);
    run(&s, "rot.yml", 2);
    let path = s.path().join("snaps/.2026-11-02.unlinks.json");
    let mut u = unlinks(&s, "2026-11-02");
    u["manifest_checksum"] = serde_json::Value::String("0".repeat(64));
    std::fs::write(&path, serde_json::to_vec(&u).expect("json")).expect("write");
    assert_eq!(snapshot(&s, 3), (n, 0));
    let log = s.ward().args(["log", "last", "snapshot"]).run().stdout;
    assert!(
        log.contains("ignoring what rotations recorded") && log.contains("another manifest"),
        "{log}"
    );
}

#[test]
fn a_second_rotation_before_the_next_snapshot_adds_its_window() {
    let s = Scratch::new();
    let n = fill(&s);
    s.write("snap.yml", SNAP_AND_VERIFY);
    for day in 1..=3 {
        snapshot(&s, day);
    }
    s.write("rot2.yml", &rotation(2));
    s.write("rot1.yml", &rotation(1));
    run(&s, "rot2.yml", 3);
    assert_eq!(
        unlinks(&s, "2026-11-03")["windows"]
            .as_array()
            .expect("windows")
            .len(),
        1
    );
    // The second rotation sees the change times the first one left: they
    // count as unchanged by the first window, and every file is listed again.
    run(&s, "rot1.yml", 3);
    let u = unlinks(&s, "2026-11-03");
    let windows = u["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 2, "{u}");
    assert!(
        windows[0]["to"].as_i64() < windows[1]["from"].as_i64(),
        "{u}"
    );
    assert_eq!(
        windows[1]["inodes"].as_array().expect("inodes").len() as u64,
        n - 1
    );
    assert_eq!(snapshot(&s, 4), (0, n));
}

/// A rotation waits for the snapshot folder's lock (held here by the test,
/// as a snapshot being made would hold it) and deletes nothing until it
/// gets it; then it rotates as usual.
#[test]
fn a_rotation_waits_while_another_run_holds_the_snapshot_folder() {
    use rustix::fs::{FlockOperation, flock};
    let s = Scratch::new();
    two_nights_and_a_rotation(&s);
    let names = crate::harness::snapshot_names(&s.path().join("snaps"));
    assert_eq!(names.len(), 2, "{names:?}");
    let lock = std::fs::File::options()
        .write(true)
        .open(s.path().join("snaps/.ward-snapshot.lock"))
        .expect("the snapshot made the lock file");
    flock(&lock, FlockOperation::NonBlockingLockExclusive).expect("lock");
    let mut rotating = s
        .ward()
        .args(["run", "rot.yml"])
        .env("WARD_NOW", &night(3))
        .spawn();
    // Long enough for an unlocked rotation of 31 files to be done many
    // times over.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        rotating.try_wait().expect("wait").is_none(),
        "the rotation ended while the folder was locked"
    );
    assert_eq!(
        crate::harness::snapshot_names(&s.path().join("snaps")),
        names,
        "a snapshot was deleted while the folder was locked"
    );
    drop(lock);
    assert!(rotating.wait().expect("wait").success());
    assert_eq!(
        crate::harness::snapshot_names(&s.path().join("snaps")),
        names[1..].to_vec(),
        "the rotation deleted the oldest snapshot once it had the lock"
    );
    let said = s
        .ward()
        .args(["log", "last", "rotate"])
        .run()
        .expect_code(0)
        .stdout;
    assert!(
        said.contains("waiting for it") && said.contains("is free now; rotating it"),
        "the rotation's log says it waited: {said}"
    );
}

/// SIGTERM twice (as GNU `timeout` sends it) to a rotation waiting for
/// the folder's lock: it stops without deleting anything, exit 143, and a
/// resume rotates.
#[test]
fn a_rotation_stopped_by_two_sigterms_while_waiting_deletes_nothing_and_resumes() {
    use rustix::fs::{FlockOperation, flock};
    let s = Scratch::new();
    two_nights_and_a_rotation(&s);
    let names = crate::harness::snapshot_names(&s.path().join("snaps"));
    let lock = std::fs::File::options()
        .write(true)
        .open(s.path().join("snaps/.ward-snapshot.lock"))
        .expect("the snapshot made the lock file");
    flock(&lock, FlockOperation::NonBlockingLockExclusive).expect("lock");
    let mut rotating = s
        .ward()
        .args(["run", "rot.yml"])
        .env("WARD_NOW", &night(3))
        .spawn();
    std::thread::sleep(std::time::Duration::from_millis(800));
    for _ in 0..2 {
        let pid = rustix::process::Pid::from_raw(rotating.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = rotating.wait().expect("wait");
    assert_eq!(status.code(), Some(143), "{status:?}");
    drop(lock);
    assert_eq!(
        crate::harness::snapshot_names(&s.path().join("snaps")),
        names,
        "a stopped rotation deleted a snapshot"
    );
    s.ward()
        .args(["resume", "last"])
        .env("WARD_NOW", &night(3))
        .run()
        .expect_code(0);
    assert_eq!(
        crate::harness::snapshot_names(&s.path().join("snaps")),
        names[1..].to_vec()
    );
}
