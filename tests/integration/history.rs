//! History that cannot change (issue 16): a mode, owner or time change in
//! the source, which rsync applies in place to `current`, must not reach
//! the hard-linked snapshots that share `current`'s inodes.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::harness::{Scratch, set_mtime, stat, status_step};

/// What must not change in an older snapshot: per path, its inode, mode,
/// owner, group and mtime (not followed through symlinks).
type Picture = BTreeMap<String, (u64, u32, u32, u32, i64, i64)>;

fn picture(root: &Path) -> Picture {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let path = e.expect("entry").path();
            let m = std::fs::symlink_metadata(&path).expect("stat");
            if m.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .expect("below")
                .display()
                .to_string();
            out.insert(
                rel,
                (
                    m.ino(),
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid(),
                    m.mtime(),
                    m.mtime_nsec(),
                ),
            );
        }
    }
    out
}

fn is_root() -> bool {
    let out = std::process::Command::new("id")
        .arg("-u")
        .output()
        .expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn chown(path: &Path, uid: u32, gid: u32, follow: bool) {
    let r = if follow {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
    } else {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
    };
    r.unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

fn write(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, body).expect("write");
}

/// A source with one file per kind of change, all with one old mtime.
fn make_source(src: &Path) {
    for (rel, body) in [
        ("mode.txt", "its mode changes"),
        ("touched.txt", "its mtime changes, not its content"),
        ("content.txt", "its content changes"),
        ("owner.txt", "its owner changes (as root)"),
        ("deep/a/b/same.txt", "nothing changes"),
    ] {
        write(&src.join(rel), body);
        set_mtime(&src.join(rel), 1_700_000_000);
    }
    std::fs::hard_link(src.join("mode.txt"), src.join("deep/mode-link.txt")).expect("link");
    std::os::unix::fs::symlink("owner.txt", src.join("link")).expect("symlink");
}

fn details(s: &Scratch, step: &str) -> serde_json::Value {
    let status = s.status(None);
    let step = status_step(&status, step);
    assert_eq!(step["state"], "succeeded", "{step}");
    step["attempt_list"][0]["details"].clone()
}

fn night(s: &Scratch, day: u32) {
    let run = s
        .ward()
        .args(["run", "p.yml"])
        .env("WARD_NOW", &format!("2026-11-{day:02}T02:00:00"))
        .run();
    assert_eq!(run.code, 0, "day {day}: {}", run.stderr);
}

fn verify(s: &Scratch, set: &Path) {
    s.ward().args(["verify"]).arg(set).run().expect_code(0);
}

/// The changes of the second night; true if owners were changed (root).
fn change_metadata(src: &Path) -> bool {
    std::fs::set_permissions(src.join("mode.txt"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    set_mtime(&src.join("touched.txt"), 1_600_000_000);
    write(&src.join("content.txt"), "new content!");
    let root = is_root();
    if root {
        chown(&src.join("owner.txt"), 4242, 4343, true);
        chown(&src.join("link"), 4242, 4343, false);
    }
    root
}

/// Older snapshot unchanged (stat and `ward verify`), new one as the source.
fn check_history(s: &Scratch, before: &Picture, owners: bool) {
    let snaps = s.path().join("backup/snapshots");
    let names = crate::harness::snapshot_names(&snaps);
    assert_eq!(names, ["2026-11-01", "2026-11-02"]);
    let old = snaps.join("2026-11-01");
    assert_eq!(&picture(&old), before, "the older snapshot changed");
    verify(s, &old);
    verify(s, &snaps.join("2026-11-02"));
    let new = snaps.join("2026-11-02");
    assert_eq!(stat(&new.join("mode.txt")).mode() & 0o7777, 0o600);
    assert_eq!(stat(&new.join("deep/mode-link.txt")).mode() & 0o7777, 0o600);
    assert_eq!(
        stat(&new.join("mode.txt")).ino(),
        stat(&new.join("deep/mode-link.txt")).ino(),
        "the source's hard links stay one file"
    );
    assert_eq!(
        std::fs::read_to_string(new.join("content.txt")).expect("content"),
        "new content!"
    );
    assert_eq!(
        std::fs::read_to_string(old.join("content.txt")).expect("content"),
        "its content changes"
    );
    if owners {
        let m = stat(&new.join("owner.txt"));
        assert_eq!((m.uid(), m.gid()), (4242, 4343));
        let l = stat(&new.join("link"));
        assert_eq!((l.uid(), l.gid()), (4242, 4343));
    }
}

#[test]
fn metadata_changes_in_the_source_leave_older_snapshots_as_they_were() {
    let s = Scratch::new();
    let src = s.path().join("data");
    make_source(&src);
    // --checksum: an mtime change with the same content is set in place
    // too (without it, rsync's quick check copies the file anew).
    s.write(
        "p.yml",
        "ward: 1\nname: history\nsteps:\n  - id: copy\n    action: rsync\n    with: { src: data, dest: backup/current, args: [--checksum] }\n  - id: snapshot\n    needs: [copy]\n    action: snapshot.hardlink\n    with: { src: backup/current, dir: backup/snapshots, hash: all }\n  - id: verify\n    needs: [snapshot]\n    action: verify\n    with: { path: backup/snapshots/latest }\n",
    );
    night(&s, 1);
    let old = s.path().join("backup/snapshots/2026-11-01");
    let before = picture(&old);
    let owners = change_metadata(&src);
    // The probe tells before the run: mode.txt's two names, touched.txt,
    // and as root owner.txt and link.
    let probe = s.ward().args(["probe", "--json", "p.yml"]).run().json();
    let history = probe["steps"]
        .as_array()
        .and_then(|st| st.iter().find(|x| x["id"] == "copy"))
        .and_then(|st| st["checks"].as_array())
        .and_then(|c| c.iter().find(|x| x["subject"] == "history"))
        .cloned()
        .unwrap_or_else(|| panic!("no history check in {probe:#}"));
    let shared = if owners { 5 } else { 3 };
    assert!(
        history["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("; {shared} of them share"))),
        "{history}"
    );
    night(&s, 2);
    check_history(&s, &before, owners);
    let new = s.path().join("backup/snapshots/2026-11-02");
    assert_eq!(stat(&new.join("touched.txt")).mtime(), 1_600_000_000);
    assert_eq!(stat(&old.join("touched.txt")).mtime(), 1_700_000_000);
    let d = details(&s, "copy");
    // mode.txt (two names, one inode), touched.txt; as root owner.txt and link.
    let expected = if owners { 4 } else { 2 };
    assert_eq!(d["unshared"], expected, "{d}");
    // Unchanged files still share their inode with the older snapshot.
    assert_eq!(
        stat(&new.join("deep/a/b/same.txt")).ino(),
        stat(&old.join("deep/a/b/same.txt")).ino()
    );
}

#[test]
fn a_pass_over_the_changes_also_leaves_older_snapshots_as_they_were() {
    let s = Scratch::new();
    let src = s.path().join("data");
    make_source(&src);
    let root = s.path().display().to_string();
    // The changes come between the warm pass and the pass over the changes
    // (as while the service is stopped), on the second night only.
    s.write(
        "changes.sh",
        &format!(
            "set -e\n[ -e {root}/second-night ] || exit 0\nchmod 600 {root}/data/mode.txt\nif [ \"$(id -u)\" = 0 ]; then chown 4242:4343 {root}/data/owner.txt; chown -h 4242:4343 {root}/data/link; fi\n"
        ),
    );
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: window\nsteps:\n  - id: warm\n    action: rsync\n    with: {{ src: data, dest: backup/current }}\n  - id: change\n    after: [warm]\n    cmd: [bash, {root}/changes.sh]\n  - id: window\n    needs: [change]\n    action: rsync\n    with: {{ src: data, dest: backup/current, changed_since: warm }}\n  - id: snapshot\n    needs: [window]\n    action: snapshot.hardlink\n    with: {{ src: backup/current, dir: backup/snapshots, hash: all }}\n  - id: verify\n    needs: [snapshot]\n    action: verify\n    with: {{ path: backup/snapshots/latest }}\n"
        ),
    );
    night(&s, 1);
    let before = picture(&s.path().join("backup/snapshots/2026-11-01"));
    std::fs::write(s.path().join("second-night"), "").expect("marker");
    night(&s, 2);
    let snaps = s.path().join("backup/snapshots");
    assert_eq!(
        picture(&snaps.join("2026-11-01")),
        before,
        "the older snapshot changed"
    );
    let d = details(&s, "window");
    assert_eq!(d["pass"], "changed", "{d}");
    let owners = is_root();
    // mode.txt (two names, one inode); as root owner.txt and link.
    assert_eq!(d["unshared"], if owners { 3 } else { 1 }, "{d}");
    verify(&s, &snaps.join("2026-11-01"));
    verify(&s, &snaps.join("2026-11-02"));
    let new = snaps.join("2026-11-02");
    assert_eq!(stat(&new.join("mode.txt")).mode() & 0o7777, 0o600);
    if owners {
        assert_eq!(stat(&new.join("owner.txt")).uid(), 4242);
        assert_eq!(stat(&new.join("link")).uid(), 4242);
    }
}

#[test]
fn a_file_no_snapshot_shares_is_changed_in_place() {
    let s = Scratch::new();
    let src = s.path().join("data");
    make_source(&src);
    s.write(
        "p.yml",
        "ward: 1\nname: plain\nsteps:\n  - id: copy\n    action: rsync\n    with: { src: data, dest: current }\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let file = s.path().join("current/touched.txt");
    let ino = stat(&file).ino();
    assert_eq!(stat(&file).nlink(), 1);
    std::fs::set_permissions(
        src.join("touched.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .expect("chmod");
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert_eq!(stat(&file).mode() & 0o7777, 0o640);
    assert_eq!(stat(&file).ino(), ino, "a file with one link is not copied");
    let d = details(&s, "copy");
    assert_eq!(
        (d["in_place"].as_u64(), d["unshared"].as_u64()),
        (Some(1), Some(0)),
        "{d}"
    );
}

#[test]
fn quiet_is_refused_with_a_local_dest_only() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: q\nsteps:\n  - id: copy\n    action: rsync\n    with: { src: data, dest: current, args: [-aq] }\n",
    );
    let run = s.ward().args(["validate", "p.yml"]).run();
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(run.stderr.contains("`-q` is not allowed"), "{}", run.stderr);
    s.write(
        "r.yml",
        "ward: 1\nname: q\nsteps:\n  - id: copy\n    action: rsync\n    with: { src: data, dest: \"backup.example.org:/srv/current\", args: [-q] }\n",
    );
    s.ward().args(["validate", "r.yml"]).run().expect_code(0);
}
