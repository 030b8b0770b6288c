//! The history check of a full `rsync` pass narrowed across runs: a copy
//! that succeeded leaves a stamp in ward's state folder (`copies/`, named
//! by a hash of `dest` resolved), and the next full pass of
//! the same copy runs rsync's dry run only over what changed in the source
//! since that copy started, while older snapshots still keep their files.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::harness::{Scratch, chmod, set_mtime, stat, status_step};

fn write(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, body).expect("write");
}

/// A source of a few folders, then a wait until every change in it is
/// older than the margin before the first copy starts (as on any night).
fn make_source(s: &Scratch) -> PathBuf {
    let src = s.path().join("data");
    for rel in [
        "mode.txt",
        "touched.txt",
        "gold/a/b.txt",
        "license/c.txt",
        "deep/x/y/z.txt",
        "deep/x/w.txt",
    ] {
        write(&src.join(rel), rel);
        chmod(&src.join(rel), 0o644);
        set_mtime(&src.join(rel), 1_700_000_000);
    }
    std::thread::sleep(std::time::Duration::from_millis(2100));
    src
}

fn playbook(s: &Scratch, name: &str, with: &str) {
    s.write(
        name,
        &format!(
            "ward: 1\nname: stamp\nsteps:\n  - id: copy\n    action: rsync\n    with: {{ src: data, dest: backup/current{with} }}\n"
        ),
    );
}

fn run(s: &Scratch, playbook: &str) -> crate::harness::Run {
    s.ward().args(["run", playbook]).run()
}

fn details(s: &Scratch) -> serde_json::Value {
    let status = s.status(None);
    let step = status_step(&status, "copy");
    assert_eq!(step["state"], "succeeded", "{step}");
    step["attempt_list"][0]["details"].clone()
}

