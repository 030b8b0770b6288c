//! A full `rsync` pass into a non-empty local copy: ward compares the two
//! trees itself and hands rsync only what differs (`fs/compare.rs`). The
//! copy must end exactly where rsync's own full pass leaves it, for every
//! kind of change in the source and for changes made to the copy itself.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::harness::Scratch;
use crate::rsync_changed::{CHANGES, details, make_tree, picture, write};

/// Changes beyond `CHANGES`: at the top level, to folders' own
/// attributes alone, a new pair of names, a time moved by less than a
/// second, a fifo.
const MORE: &str = r#"set -eu
cd "$SRC"
echo top > top.txt
chmod 700 quiet/p
touch -d '2002-02-02 00:00:00' k/l
mkdir -p empty/inner
ln a/keep.txt twin-of-keep
touch -d '2003-03-03 00:00:00.1' quiet/p/q
mkfifo fifo
"#;

/// Changes to the copy itself: a deleted file, one cut short with its
/// time kept, a stray name, a pair written apart.
const DRIFT: &str = r#"set -eu
cd "$DEST"
rm a/keep.txt
printf st > solo/size.txt
touch -r "$SRC/solo/size.txt" solo/size.txt
echo stray > k/l/m/stray.txt
rm quiet/p/twin
cp -p quiet/p/q/r.txt quiet/p/twin
"#;

/// The root's own mode and time, which `picture` leaves out.
fn root_of(path: &std::path::Path) -> (u32, i64) {
    let m = std::fs::metadata(path).expect("root");
    (m.mode() & 0o7777, m.mtime())
}

#[test]
fn a_compared_pass_ends_where_rsyncs_full_pass_does() {
    let s = Scratch::new();
    let root = s.path().display().to_string();
    let src = s.path().join("src");
    make_tree(&src, &s.path().join("outside"));
    write(&src.join("solo/size.txt"), "12345");
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: compare\nsteps:\n  - id: copy\n    action: rsync\n    with: {{ src: {root}/src, dest: {root}/dest }}\n"
        ),
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let first = details(&s, "copy");
    assert!(
        first.get("compared").is_none(),
        "a first copy is rsync's: {first}"
    );

    // The reference starts from the same copy and gets rsync's full pass.
    let status = std::process::Command::new("cp")
        .args(["-a", &format!("{root}/dest"), &format!("{root}/reference")])
        .status()
        .expect("cp");
    assert!(status.success());
    s.write("changes.sh", CHANGES);
    s.write("more.sh", MORE);
    s.write("drift.sh", DRIFT);
    for (script, dest) in [
        ("changes.sh", "dest"),
        ("more.sh", "dest"),
        ("drift.sh", "dest"),
        ("drift.sh", "reference"),
    ] {
        let ok = std::process::Command::new("bash")
            .arg(s.path().join(script))
            .env("SRC", &src)
            .env("OUTSIDE", s.path().join("outside"))
            .env("DEST", s.path().join(dest))
            .status()
            .expect("bash");
        assert!(ok.success(), "{script}");
    }
    // The root's own attributes change too.
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o750)).expect("chmod");

    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let d = details(&s, "copy");
    let ok = std::process::Command::new("rsync")
        .args(["-aH", "--delete", "--numeric-ids"])
        .arg(format!("{root}/src/"))
        .arg(format!("{root}/reference"))
        .status()
        .expect("rsync");
    assert!(ok.success());

    let compared = d["compared"].as_u64().expect("compared");
    let differ = d["differ"].as_u64().expect("differ");
    assert!(compared >= 20 && differ >= 10 && differ < compared, "{d}");
    assert_eq!(d["history_scope"], "compared", "{d}");
    let (dest, dest_links) = picture(&s.path().join("dest"));
    let (reference, reference_links) = picture(&s.path().join("reference"));
    let (source, source_links) = picture(&src);
    assert_eq!(dest, reference);
    assert_eq!(dest, source);
    assert_eq!(dest_links, reference_links);
    assert_eq!(dest_links, source_links);
    assert!(dest_links.contains(&vec![
        "quiet/p/q/r.txt".to_owned(),
        "quiet/p/twin".to_owned()
    ]));
    assert!(dest_links.contains(&vec!["a/keep.txt".to_owned(), "twin-of-keep".to_owned()]));
    assert_eq!(root_of(&s.path().join("dest")), root_of(&src));
    // picture() leaves times below a second out: the folder's is rsync's.
    let q = |root: &str| std::fs::metadata(s.path().join(root).join("quiet/p/q")).expect("q");
    assert_eq!(q("dest").mtime(), q("src").mtime());

    // Nothing differs now: no rsync at all.
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let d = details(&s, "copy");
    assert_eq!(d["differ"], 0, "{d}");
    assert_eq!(d["differ_folders_only"], 0, "{d}");
}

/// A folder whose own attributes alone changed, with nothing below it
/// to copy, is set by a pass without recursion: nothing else is copied.
#[test]
fn a_folder_whose_mode_alone_changed_is_set_without_copying_it() {
    let s = Scratch::new();
    let root = s.path().display().to_string();
    for i in 0..20 {
        write(&s.path().join(format!("src/big/f{i}")), "same");
    }
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: compare\nsteps:\n  - id: copy\n    action: rsync\n    with: {{ src: {root}/src, dest: {root}/dest }}\n"
        ),
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    std::fs::set_permissions(
        s.path().join("src/big"),
        std::fs::Permissions::from_mode(0o711),
    )
    .expect("chmod");
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let d = details(&s, "copy");
    assert_eq!(d["differ"], 0, "{d}");
    assert_eq!(d["differ_folders_only"], 1, "{d}");
    assert_eq!(
        std::fs::metadata(s.path().join("dest/big"))
            .expect("big")
            .mode()
            & 0o7777,
        0o711
    );
}

/// `compare: rsync` leaves the listing to rsync.
#[test]
fn compare_rsync_lets_rsync_list_both_trees() {
    let s = Scratch::new();
    let root = s.path().display().to_string();
    write(&s.path().join("src/a"), "a");
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: compare\nsteps:\n  - id: copy\n    action: rsync\n    with: {{ src: {root}/src, dest: {root}/dest, compare: rsync }}\n"
        ),
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    write(&s.path().join("src/b"), "b");
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let d = details(&s, "copy");
    assert!(d.get("compared").is_none(), "{d}");
    assert_eq!(
        std::fs::read_to_string(s.path().join("dest/b")).expect("b"),
        "b"
    );
}
