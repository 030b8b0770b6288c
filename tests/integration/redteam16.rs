//! Red team of issue 16 ("backups that prove themselves"): a verified
//! marker planted by another user, a slice read dated by a clock that was
//! once set ahead, and file names that carry terminal escape sequences.
//! Real files, the real binary.

use std::collections::BTreeSet;

use crate::harness::Scratch;

/// A snapshot of `current` hashing every file, then a verify of it.
fn nightly(read: &str) -> String {
    format!(
        "ward: 1\nname: nightly\nsteps:\n  - id: snapshot\n    action: snapshot.hardlink\n    \
         with: {{ src: current, dir: snaps, hash: all }}\n  - id: verify\n    needs: [snapshot]\n    \
         action: verify\n    with: {{ path: snaps/latest, read: \"{read}\" }}\n"
    )
}

fn fill(s: &Scratch, n: usize) {
    for i in 0..n {
        s.write(
            &format!("current/d{}/f{i:02}.txt", i % 4),
            &format!("file {i}\n"),
        );
    }
}

fn marker(s: &Scratch, name: &str) -> serde_json::Value {
    serde_json::from_str(&s.read(&format!("snaps/.{name}.verified"))).expect("marker")
}

#[test]
fn a_marker_planted_by_another_user_does_not_make_a_damaged_snapshot_count() {
    if !rustix::process::geteuid().is_root() {
        // Only root can give a file to another user.
        return;
    }
    let s = Scratch::new();
    fill(&s, 8);
    s.write("nightly.yml", &nightly("all"));
    s.ward()
        .args(["run", "nightly.yml"])
        .env("WARD_NOW", "2026-11-23T02:00:00")
        .run()
        .expect_code(0);
    let good = s.read("snaps/.2026-11-23.verified");
    assert_eq!(marker(&s, "2026-11-23")["ok"], true);
    // Damage the snapshot: a verify now records a failure.
    let file = s.path().join("snaps/2026-11-23/d1/f01.txt");
    std::fs::remove_file(&file).expect("unlink");
    std::fs::write(&file, "file X\n").expect("damage");
    s.ward()
        .args(["verify", "snaps/2026-11-23"])
        .run()
        .expect_code(1);
    // Another user who can write the folder puts the good marker back
    // (ok: true, the right manifest checksum) as their own file.
    let path = s.path().join("snaps/.2026-11-23.verified");
    std::fs::remove_file(&path).expect("rm");
    std::fs::write(&path, &good).expect("forge");
    std::os::unix::fs::chown(&path, Some(54321), Some(54321)).expect("chown");
    let v = s
        .ward()
        .args(["verify", "--status", "--json", "snaps"])
        .run()
        .expect_code(0)
        .json();
    let snap = &v["snapshots"][0];
    assert_eq!(snap["verified"], false, "{v}");
    assert!(
        snap["marker_error"]
            .as_str()
            .is_some_and(|e| e.contains("user 54321") && e.contains("not trusted")),
        "{v}"
    );
    // ward's own marker (here: root's) counts again.
    std::os::unix::fs::chown(&path, Some(0), Some(0)).expect("chown back");
    let v = s
        .ward()
        .args(["verify", "--status", "--json", "snaps"])
        .run()
        .json();
    assert_eq!(v["snapshots"][0]["verified"], true, "{v}");
}

#[test]
fn a_slice_read_by_a_clock_once_set_ahead_is_read_again() {
    let s = Scratch::new();
    fill(&s, 30);
    s.write("nightly.yml", &nightly("1/3"));
    // One night the clock is years ahead; its snapshot's marker records a
    // slice read in 2031.
    s.ward()
        .args(["run", "nightly.yml"])
        .env("WARD_NOW", "2031-01-01T02:00:00")
        .run()
        .expect_code(0);
    let ahead = marker(&s, "2031-01-01")["slice"].clone();
    // The clock is right again: within 3 verifies every slice is read,
    // the one read "in 2031" too.
    let mut read = BTreeSet::new();
    for day in 2..=4 {
        let name = format!("2026-11-{day:02}");
        s.ward()
            .args(["run", "nightly.yml"])
            .env("WARD_NOW", &format!("{name}T02:00:00"))
            .run()
            .expect_code(0);
        let slice = marker(&s, &name)["slice"]
            .as_str()
            .expect("slice")
            .to_owned();
        read.insert(slice);
    }
    assert_eq!(
        read,
        ["1/3", "2/3", "3/3"].map(str::to_owned).into(),
        "read {read:?}; the clock ahead read {ahead}"
    );
}

