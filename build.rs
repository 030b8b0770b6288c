//! Puts the commit into `ward --version`: `ward 0.1.0 (f30c645 2026-12-02)`,
//! with `-dirty` after the hash when ward's sources differ from it.
//!
//! Only when this crate is itself a git checkout (or worktree) and `git`
//! runs; a crate tarball, a tree without git, or a crate unpacked inside
//! someone else's repository builds with the plain version. Nothing here
//! may fail the build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    // Listing anything turns off cargo's default (rerun when any file of the
    // package changes), so the sources are listed too: the dirty flag must
    // follow them, and the crate recompiles when they change anyway.
    // A missing path would rerun the script on every build (a published
    // crate has no Cargo.lock, say), so only those that exist are listed.
    for path in ["build.rs", "Cargo.toml", "Cargo.lock", "src", "crates"] {
        if manifest_dir.join(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let info = commit(&manifest_dir);
    if let Some(info) = &info {
        // HEAD moves on a checkout; the branch's ref (a loose file, or
        // packed-refs) moves on a commit. Only existing files are listed: cargo
        // reruns the script on every build for a path that is missing.
        for path in &info.watch {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let long = match info {
        Some(info) => {
            // The manual pages' date: the commit's, so a rebuild gives the same page.
            println!("cargo:rustc-env=WARD_COMMIT_DATE={}", info.date);
            format!("{version} ({} {})", info.describe, info.date)
        }
        None => version,
    };
    println!("cargo:rustc-env=WARD_LONG_VERSION={long}");
}

struct Commit {
    /// `f30c645` or `f30c645-dirty`.
    describe: String,
    /// The commit's date, `2026-12-02`.
    date: String,
    /// Files whose change means another commit is checked out.
    watch: Vec<PathBuf>,
}

fn commit(dir: &Path) -> Option<Commit> {
    // A crate unpacked inside another project's repository must not take
    // that project's commit: the top of the work tree has to be this crate.
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    if std::fs::canonicalize(&top).ok()? != std::fs::canonicalize(dir).ok()? {
        return None;
    }
    let hash = git(dir, &["rev-parse", "--short", "HEAD"])?;
    let date = git(dir, &["log", "-1", "--format=%cs", "HEAD"])?;
    // Only ward's own sources count: an edited test or doc does not change
    // the binary.
    let changes = git(
        dir,
        &[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            "src",
            "crates",
            "build.rs",
            "Cargo.toml",
            "Cargo.lock",
        ],
    )?;
    let dirty = if changes.is_empty() { "" } else { "-dirty" };

    // In a worktree `.git` is a file and HEAD lives in the worktree's own
    // git folder while refs live in the common one; `--git-path` resolves
    // both cases.
    let mut watch = Vec::new();
    let mut names = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        names.push(branch);
    }
    for name in names {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            if path.is_file() {
                watch.push(path);
            }
        }
    }
    Some(Commit {
        describe: format!("{hash}{dirty}"),
        date,
        watch,
    })
}

/// The trimmed standard output of a successful `git` command, else `None`.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        // `git status` must not rewrite the index while cargo builds.
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_owned())
}
