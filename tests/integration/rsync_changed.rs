//! `rsync` with `changed_since`: a pass over what changed since an earlier
//! copy leaves the destination exactly as a full pass would, for every
//! kind of change; and copies everything when the earlier copy failed.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::harness::{Scratch, status_step};

/// Everything a full `rsync -aH --delete` pass makes equal: per path its
/// kind, content or link target, mode, mtime, and which paths share an
/// inode.
pub(crate) fn picture(root: &Path) -> (BTreeMap<String, String>, BTreeSet<Vec<String>>) {
    let mut out = BTreeMap::new();
    let mut groups: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let path = e.expect("entry").path();
            let rel = path
                .strip_prefix(root)
                .expect("below")
                .display()
                .to_string();
            let meta = std::fs::symlink_metadata(&path).expect("meta");
            let what = if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {:o} {}", meta.mode() & 0o7777, meta.mtime())
            } else if meta.file_type().is_symlink() {
                format!(
                    "symlink -> {}",
                    std::fs::read_link(&path).expect("link").display()
                )
            } else if !meta.is_file() {
                format!("special {:o} {}", meta.mode(), meta.mtime())
            } else {
                if meta.nlink() > 1 {
                    groups.entry(meta.ino()).or_default().push(rel.clone());
                }
                format!(
                    "file {:o} {} {:?}",
                    meta.mode() & 0o7777,
                    meta.mtime(),
                    std::fs::read(&path).expect("read")
                )
            };
            out.insert(rel, what);
        }
    }
    let links = groups
        .into_values()
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    (out, links)
}

pub(crate) fn write(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, body).expect("write");
}

/// A tree with a folder per kind of change, a deep one, hard links.
pub(crate) fn make_tree(src: &Path, outside: &Path) {
    for (rel, body) in [
        ("a/same.txt", "abcd"),
        ("a/keep.txt", "kept"),
        ("b/gone.txt", "to be deleted"),
        ("b/stays.txt", "stays"),
        ("c/sub/x/y.txt", "a folder to be deleted"),
        ("e/old/inner/z.txt", "renamed with its folder"),
        ("f/orig", "linked later"),
        ("h/x", "a file that becomes a folder"),
        ("j/perm.txt", "mode changes"),
        ("k/l/m/n/deep.txt", "appended"),
        ("quiet/p/q/r.txt", "never changes"),
    ] {
        write(&src.join(rel), body);
    }
    std::fs::create_dir_all(src.join("g")).expect("g");
    std::fs::create_dir_all(src.join("i")).expect("i");
    std::os::unix::fs::symlink("target-one", src.join("i/sym")).expect("symlink");
    std::fs::hard_link(src.join("quiet/p/q/r.txt"), src.join("quiet/p/twin")).expect("link");
    write(
        &outside.join("moved/deep/old.txt"),
        "moved in with old times",
    );
}

/// Every kind of change, none of them at the top level.
pub(crate) const CHANGES: &str = r#"set -eu
cd "$SRC"
echo new > a/new.txt
printf 'WXYZ' > a/same.txt
touch -d '2001-01-01 00:00:00' a/same.txt
rm b/gone.txt
rm -r c/sub
mv "$OUTSIDE/moved" a/moved
mv e/old e/renamed
ln f/orig g/link
rm h/x
mkdir h/x
echo inside > h/x/in
ln -sfn target-two i/sym
chmod 600 j/perm.txt
echo more >> k/l/m/n/deep.txt
"#;

