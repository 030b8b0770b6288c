//! `snapshot.hardlink` with `hash: all` (the default): every regular file
//! has a sha256 in the manifest, and files unchanged since the previous
//! snapshot keep its hash without being read. Real files, the real binary.

use std::path::Path;

use crate::harness::{Scratch, sha256_hex, status_step};

/// One snapshot step with the default `hash`.
const SNAP: &str = "\
ward: 1
name: snap
steps:
  - id: snapshot
    action: snapshot.hardlink
    with: { src: current, dir: snaps }
";

/// A tree of 24 files in folders, a symlink, an empty file and a second
/// name of one file (as FOSSology keeps archives in gold/ and files/).
fn make_tree(s: &Scratch) -> usize {
    for d in 0..4 {
        for f in 0..6 {
            s.write(
                &format!("current/d{d}/sub/f{f}.txt"),
                &format!("file {d}/{f}\n").repeat(d * 10 + f + 1),
            );
        }
    }
    s.write("current/empty", "");
    std::os::unix::fs::symlink("d0/sub/f0.txt", s.path().join("current/link")).expect("symlink");
    std::fs::hard_link(
        s.path().join("current/d0/sub/f1.txt"),
        s.path().join("current/d3/f1-again.txt"),
    )
    .expect("hard link");
    26
}

/// Runs the playbook and returns the snapshot step's details.
fn snapshot(s: &Scratch, playbook: &str) -> serde_json::Value {
    s.ward().args(["run", playbook]).run().expect_code(0);
    status_step(&s.status(None), "snapshot")["attempt_list"][0]["details"].clone()
}

fn counts(details: &serde_json::Value) -> (u64, u64) {
    (
        details["hashed_read"].as_u64().expect("hashed_read"),
        details["hashed_carried"].as_u64().expect("hashed_carried"),
    )
}

fn manifest(s: &Scratch, name: &str) -> serde_json::Value {
    serde_json::from_str(&s.read(&format!("snaps/.{name}.manifest.json"))).expect("manifest")
}

fn entry(m: &serde_json::Value, path: &str) -> serde_json::Value {
    m["entries"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["path"] == path).cloned())
        .unwrap_or_else(|| panic!("no {path} in the manifest"))
}

/// Every regular file of the manifest has the sha256 of its content in
/// the snapshot, and its identity.
fn every_file_hashed(s: &Scratch, name: &str) -> serde_json::Value {
    let m = manifest(s, name);
    assert_eq!(m["hash"], "all");
    let mut files = 0;
    for e in m["entries"].as_array().expect("entries") {
        if e["type"] != "file" {
            continue;
        }
        files += 1;
        let body = std::fs::read(
            s.path()
                .join("snaps")
                .join(name)
                .join(e["path"].as_str().expect("path")),
        )
        .expect("read");
        assert_eq!(
            e["sha256"].as_str(),
            Some(sha256_hex(&body).as_str()),
            "{e}"
        );
        for key in ["dev", "ino", "ctime_ns", "mtime_ns", "uid", "gid"] {
            assert!(e[key].is_u64() || e[key].is_i64(), "{key} missing in {e}");
        }
    }
    assert_eq!(files, m["files"].as_u64().expect("files"));
    m
}

fn verify(s: &Scratch, name: &str) -> crate::harness::Run {
    s.ward().args(["verify", &format!("snaps/{name}")]).run()
}

/// Sets `path`'s mtime to `mtime` (as `touch -r` would).
fn set_mtime(path: &Path, mtime: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(mtime))
        .expect("set mtime");
}

