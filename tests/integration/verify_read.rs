//! `verify`'s read-back levels (`read: all`, a rolling `1/N`, `none`), the
//! verified marker that records failures too (so `rotate` stops counting
//! a snapshot whose last verify failed), `ward verify --status`, and the
//! spot check against the live source. Real files, the real binary.

use std::collections::BTreeSet;
use std::path::Path;

use crate::harness::{Scratch, snapshot_names};

/// A snapshot of `current` made on `day` of November 2026, hashing every file.
const SNAPSHOT: &str = "\
ward: 1
name: snap
steps:
  - id: snapshot
    action: snapshot.hardlink
    with: { src: current, dir: snaps, hash: all }
";

fn night(day: u32) -> String {
    format!("2026-11-{day:02}T02:00:00")
}

/// `current` with `n` files of different sizes in a few folders.
fn fill(s: &Scratch, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let rel = format!("current/d{}/f{i:03}.txt", i % 9);
            s.write(&rel, &format!("file {i} {}\n", "x".repeat(i % 300)));
            rel.trim_start_matches("current/").to_owned()
        })
        .collect()
}

/// Flips one byte of each of `files` in place (the inode, shared by the
/// hard links of `current` and the snapshots, is changed).
fn flip(set: &Path, files: &[String]) {
    for f in files {
        let path = set.join(f);
        let mut bytes = std::fs::read(&path).expect("read");
        let mtime = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        let at = bytes.len() / 2;
        bytes[at] ^= 0x20;
        std::fs::write(&path, bytes).expect("write in place");
        // Bit rot moves no time: only reading the content finds it.
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(mtime))
            .expect("set mtime back");
    }
}

/// 50 of `files`, picked by a fixed pseudo-random walk.
fn fifty(files: &[String]) -> Vec<String> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut picked = BTreeSet::new();
    while picked.len() < 50 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        picked.insert(files[(state >> 33) as usize % files.len()].clone());
    }
    picked.into_iter().collect()
}

/// The paths `ward verify --json` reports, on `day`.
fn found(s: &Scratch, set: &str, read: &str, day: u32) -> (serde_json::Value, BTreeSet<String>) {
    let v = s
        .ward()
        .args(["verify", "--json", "--read", read, set])
        .env("WARD_NOW", &night(day))
        .run()
        .json();
    let paths = v["mismatches"]
        .as_array()
        .expect("mismatches")
        .iter()
        .map(|m| {
            assert_eq!(m["kind"], "changed", "{m}");
            m["path"].as_str().expect("path").to_owned()
        })
        .collect();
    (v, paths)
}

fn marker(s: &Scratch, name: &str) -> serde_json::Value {
    serde_json::from_str(&s.read(&format!("snaps/.{name}.verified"))).expect("marker is JSON")
}