/// The stamp of copies into `backup/current`: in the state folder's
/// `copies/`, named by the first 32 hex digits of the sha256 of the
/// destination's resolved path.
fn stamp(s: &Scratch) -> PathBuf {
    use sha2::{Digest, Sha256};
    use std::os::unix::ffi::OsStrExt;
    let real = std::fs::canonicalize(s.path().join("backup/current")).expect("resolve dest");
    let hex: String = Sha256::digest(real.as_os_str().as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    s.state()
        .parent()
        .expect("state folder")
        .join("copies")
        .join(format!("{hex}.json"))
}

/// No file of ward's among the backups: nothing named `*.ward-copy.json`
/// beside `dest` or anywhere in it (and so in no snapshot of it).
fn nothing_beside_dest(s: &Scratch) {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("list") {
            let e = e.expect("entry");
            let path = e.path();
            if e.file_name().to_string_lossy().contains("ward-copy") {
                found.push(path.clone());
            }
            if e.file_type().expect("type").is_dir() {
                walk(&path, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(&s.path().join("backup"), &mut found);
    assert!(
        found.is_empty(),
        "ward's stamps among the backups: {found:?}"
    );
}

/// An older snapshot sharing every file of `current` (as
/// `snapshot.hardlink` makes one).
fn snapshot(s: &Scratch, name: &str) -> PathBuf {
    let snap = s.path().join("backup").join(name);
    let out = std::process::Command::new("cp")
        .arg("-al")
        .arg(s.path().join("backup/current"))
        .arg(&snap)
        .output()
        .expect("cp -al");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    snap
}

/// The snapshot's copies of `mode.txt` and `touched.txt` are as the first
/// copy left them; `current`'s are the source's, on inodes of their own.
fn check_kept(s: &Scratch, snap: &Path) {
    let current = s.path().join("backup/current");
    assert_eq!(stat(&snap.join("mode.txt")).mode() & 0o7777, 0o644);
    assert_eq!(stat(&current.join("mode.txt")).mode() & 0o7777, 0o600);
    assert_ne!(
        stat(&snap.join("mode.txt")).ino(),
        stat(&current.join("mode.txt")).ino()
    );
    assert_eq!(stat(&snap.join("touched.txt")).mtime(), 1_700_000_000);
    assert_eq!(stat(&current.join("touched.txt")).mtime(), 1_600_000_000);
    // Unchanged files still share their inode with the snapshot.
    assert_eq!(
        stat(&snap.join("deep/x/y/z.txt")).ino(),
        stat(&current.join("deep/x/y/z.txt")).ino()
    );
}

/// The attribute-only changes between two runs: a mode and an mtime set
/// back (the content stays, so rsync sets both in place; `--checksum`
/// keeps the quick check from copying the touched file anew).
fn change_attributes(src: &Path) {
    chmod(&src.join("mode.txt"), 0o600);
    set_mtime(&src.join("touched.txt"), 1_600_000_000);
}

#[test]
fn a_second_run_checks_only_what_changed_since_the_first() {
    let s = Scratch::new();
    let src = make_source(&s);
    playbook(&s, "p.yml", ", args: [--checksum]");
    run(&s, "p.yml").expect_code(0);
    let m = stat(&stamp(&s));
    assert_eq!(m.mode() & 0o7777, 0o600, "the stamp's mode");
    let copies = stamp(&s).parent().expect("copies").to_path_buf();
    assert_eq!(stat(&copies).mode() & 0o7777, 0o700, "the stamps' folder");
    nothing_beside_dest(&s);
    let snap = snapshot(&s, "snap-1");
    change_attributes(&src);
    // So that the next run, which lists from its start less the margin,
    // finds nothing changed.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    run(&s, "p.yml").expect_code(0);
    let d = details(&s);
    assert_eq!(d["history_scope"], "changed", "{d}");
    // mode.txt and touched.txt: their folder did not change.
    assert_eq!(d["history_listed"], 2, "{d}");
    assert_eq!(
        (d["in_place"].as_u64(), d["unshared"].as_u64()),
        (Some(2), Some(2)),
        "{d}"
    );
    check_kept(&s, &snap);
    // Nothing changed since: no dry run at all, and still a stamp.
    run(&s, "p.yml").expect_code(0);
    let d = details(&s);
    assert_eq!(d["history_scope"], "changed", "{d}");
    assert_eq!(
        (d["history_listed"].as_u64(), d["in_place"].as_u64()),
        (Some(0), Some(0)),
        "{d}"
    );
    assert!(stamp(&s).exists());
    // A name added at the top of the source: the whole tree is checked.
    write(&src.join("new.txt"), "new");
    run(&s, "p.yml").expect_code(0);
    assert_full(&s, "itself changed");
}

/// The last run's history check was full, for a reason containing `why`.
fn assert_full(s: &Scratch, why: &str) {
    let d = details(s);
    assert_eq!(d["history_scope"], "full", "{d}");
    assert!(
        d["history_why_full"]
            .as_str()
            .is_some_and(|w| w.contains(why)),
        "{d}"
    );
}

#[test]
fn a_stamp_open_to_others_or_of_another_copy_is_not_trusted() {
    let s = Scratch::new();
    let src = make_source(&s);
    playbook(&s, "p.yml", ", args: [--checksum]");
    run(&s, "p.yml").expect_code(0);
    let snap = snapshot(&s, "snap-1");
    change_attributes(&src);
    chmod(&stamp(&s), 0o666);
    run(&s, "p.yml").expect_code(0);
    assert_full(&s, "written by others");
    check_kept(&s, &snap);
    // The copy wrote a stamp of its own again.
    assert_eq!(stat(&stamp(&s)).mode() & 0o7777, 0o600);
    // Another copy into the same folder (other filters): its stamp does
    // not narrow this copy's check, nor this one's that copy's.
    playbook(&s, "gold.yml", ", mode: gold-only, args: [--checksum]");
    run(&s, "gold.yml").expect_code(0);
    assert_full(&s, "another copy");
    run(&s, "p.yml").expect_code(0);
    assert_full(&s, "another copy");
    // Other arguments are another copy too.
    playbook(&s, "p.yml", ", args: [--checksum, --numeric-ids]");
    run(&s, "p.yml").expect_code(0);
    assert_full(&s, "another copy");
    // And the same copy again narrows.
    run(&s, "p.yml").expect_code(0);
    assert_eq!(details(&s)["history_scope"], "changed");
}

#[test]
fn a_failed_copy_leaves_no_stamp() {
    let s = Scratch::new();
    let src = make_source(&s);
    let root = s.path().display();
    // rsync, but the copy (not its dry run) fails while a marker exists.
    s.write(
        "rsync-or-fail",
        &format!(
            "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = --dry-run ] && exec rsync \"$@\"; done\nif [ -e {root}/fail ]; then rsync \"$@\"; exit 11; fi\nexec rsync \"$@\"\n"
        ),
    );
    chmod(&s.path().join("rsync-or-fail"), 0o755);
    playbook(
        &s,
        "p.yml",
        &format!(", args: [--checksum], program: {root}/rsync-or-fail"),
    );
    run(&s, "p.yml").expect_code(0);
    assert!(stamp(&s).exists());
    let snap = snapshot(&s, "snap-1");
    change_attributes(&src);
    std::fs::write(s.path().join("fail"), "").expect("marker");
    let failed = run(&s, "p.yml");
    assert_ne!(failed.code, 0, "{}", failed.stderr);
    assert!(!stamp(&s).exists(), "a failed copy left a stamp");
    // The older snapshot kept its files: the failed run had checked them.
    check_kept(&s, &snap);
    std::fs::remove_file(s.path().join("fail")).expect("marker");
    run(&s, "p.yml").expect_code(0);
    assert_full(&s, "no stamp");
    assert!(stamp(&s).exists());
    nothing_beside_dest(&s);
}