/// The steps after the warm pass run also when it failed (`when: always`).
/// Both copies read `src` through a symlink to it, as the FOSSology
/// playbooks read the repository, and run rsync through a wrapper that
/// fails once when `fail-once` exists (the same `program` for both, as
/// validation requires).
fn playbook(s: &Scratch, warm_hard_links: bool) -> String {
    let root = s.path().display();
    s.write(
        "rsync-once",
        "#!/bin/sh\nif [ -e \"$0.fail\" ]; then rm \"$0.fail\"; exit 12; fi\nexec rsync \"$@\"\n",
    );
    std::fs::set_permissions(
        s.path().join("rsync-once"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let src = s.path().join("src-link");
    std::os::unix::fs::symlink(s.path().join("src"), &src).expect("link to src");
    let src = src.display();
    s.write("changes.sh", CHANGES);
    let warm_links = if warm_hard_links {
        ""
    } else {
        ", hard_links: false"
    };
    format!(
        r#"ward: 1
name: changed-since
steps:
  - id: warm
    action: rsync
    with: {{ src: {src}, dest: {root}/dest, program: {root}/rsync-once{warm_links} }}
  - id: change
    after: [warm]
    when: always
    env: {{ SRC: {root}/src, OUTSIDE: {root}/outside }}
    cmd: [bash, {root}/changes.sh]
  - id: window
    needs: [change]
    when: always
    action: rsync
    with: {{ src: {src}, dest: {root}/dest, program: {root}/rsync-once, changed_since: warm }}
  - id: reference
    needs: [window]
    when: always
    action: rsync
    with: {{ src: {root}/src, dest: {root}/reference }}
"#
    )
}

/// Makes the tree, waits until its folders are older than the margin
/// before the warm pass (as on any real night), and runs the playbook.
fn run_changes(s: &Scratch, fail_warm: bool, warm_hard_links: bool) -> crate::harness::Run {
    make_tree(&s.path().join("src"), &s.path().join("outside"));
    std::thread::sleep(std::time::Duration::from_millis(2100));
    s.write("p.yml", &playbook(s, warm_hard_links));
    if fail_warm {
        s.write("rsync-once.fail", "");
    }
    s.ward().args(["run", "p.yml"]).run()
}

pub(crate) fn details(s: &Scratch, step: &str) -> serde_json::Value {
    let status = s.status(None);
    let step = status_step(&status, step);
    assert_eq!(step["state"], "succeeded", "{step}");
    step["attempt_list"][0]["details"].clone()
}

#[test]
fn a_pass_over_the_changes_ends_where_a_full_pass_does() {
    let s = Scratch::new();
    run_changes(&s, false, true).expect_code(0);
    let d = details(&s, "window");
    assert_eq!(d["pass"], "changed", "{d}");
    // Folders with a change are listed whole; the quiet ones are not.
    let listed = d["listed"].as_u64().expect("listed");
    assert!((4..=20).contains(&listed), "{d}");
    assert!(d["folders_read"].as_u64().is_some_and(|n| n >= 10), "{d}");
    let (dest, dest_links) = picture(&s.path().join("dest"));
    let (reference, reference_links) = picture(&s.path().join("reference"));
    assert_eq!(dest, reference);
    assert_eq!(dest_links, reference_links);
    assert!(dest_links.contains(&vec!["f/orig".to_owned(), "g/link".to_owned()]));
    assert!(!dest.contains_key("b/gone.txt") && !dest.contains_key("c/sub"));
    assert_eq!(
        std::fs::read_to_string(s.path().join("dest/a/moved/deep/old.txt")).expect("moved"),
        "moved in with old times"
    );
}

/// The warm pass without `-H` writes the two names of a file apart; the
/// pass lists every file with more than one name (the unchanged
/// `quiet/p/q/r.txt` and `quiet/p/twin` too) and links them again.
#[test]
fn a_warm_pass_without_hard_links_is_linked_by_the_pass() {
    let s = Scratch::new();
    run_changes(&s, false, false).expect_code(0);
    let d = details(&s, "window");
    assert_eq!(d["pass"], "changed", "{d}");
    assert_eq!(
        d["linked"], 2,
        "the unchanged pair, listed for its links: {d}"
    );
    let (dest, dest_links) = picture(&s.path().join("dest"));
    let (reference, reference_links) = picture(&s.path().join("reference"));
    assert_eq!(dest, reference);
    assert_eq!(dest_links, reference_links);
    assert!(dest_links.contains(&vec![
        "quiet/p/q/r.txt".to_owned(),
        "quiet/p/twin".to_owned()
    ]));
    assert!(dest_links.contains(&vec!["f/orig".to_owned(), "g/link".to_owned()]));
}

/// Once the pass has linked them, a later night with nothing changed
/// lists nothing and starts no rsync; a name written apart in `dest` (as
/// by a copy without `-H`) is listed again with its twin.
#[test]
fn names_linked_in_the_destination_are_not_listed_again() {
    let s = Scratch::new();
    let root = s.path().display().to_string();
    write(&s.path().join("src/a/one"), "twin");
    std::fs::create_dir_all(s.path().join("src/b")).expect("mkdir");
    std::fs::hard_link(s.path().join("src/a/one"), s.path().join("src/b/two")).expect("link");
    write(&s.path().join("src/c/single"), "alone");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: links\nsteps:\n  - id: warm\n    action: rsync\n    with: {{ src: {root}/src, dest: {root}/dest, hard_links: false }}\n  - id: window\n    after: [warm]\n    action: rsync\n    with: {{ src: {root}/src, dest: {root}/dest, changed_since: warm }}\n"
        ),
    );
    let same_file = |a: &str, b: &str| {
        let ino = |p: &str| {
            std::fs::metadata(s.path().join("dest").join(p))
                .expect(p)
                .ino()
        };
        ino(a) == ino(b)
    };
    let night = || {
        s.ward().args(["run", "p.yml"]).run().expect_code(0);
        details(&s, "window")
    };
    let first = night();
    assert_eq!(first["linked"], 2, "{first}");
    assert!(same_file("a/one", "b/two"));
    let second = night();
    assert_eq!(
        (second["listed"].as_u64(), second["linked"].as_u64()),
        (Some(0), Some(0)),
        "{second}"
    );
    // Written apart again behind ward's back: both names are listed.
    std::fs::remove_file(s.path().join("dest/b/two")).expect("rm");
    std::fs::write(s.path().join("dest/b/two"), "twin").expect("write");
    let third = night();
    assert_eq!(third["linked"], 2, "{third}");
    assert!(same_file("a/one", "b/two"));
}