#[test]
fn all_finds_fifty_flipped_bytes_and_one_seventh_a_night_finds_them_all_within_seven_nights() {
    let s = Scratch::new();
    let files = fill(&s, 400);
    s.write("snap.yml", SNAPSHOT);
    s.ward()
        .args(["run", "snap.yml"])
        .env("WARD_NOW", &night(1))
        .run()
        .expect_code(0);
    let set = "snaps/2026-11-01";
    let damaged = fifty(&files);
    flip(&s.path().join(set), &damaged);
    let damaged: BTreeSet<String> = damaged.into_iter().collect();

    // `read: all` finds every one, and says the damage is shared.
    let (v, all) = found(&s, set, "all", 1);
    assert_eq!(all, damaged);
    assert_eq!(v["level"], "full");
    assert!(
        v["mismatches"]
            .as_array()
            .expect("list")
            .iter()
            .all(|m| m["shared"] == true
                && m["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("shared by every snapshot"))),
        "{v}"
    );
    let text = s.ward().args(["verify", set]).run().expect_code(1).stdout;
    assert!(
        text.contains("only a second copy (another disk or host)"),
        "{text}"
    );
    // Structure only finds nothing: sizes did not change.
    let (_, none) = found(&s, set, "none", 1);
    assert!(none.is_empty());
    assert_eq!(
        found(&s, set, "all", 1).1,
        found(&s, set, "1/1", 1).1,
        "1/1 is all"
    );

    // `ward verify --read 1/7` on seven successive days (it writes no
    // marker: the date picks the slice): disjoint slices, all 50 in total.
    let mut union = BTreeSet::new();
    let mut slices = BTreeSet::new();
    let mut total = 0;
    for day in 2..=8 {
        let (v, part) = found(&s, set, "1/7", day);
        assert_eq!(v["level"], "partial");
        slices.insert(v["slice"].as_str().expect("slice").to_owned());
        assert!(part.len() < 25, "day {day}: {} of 50", part.len());
        total += part.len();
        union.extend(part);
    }
    assert_eq!(slices.len(), 7, "{slices:?}");
    assert_eq!(total, 50, "every damaged file is in exactly one slice");
    assert_eq!(union, damaged);

    // The `verify` step with `read: 1/7` on nights with a gap: the
    // marker's history picks the slice read longest ago (never read
    // first), so seven verifies read seven slices whatever the calendar.
    s.write(
        "check.yml",
        "ward: 1\nname: check\nsteps:\n  - id: verify\n    action: verify\n    \
         with: { path: snaps/2026-11-01, read: 1/7 }\n",
    );
    let mut step_found = 0;
    for day in [10, 11, 13, 14, 17, 18, 20] {
        let run = s
            .ward()
            .args(["run", "check.yml"])
            .env("WARD_NOW", &night(day))
            .run();
        let m = marker(&s, "2026-11-01");
        let problems = m["problems"].as_u64().expect("problems");
        assert_eq!(run.code, if problems == 0 { 0 } else { 1 }, "{m}");
        assert_eq!(m["level"], "partial");
        assert_eq!(m["ok"], problems == 0);
        step_found += problems;
    }
    let m = marker(&s, "2026-11-01");
    let history = m["slices"]["last"].as_array().expect("history");
    assert_eq!(m["slices"]["n"], 7);
    let read: BTreeSet<u64> = history
        .iter()
        .map(|r| r["slice"].as_u64().expect("slice"))
        .collect();
    assert_eq!(read, (1..=7).collect(), "{m}");
    assert_eq!(step_found, 50, "{m}");
    assert_eq!(
        history
            .iter()
            .map(|r| r["problems"].as_u64().expect("n"))
            .sum::<u64>(),
        50
    );
    let log = s.ward().args(["log", "last", "verify"]).run().stdout;
    assert!(log.contains("reading back: partial "), "{log}");
}

#[test]
fn a_damaged_manifest_is_reported_as_such_and_recorded_as_a_failure() {
    let s = Scratch::new();
    fill(&s, 20);
    s.write("snap.yml", SNAPSHOT);
    s.write(
        "check.yml",
        "ward: 1\nname: check\nsteps:\n  - id: verify\n    action: verify\n    \
         with: { path: snaps/latest }\n",
    );
    s.ward().args(["run", "snap.yml"]).run().expect_code(0);
    s.ward().args(["run", "check.yml"]).run().expect_code(0);
    let m = marker(&s, "2026-11-23");
    assert_eq!(
        (m["ok"].clone(), m["level"].clone()),
        (true.into(), "full".into())
    );
    let manifest = s.path().join("snaps/.2026-11-23.manifest.json");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(&manifest, text.replacen("f001.txt", "f00X.txt", 1)).expect("damage");

    let run = s
        .ward()
        .args(["verify", "snaps/latest"])
        .run()
        .expect_code(1);
    assert!(
        run.stderr
            .contains("is corrupt: its checksum does not match its content"),
        "{}",
        run.stderr
    );
    s.ward().args(["run", "check.yml"]).run().expect_code(1);
    let m = marker(&s, "2026-11-23");
    assert_eq!(m["ok"], false, "a failure replaces the good marker: {m}");
    assert!(
        m["error"]
            .as_str()
            .is_some_and(|e| e.contains("is corrupt")),
        "{m}"
    );
    let status = s
        .ward()
        .args(["verify", "--status", "--json", "snaps"])
        .run()
        .expect_code(0)
        .json();
    let snap = &status["snapshots"][0];
    assert_eq!(snap["name"], "2026-11-23");
    assert_eq!(snap["verified"], false);
    assert_eq!(snap["last_verify"]["ok"], false);
    let at = snap["last_verify"]["at"].as_str().expect("at");
    chrono::DateTime::parse_from_rfc3339(at).expect("an RFC 3339 time");
    let text = s
        .ward()
        .args(["verify", "--status", "snaps"])
        .run()
        .expect_code(0)
        .stdout;
    assert!(
        text.contains("2026-11-23") && text.contains("FAILED") && text.contains("is corrupt"),
        "{text}"
    );
}

#[test]
fn rotate_never_counts_a_snapshot_whose_last_verify_failed() {
    let s = Scratch::new();
    fill(&s, 20);
    s.write(
        "nightly.yml",
        "ward: 1\nname: nightly\nsteps:\n  - id: snapshot\n    action: snapshot.hardlink\n    \
         with: { src: current, dir: snaps, hash: all }\n  - id: verify\n    needs: [snapshot]\n    \
         action: verify\n    with: { path: snaps/latest }\n  - id: rotate\n    needs: [verify]\n    \
         action: rotate\n    with: { dir: snaps, keep_last: 1, min_keep: 2 }\n",
    );
    for day in [1, 2] {
        s.ward()
            .args(["run", "nightly.yml"])
            .env("WARD_NOW", &night(day))
            .run()
            .expect_code(0);
    }
    assert_eq!(
        snapshot_names(&s.path().join("snaps")),
        ["2026-11-01", "2026-11-02"]
    );
    // Snapshot 2 alone is damaged (its copy is replaced, not shared), and
    // a verify of it fails: its good marker is replaced by a failed one.
    let file = s.path().join("snaps/2026-11-02/d1/f001.txt");
    std::fs::remove_file(&file).expect("unlink");
    std::fs::write(&file, "file 1 X\n").expect("damage");
    s.write(
        "check.yml",
        "ward: 1\nname: check\nsteps:\n  - id: verify\n    action: verify\n    \
         with: { path: snaps/2026-11-02 }\n",
    );
    s.ward()
        .args(["run", "check.yml"])
        .env("WARD_NOW", &night(2))
        .run()
        .expect_code(1);
    assert_eq!(marker(&s, "2026-11-02")["ok"], false);

    // Night 3: keep_last 1 keeps 03; min_keep 2 must be met by a snapshot
    // whose last verify passed (01), never by the damaged 02, which is
    // kept uncounted. Counting 02 would have deleted the good 01.
    s.ward()
        .args(["run", "nightly.yml"])
        .env("WARD_NOW", &night(3))
        .run()
        .expect_code(0);
    assert_eq!(
        snapshot_names(&s.path().join("snaps")),
        ["2026-11-01", "2026-11-02", "2026-11-03"]
    );
    let log = s.ward().args(["log", "last", "rotate"]).run().stdout;
    assert!(
        log.lines()
            .any(|l| l.starts_with("2026-11-01") && l.contains("keep") && l.contains("min_keep 2"))
            && log.lines().any(|l| l.starts_with("2026-11-02")
                && l.contains("keep*")
                && l.contains("not counted: its last verify failed")),
        "{log}"
    );
    let status = s
        .ward()
        .args(["verify", "--status", "snaps"])
        .run()
        .expect_code(0)
        .stdout;
    let line = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line("2026-11-01").contains("verified"), "{status}");
    assert!(line("2026-11-02").contains("FAILED"), "{status}");
    assert!(line("2026-11-03").contains("verified"), "{status}");
}

#[test]
fn an_old_marker_still_counts_as_a_passed_verify() {
    let s = Scratch::new();
    fill(&s, 5);
    s.write("snap.yml", SNAPSHOT);
    s.ward().args(["run", "snap.yml"]).run().expect_code(0);
    let manifest = s.read("snaps/.2026-11-23.manifest.json");
    let sum = manifest
        .rsplit_once("\"checksum\":\"")
        .and_then(|(_, t)| t.get(..64))
        .expect("checksum");
    s.write(
        "snaps/.2026-11-23.verified",
        &format!(
            r#"{{"verified_at":"2026-11-23T02:10:00","run_id":"r","manifest_checksum":"{sum}","hashes":true}}"#
        ),
    );
    let v = s
        .ward()
        .args(["verify", "--status", "--json", "snaps"])
        .run()
        .json();
    assert_eq!(v["snapshots"][0]["verified"], true, "{v}");
    assert_eq!(v["snapshots"][0]["last_verify"]["level"], "full");
    // A marker of another manifest does not count.
    s.write(
        "snaps/.2026-11-23.verified",
        r#"{"verified_at":"2026-11-23T02:10:00","run_id":"r","manifest_checksum":"other","hashes":true}"#,
    );
    let v = s
        .ward()
        .args(["verify", "--status", "--json", "snaps"])
        .run()
        .json();
    assert_eq!(v["snapshots"][0]["verified"], false, "{v}");
}

#[test]
fn read_and_hashes_together_are_refused() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: p\nsteps:\n  - id: verify\n    action: verify\n    \
         with: { path: snaps/latest, read: all, hashes: true }\n",
    );
    let run = s.ward().args(["validate", "p.yml"]).run().expect_code(2);
    assert!(run.stderr.contains("not both"), "{}", run.stderr);
    s.write(
        "p.yml",
        "ward: 1\nname: p\nsteps:\n  - id: verify\n    action: verify\n    \
         with: { path: snaps/latest, read: 2/7 }\n",
    );
    let run = s.ward().args(["validate", "p.yml"]).run().expect_code(2);
    assert!(run.stderr.contains("1/N"), "{}", run.stderr);
}