#[test]
fn escape_sequences_in_file_names_do_not_reach_the_terminal() {
    let s = Scratch::new();
    fill(&s, 3);
    let evil = "current/d0/evil\x1b]0;owned\x07\x1b[2J.txt";
    s.write(evil, "x\n");
    s.write("nightly.yml", &nightly("all"));
    s.ward()
        .args(["run", "nightly.yml"])
        .env("WARD_NOW", "2026-11-23T02:00:00")
        .run()
        .expect_code(0);
    // The file is lost from the snapshot: the name is reported.
    std::fs::remove_file(
        s.path()
            .join("snaps/2026-11-23")
            .join(evil.trim_start_matches("current/")),
    )
    .expect("rm");
    let out = s
        .ward()
        .args(["verify", "snaps/2026-11-23"])
        .run()
        .expect_code(1);
    assert!(
        out.stdout.contains("evil?]0;owned??[2J.txt"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains('\x1b') && !out.stdout.contains('\x07'));
    // The verify step records it in the marker; --status shows it plain.
    s.write(
        "check.yml",
        "ward: 1\nname: check\nsteps:\n  - id: verify\n    action: verify\n    \
         with: { path: snaps/2026-11-23, against: current }\n",
    );
    let run = s
        .ward()
        .args(["run", "check.yml"])
        .env("WARD_NOW", "2026-11-23T03:00:00")
        .run()
        .expect_code(1);
    assert!(
        run.stderr.contains("missing d0/evil") && !run.stderr.contains('\x1b'),
        "{}",
        run.stderr
    );
    // A marker whose error quotes such a name (as a failed dump check's
    // or an older ward's does): --status shows it plain.
    let mut m = marker(&s, "2026-11-23");
    m["error"] = "dump d0/evil\x1b]0;owned\x07.sql.gz is not whole".into();
    s.write("snaps/.2026-11-23.verified", &m.to_string());
    let status = s
        .ward()
        .args(["verify", "--status", "snaps"])
        .run()
        .expect_code(0)
        .stdout;
    assert!(
        status.contains("FAILED") && status.contains("dump d0/evil?]0;owned?.sql.gz"),
        "{status}"
    );
    assert!(
        !status.contains('\x1b') && !status.contains('\x07'),
        "{status:?}"
    );
}

#[test]
fn a_manifest_cut_short_after_its_verify_passed_stops_the_snapshot_counting() {
    let s = Scratch::new();
    fill(&s, 8);
    s.write("nightly.yml", &nightly("all"));
    s.ward()
        .args(["run", "nightly.yml"])
        .env("WARD_NOW", "2026-11-23T02:00:00")
        .run()
        .expect_code(0);
    let status = |s: &Scratch| {
        s.ward()
            .args(["verify", "--status", "--json", "snaps"])
            .run()
            .expect_code(0)
            .json()["snapshots"][0]["verified"]
            .clone()
    };
    assert_eq!(status(&s), true);
    // The manifest loses its last bytes (a disk error, a bad copy): the set
    // can no longer be checked, and its old good marker must not count.
    let path = s.path().join("snaps/.2026-11-23.manifest.json");
    let bytes = std::fs::read(&path).expect("manifest");
    std::fs::write(&path, &bytes[..bytes.len() - 40]).expect("cut");
    assert_eq!(status(&s), false);
    s.ward()
        .args(["verify", "snaps/2026-11-23"])
        .run()
        .expect_code(1);
}

#[test]
fn a_latest_link_pointed_outside_its_folder_is_refused_and_nothing_is_written_there() {
    let s = Scratch::new();
    fill(&s, 4);
    s.write("nightly.yml", &nightly("all"));
    s.ward()
        .args(["run", "nightly.yml"])
        .env("WARD_NOW", "2026-11-23T02:00:00")
        .run()
        .expect_code(0);
    // Someone who can write the snapshots folder points `latest` at a
    // folder elsewhere.
    std::fs::create_dir_all(s.path().join("victim/conf")).expect("victim");
    let latest = s.path().join("snaps/latest");
    std::fs::remove_file(&latest).expect("rm latest");
    std::os::unix::fs::symlink(s.path().join("victim/conf"), &latest).expect("link");
    s.write(
        "check.yml",
        "ward: 1\nname: check\nsteps:\n  - id: verify\n    action: verify\n    \
         with: { path: snaps/latest }\n",
    );
    let run = s.ward().args(["run", "check.yml"]).run().expect_code(1);
    assert!(
        run.stderr.contains("outside its own folder"),
        "{}",
        run.stderr
    );
    assert!(!s.path().join("victim/.conf.verified").exists());
    // A link to a snapshot of its own folder is verified as before.
    std::fs::remove_file(&latest).expect("rm latest");
    std::os::unix::fs::symlink("2026-11-23", &latest).expect("link");
    s.ward().args(["run", "check.yml"]).run().expect_code(0);
}