#[test]
fn an_unchanged_tree_is_not_read_again_and_changed_files_are() {
    let s = Scratch::new();
    let n = make_tree(&s) as u64;
    s.write("p.yml", SNAP);

    let first = snapshot(&s, "p.yml");
    assert_eq!(counts(&first), (n, 0), "{first}");
    let log = s.ward().args(["log", "last", "snapshot"]).run().stdout;
    assert!(log.contains("no earlier snapshot in"), "{log}");
    let m1 = every_file_hashed(&s, "2026-11-23");
    assert!(m1["source"]["ino"].is_u64(), "the source tree is recorded");

    // Nothing changed: no file is read, every hash is the previous one.
    let second = snapshot(&s, "p.yml");
    assert_eq!(counts(&second), (0, n), "{second}");
    let m2 = every_file_hashed(&s, "2026-11-23.2");
    for e in m1["entries"].as_array().expect("entries") {
        assert_eq!(
            entry(&m2, e["path"].as_str().expect("path"))["sha256"],
            e["sha256"]
        );
    }
    let log = s.ward().args(["log", "last", "snapshot"]).run().stdout;
    assert!(
        log.contains(&format!("0 read (0 bytes), {n} unchanged")),
        "{log}"
    );
    for name in ["2026-11-23", "2026-11-23.2"] {
        let run = verify(&s, name);
        assert_eq!(run.code, 0, "{name}: {}{}", run.stdout, run.stderr);
    }

    // Same size, mtime set back: the content changed, only the ctime says so.
    let edited = s.path().join("current/d1/sub/f2.txt");
    let before = std::fs::read(&edited).expect("read");
    let mtime = std::fs::metadata(&edited)
        .and_then(|m| m.modified())
        .expect("mtime");
    let mut after = before.clone();
    after[0] ^= 0x20;
    std::fs::write(&edited, &after).expect("write");
    set_mtime(&edited, mtime);
    // Replaced by another inode (as rsync writes a changed file), with
    // the same size and mtime.
    let replaced = s.path().join("current/d2/sub/f0.txt");
    let size = std::fs::metadata(&replaced).expect("meta").len() as usize;
    let mtime = std::fs::metadata(&replaced)
        .and_then(|m| m.modified())
        .expect("mtime");
    let tmp = s.path().join("current/d2/sub/.f0.tmp");
    std::fs::write(&tmp, "R".repeat(size)).expect("write");
    set_mtime(&tmp, mtime);
    std::fs::rename(&tmp, &replaced).expect("rename");

    let third = snapshot(&s, "p.yml");
    assert_eq!(counts(&third), (2, n - 2), "{third}");
    let m3 = every_file_hashed(&s, "2026-11-23.3");
    assert_eq!(entry(&m3, "d1/sub/f2.txt")["sha256"], sha256_hex(&after));
    assert_eq!(
        entry(&m3, "d2/sub/f0.txt")["sha256"],
        sha256_hex("R".repeat(size).as_bytes())
    );

    let run = verify(&s, "2026-11-23.3");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    // The file edited in place is the same inode in every snapshot (hard
    // links): the earlier ones now hold the new content, which verify
    // finds; the replaced file is a new inode and they keep the old one.
    let run = verify(&s, "2026-11-23.2");
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        run.code == 1 && said.contains("d1/sub/f2.txt") && !said.contains("d2/sub/f0.txt"),
        "{said}"
    );
}

#[test]
fn a_flipped_byte_in_a_snapshot_made_with_reused_hashes_is_found() {
    let s = Scratch::new();
    make_tree(&s);
    s.write("p.yml", SNAP);
    snapshot(&s, "p.yml");
    let second = snapshot(&s, "p.yml");
    assert_eq!(counts(&second).0, 0, "{second}");
    let run = verify(&s, "2026-11-23.2");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);

    // Damage as a disk would: same size, mtime kept.
    let file = s.path().join("snaps/2026-11-23.2/d3/sub/f5.txt");
    let mtime = std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .expect("mtime");
    let mut body = std::fs::read(&file).expect("read");
    body[7] ^= 0x01;
    std::fs::write(&file, &body).expect("write");
    set_mtime(&file, mtime);
    let run = verify(&s, "2026-11-23.2");
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains("d3/sub/f5.txt"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    // The next snapshot reads the damaged file again (its ctime moved) and
    // records what it holds now.
    let third = snapshot(&s, "p.yml");
    assert_eq!(counts(&third).0, 1, "{third}");
    assert_eq!(
        entry(&manifest(&s, "2026-11-23.3"), "d3/sub/f5.txt")["sha256"],
        sha256_hex(&body)
    );
}