/// Sets the mtime of `paths` (and what is below them) to `date`.
fn touch(dir: &Path, date: &str, paths: &[&str]) {
    let status = std::process::Command::new("find")
        .args(paths)
        .args(["-exec", "touch", "-h", "-d", date, "{}", "+"])
        .current_dir(dir)
        .status()
        .expect("find");
    assert!(status.success());
}

/// A playbook that copies `data` to `current`, snapshots it and verifies
/// the snapshot against `against`.
fn spot_playbook(against: &str, src: &str) -> String {
    format!(
        "ward: 1\nname: spot\nsteps:\n  - id: copy\n    action: rsync\n    \
         with: {{ src: {src}, dest: current }}\n  - id: snapshot\n    needs: [copy]\n    \
         action: snapshot.hardlink\n    with: {{ src: current, dir: snaps, hash: all }}\n  \
         - id: verify\n    needs: [snapshot]\n    action: verify\n    \
         with: {{ path: snaps/latest, against: {against} }}\n"
    )
}

#[test]
fn a_spot_check_passes_against_the_source_and_fails_against_another_folder_or_an_empty_copy() {
    let s = Scratch::new();
    for i in 0..150 {
        s.write(&format!("data/d{}/f{i}.txt", i % 5), &format!("data {i}\n"));
        s.write(&format!("other/o{i}.txt"), &format!("other {i}\n"));
    }
    // Old files, and (below) changes dated after the snapshot: the test
    // does not depend on which second the snapshot is made in.
    touch(s.path(), "2020-01-01", &["data", "other"]);
    s.write("right.yml", &spot_playbook("data", "data/"));
    s.ward()
        .args(["run", "right.yml"])
        .env("WARD_NOW", &night(1))
        .run()
        .expect_code(0);
    // A source file changed since the snapshot is not a failure.
    s.write("data/d0/f0.txt", "changed after the snapshot\n");
    s.write("data/d1/new.txt", "new after the snapshot\n");
    touch(
        s.path(),
        "2099-01-01",
        &["data/d0/f0.txt", "data/d1/new.txt"],
    );
    s.write(
        "again.yml",
        "ward: 1\nname: again\nsteps:\n  - id: verify\n    action: verify\n    \
         with: { path: snaps/latest, against: data, sample: 1/1 }\n",
    );
    s.ward()
        .args(["run", "again.yml"])
        .env("WARD_NOW", &night(1))
        .run()
        .expect_code(0);
    let log = s.ward().args(["log", "last", "verify"]).run().stdout;
    assert!(
        log.contains("151 files in the source, 150 in the set")
            && log.contains("0 missing, 0 differ, 2 changed since the snapshot"),
        "{log}"
    );

    // Verified against another folder: the backup copied the wrong one.
    s.write(
        "wrong.yml",
        "ward: 1\nname: wrong\nsteps:\n  - id: verify\n    action: verify\n    \
         with: { path: snaps/latest, against: other }\n",
    );
    s.ward()
        .args(["run", "wrong.yml"])
        .env("WARD_NOW", &night(1))
        .run()
        .expect_code(1);
    let status = s.status(None);
    let reason = crate::harness::status_step(&status, "verify")["reason"].to_string();
    assert!(
        reason.contains("100 of 100 sampled files")
            && reason.contains("are not in the set")
            && reason.contains("is the backup copying the right folder?"),
        "{reason}"
    );
    assert_eq!(marker(&s, "2026-11-01")["ok"], false, "recorded as failed");

    // A backup that copied nothing (the source looked empty to rsync)
    // verifies clean against its own manifest, and fails the spot check.
    std::fs::create_dir_all(s.path().join("empty")).expect("empty");
    std::fs::remove_dir_all(s.path().join("current")).expect("rm current");
    s.write("empty.yml", &spot_playbook("data", "empty/"));
    s.ward()
        .args(["run", "empty.yml"])
        .env("WARD_NOW", &night(2))
        .run()
        .expect_code(1);
    let status = s.status(None);
    let reason = crate::harness::status_step(&status, "verify")["reason"].to_string();
    assert!(
        reason.contains("the set holds no files") && reason.contains("the backup copied nothing"),
        "{reason}"
    );
    s.ward()
        .args(["verify", "snaps/2026-11-02"])
        .run()
        .expect_code(0);
}