/// A pair written apart by the warm pass, one of whose names sits in a
/// folder that changes between the passes (listed whole, not read): the
/// unchanged name is listed too, since the walk did not see all the
/// file's names, and rsync links the two (found by a red-team review).
#[test]
fn a_pair_with_a_name_in_a_changed_folder_is_linked() {
    let s = Scratch::new();
    let root = s.path().display().to_string();
    write(&s.path().join("src/gold/ab/upload"), "archive");
    std::fs::create_dir_all(s.path().join("src/files/ab")).expect("mkdir");
    std::fs::hard_link(
        s.path().join("src/gold/ab/upload"),
        s.path().join("src/files/ab/upload"),
    )
    .expect("link");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: pair\nsteps:\n  - id: warm\n    action: rsync\n    with: {{ src: {root}/src, dest: {root}/dest, hard_links: false }}\n  - id: change\n    after: [warm]\n    run: echo new > {root}/src/files/ab/other\n  - id: window\n    needs: [change]\n    action: rsync\n    with: {{ src: {root}/src, dest: {root}/dest, changed_since: warm }}\n"
        ),
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let d = details(&s, "window");
    assert_eq!(d["pass"], "changed", "{d}");
    assert_eq!(
        d["linked"], 1,
        "the unchanged name, its twin in a folder listed whole: {d}"
    );
    let ino = |p: &str| {
        std::fs::metadata(s.path().join("dest").join(p))
            .expect(p)
            .ino()
    };
    assert_eq!(ino("gold/ab/upload"), ino("files/ab/upload"));
    assert_eq!(s.read("dest/files/ab/other"), "new\n");
}

#[test]
fn a_failed_warm_pass_makes_the_pass_copy_everything() {
    let s = Scratch::new();
    let run = run_changes(&s, true, true);
    assert_eq!(run.code, 1, "the warm pass failed: {}", run.stderr);
    let d = details(&s, "window");
    assert_eq!(d["pass"], "full", "{d}");
    assert!(
        d["why_full"]
            .as_str()
            .is_some_and(|w| w.contains("`warm` did not complete a copy")),
        "{d}"
    );
    assert_eq!(
        picture(&s.path().join("dest")),
        picture(&s.path().join("reference"))
    );
}

/// A bind mount over a folder of the source between the warm pass and the
/// pass hides the folder's contents without changing any time in the
/// tree; the pass must notice the mount and copy everything. Runs ward in
/// a private mount namespace (needs `unshare`, root), so the mount goes
/// with it.
#[test]
fn a_mount_below_the_source_since_the_warm_pass_makes_the_pass_copy_everything() {
    let s = Scratch::new();
    let probe = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .stderr(std::process::Stdio::null())
        .status();
    if !probe.is_ok_and(|st| st.success()) {
        eprintln!("skipped: unshare --mount is not available here");
        return;
    }
    let root = s.path().display().to_string();
    write(&s.path().join("src/m/under"), "under the mount");
    write(&s.path().join("src/n/kept"), "kept");
    write(&s.path().join("elsewhere/bound"), "on the mount");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    s.write(
        "p.yml",
        &format!(
            r#"ward: 1
name: mounted
steps:
  - id: warm
    action: rsync
    with: {{ src: {root}/src, dest: {root}/dest }}
  - id: mount
    after: [warm]
    cmd: [mount, --bind, {root}/elsewhere, {root}/src/m]
  - id: window
    needs: [mount]
    action: rsync
    with: {{ src: {root}/src, dest: {root}/dest, changed_since: warm }}
"#
        ),
    );
    s.ward_via(&["unshare", "--mount", "--propagation", "private", "--"])
        .args(["run", "p.yml"])
        .run()
        .expect_code(0);
    let d = details(&s, "window");
    assert_eq!(d["pass"], "full", "{d}");
    assert!(
        d["why_full"]
            .as_str()
            .is_some_and(|w| w.contains("was mounted, unmounted or remounted")),
        "{d}"
    );
    assert_eq!(
        std::fs::read_to_string(s.path().join("dest/m/bound")).expect("the mount's file"),
        "on the mount"
    );
    assert!(
        !s.path().join("dest/m/under").exists(),
        "as a full pass: the hidden file goes"
    );
}