#[test]
fn a_damaged_missing_or_foreign_previous_manifest_means_every_file_is_read() {
    let s = Scratch::new();
    let n = make_tree(&s) as u64;
    s.write("p.yml", SNAP);
    snapshot(&s, "p.yml");

    // Damaged: not used, and the log says why.
    let path = s.path().join("snaps/.2026-11-23.manifest.json");
    let good = std::fs::read(&path).expect("read");
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x01;
    std::fs::write(&path, &bad).expect("write");
    let run = snapshot(&s, "p.yml");
    assert_eq!(counts(&run), (n, 0), "{run}");
    let log = s.ward().args(["log", "last", "snapshot"]).run().stdout;
    assert!(
        log.contains("cannot be used") && log.contains("hashing every file"),
        "{log}"
    );

    // Another tree snapshotted into the same folder.
    s.write("other/x", "x\n");
    s.write("other.yml", &SNAP.replace("src: current", "src: other"));
    let run = snapshot(&s, "other.yml");
    assert_eq!(counts(&run), (1, 0), "{run}");
    let log = s.ward().args(["log", "last", "snapshot"]).run().stdout;
    assert!(log.contains("was made from another tree"), "{log}");

    // A previous manifest written before ward recorded identities.
    let name = "2026-11-23.3";
    let legacy = s.path().join(format!("snaps/.{name}.manifest.json"));
    let mut m = ward::fs::manifest::read(&legacy).expect("read");
    m.source = None;
    for e in &mut m.entries {
        (e.dev, e.ino, e.ctime_ns) = (None, None, None);
    }
    std::fs::write(&legacy, ward::fs::manifest::encode(&mut m).expect("encode")).expect("write");
    let run = snapshot(&s, "other.yml");
    assert_eq!(counts(&run), (1, 0), "{run}");
    let log = s.ward().args(["log", "last", "snapshot"]).run().stdout;
    assert!(log.contains("does not record which tree"), "{log}");
    assert_eq!(verify(&s, name).code, 0, "an old manifest still verifies");
    assert_eq!(counts(&snapshot(&s, "other.yml")), (0, 1));
}

#[test]
fn incremental_snapshots_reuse_the_hashes_of_files_kept_in_the_base() {
    let s = Scratch::new();
    let n = make_tree(&s) as u64;
    s.write(
        "p.yml",
        &SNAP.replace(
            "dir: snaps }",
            "dir: snaps, strategy: base-incremental, cycle: 7 }",
        ),
    );
    let base = snapshot(&s, "p.yml");
    assert_eq!(counts(&base), (n, 0), "{base}");
    s.write("current/d0/new.txt", "new\n");
    let inc = snapshot(&s, "p.yml");
    assert_eq!(counts(&inc), (1, n), "{inc}");
    let m = every_file_hashed_incremental(&s, "2026-11-23.2");
    assert_eq!(m["kind"], "incremental");
    assert_eq!(verify(&s, "2026-11-23.2").code, 0);
    let again = snapshot(&s, "p.yml");
    assert_eq!(counts(&again), (0, n + 1), "{again}");
}

/// As [`every_file_hashed`], for an incremental snapshot: files kept in
/// the base are read there.
fn every_file_hashed_incremental(s: &Scratch, name: &str) -> serde_json::Value {
    let m = manifest(s, name);
    let base = m["base"].as_str().expect("base").to_owned();
    for e in m["entries"].as_array().expect("entries") {
        if e["type"] != "file" {
            continue;
        }
        let holder = if e["in_base"] == true { &base } else { name };
        let body = std::fs::read(
            s.path()
                .join("snaps")
                .join(holder)
                .join(e["path"].as_str().expect("path")),
        )
        .expect("read");
        assert_eq!(
            e["sha256"].as_str(),
            Some(sha256_hex(&body).as_str()),
            "{e}"
        );
    }
    m
}