fn validate_errors(s: &Scratch, steps: &str) -> String {
    s.write(
        "v.yml",
        &format!(
            "ward: 1\nname: v\nsteps:\n  - id: warm\n    action: rsync\n    with: {{ src: /s, dest: /d }}\n  - id: other\n    run: \"true\"\n{steps}"
        ),
    );
    s.ward()
        .args(["validate", "v.yml"])
        .run()
        .expect_code(2)
        .stderr
}

#[test]
fn changed_since_must_name_an_earlier_copy_of_the_same_tree() {
    let s = Scratch::new();
    // Line 12 is the pass's `with:`; the value of `changed_since:` starts at column 47.
    let missing = validate_errors(
        &s,
        "  - id: pass\n    after: [warm]\n    action: rsync\n    with: { src: /s, dest: /d, changed_since: wrm }\n",
    );
    assert!(
        missing.contains("`changed_since: wrm` in step `pass` names no step"),
        "{missing}"
    );
    assert!(missing.contains("v.yml:12:47"), "{missing}");
    assert!(missing.contains("did you mean `warm`?"), "{missing}");

    let not_rsync = validate_errors(
        &s,
        "  - id: pass\n    after: [other]\n    action: rsync\n    with: { src: /s, dest: /d, changed_since: other }\n",
    );
    assert!(not_rsync.contains("is not an `rsync` step"), "{not_rsync}");

    let other_tree = validate_errors(
        &s,
        "  - id: pass\n    after: [warm]\n    action: rsync\n    with: { src: /s, dest: /e, changed_since: warm }\n",
    );
    assert!(
        other_tree
            .contains("names a copy of another tree: `warm` copies /s -> /d, this step /s -> /e"),
        "{other_tree}"
    );

    let not_after = validate_errors(
        &s,
        "  - id: pass\n    action: rsync\n    with: { src: /s, dest: /d, changed_since: warm }\n",
    );
    assert!(
        not_after.contains("copies what changed since `warm` but does not run after it"),
        "{not_after}"
    );

    let remote = validate_errors(
        &s,
        "  - id: pass\n    after: [warm]\n    action: rsync\n    with: { src: /s, dest: \"host:/d\", changed_since: warm }\n",
    );
    assert!(
        remote.contains("`changed_since` needs a local `dest`"),
        "{remote}"
    );

    let filtered = validate_errors(
        &s,
        "  - id: pass\n    after: [warm]\n    action: rsync\n    with: { src: /s, dest: /d, mode: filter, filters: [\"- /data/\"], changed_since: warm }\n",
    );
    assert!(
        filtered
            .contains("`changed_since` works with `mode: full` or `gold-only`, not `mode: filter`"),
        "{filtered}"
    );

    let excluding = validate_errors(
        &s,
        "  - id: pass\n    after: [warm]\n    action: rsync\n    with: { src: /s, dest: /d, args: [--exclude=/cache/, -avx], changed_since: warm }\n",
    );
    assert!(
        excluding.contains("cannot be combined with the rsync argument \"--exclude=/cache/\"")
            && excluding.contains("cannot be combined with the rsync argument \"-avx\""),
        "{excluding}"
    );

    let other_args = validate_errors(
        &s,
        "  - id: pass\n    after: [warm]\n    action: rsync\n    with: { src: /s, dest: /d, args: [--bwlimit=10m], changed_since: warm }\n",
    );
    assert!(
        other_args.contains("this step /s -> /d (args --bwlimit=10m)"),
        "{other_args}"
    );

    // A warm pass without hard links is the same copy; the other way round is not.
    s.write(
        "links.yml",
        "ward: 1\nname: ok\nsteps:\n  - id: warm\n    action: rsync\n    with: { src: /s, dest: /d, hard_links: false }\n  - id: pass\n    after: [warm]\n    action: rsync\n    with: { src: /s, dest: /d, changed_since: warm }\n",
    );
    s.ward()
        .args(["validate", "links.yml"])
        .run()
        .expect_code(0);
    let unlinked = validate_errors(
        &s,
        "  - id: pass\n    after: [warm]\n    action: rsync\n    with: { src: /s, dest: /d, hard_links: false, changed_since: warm }\n",
    );
    assert!(
        unlinked.contains("this step /s -> /d (no hard links)"),
        "{unlinked}"
    );

    // After through another step is enough.
    s.write(
        "ok.yml",
        "ward: 1\nname: ok\nsteps:\n  - id: warm\n    action: rsync\n    with: { src: /s, dest: /d/ }\n  - id: stop\n    after: [warm]\n    run: \"true\"\n  - id: pass\n    needs: [stop]\n    action: rsync\n    with: { src: /s/, dest: /d, changed_since: warm }\n",
    );
    s.ward().args(["validate", "ok.yml"]).run().expect_code(0);
}
