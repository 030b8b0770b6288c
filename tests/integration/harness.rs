//! One small builder that runs the real `ward` binary and captures what it did.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path inside the repository.
pub fn repo_path(rel: &str) -> PathBuf {
    repo_root().join(rel)
}

/// A `ward` invocation being built.
pub struct Ward {
    cmd: Command,
}

/// Starts building a `ward` invocation with a fixed clock and no colours.
pub fn ward() -> Ward {
    ward_via(&[])
}

/// As [`ward`], run through `wrapper` (a program and its arguments that
/// end with ward's path, e.g. `unshare --mount --`).
pub fn ward_via(wrapper: &[&str]) -> Ward {
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(env!("CARGO_BIN_EXE_ward"));
            cmd
        }
        None => Command::new(env!("CARGO_BIN_EXE_ward")),
    };
    cmd.env("WARD_NOW", "2026-11-23T02:00:00")
        .env("NO_COLOR", "1")
        .current_dir(repo_root());
    Ward { cmd }
}

/// What a finished `ward` did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ward {
    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Ward {
        self.cmd.arg(a);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Ward
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Ward {
        self.cmd.env(k, v);
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Ward {
        self.cmd.current_dir(dir);
        self
    }

    /// Runs to completion; fails the test if ward panicked or was killed.
    pub fn run(mut self) -> Run {
        let Output {
            status,
            stdout,
            stderr,
        } = self.cmd.output().expect("ward starts");
        let run = Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        };
        assert!(
            !run.stderr.contains("panicked"),
            "ward panicked:\n{}",
            run.stderr
        );
        assert!(
            run.code >= 0,
            "ward was killed by a signal:\n{}",
            run.stderr
        );
        run
    }
}

impl Run {
    /// Asserts the exit code, showing the output when it differs.
    pub fn expect_code(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Writes `text` to `name` in `dir` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("fixture folder");
    }
    std::fs::write(&path, text).expect("write fixture");
    path
}

/// One step of a `ward status --json` document, by id.
pub fn status_step(status: &serde_json::Value, id: &str) -> serde_json::Value {
    status["steps"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == id).cloned())
        .unwrap_or_else(|| panic!("no step `{id}` in {status}"))
}

/// A scratch folder with its own state database; `ward()` runs in it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state").join("ward.db")
    }

    /// `ward` with this folder as working directory and state.
    pub fn ward(&self) -> Ward {
        self.ward_via(&[])
    }

    /// [`Scratch::ward`] run through `wrapper` (see [`ward_via`]).
    pub fn ward_via(&self, wrapper: &[&str]) -> Ward {
        ward_via(wrapper)
            .current_dir(self.dir.path())
            .env("WARD_STATE", &self.state().display().to_string())
            .env("WARD_KILL_GRACE", "500ms")
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        write(self.dir.path(), name, text)
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// `ward status --json` of a run (or the last one).
    pub fn status(&self, run: Option<&str>) -> serde_json::Value {
        let mut w = self.ward().args(["status", "--json"]);
        if let Some(r) = run {
            w = w.arg(r);
        }
        w.run().expect_code(0).json()
    }

    /// Step id -> state of the last run; empty if no run was recorded.
    pub fn step_states_if_any(&self) -> std::collections::BTreeMap<String, String> {
        let run = self.ward().args(["status", "--json"]).run();
        if run.code != 0 {
            return Default::default();
        }
        run.json()["steps"]
            .as_array()
            .map(|steps| {
                steps
                    .iter()
                    .map(|s| {
                        (
                            s["id"].as_str().unwrap_or("").to_owned(),
                            s["state"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Step id -> state of the last run.
    pub fn step_states(&self) -> std::collections::BTreeMap<String, String> {
        self.status(None)["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap_or("").to_owned(),
                    s["state"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }
}

impl Ward {
    /// The command as built, for a test that wires its output itself
    /// (e.g. to a pseudo-terminal).
    pub fn command(self) -> Command {
        self.cmd
    }

    /// Starts ward without waiting (for signal tests).
    pub fn spawn(mut self) -> std::process::Child {
        self.cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ward starts")
    }

    /// Runs to completion, allowing death by a signal (code -1).
    pub fn run_allow_kill(mut self) -> Run {
        let Output {
            status,
            stdout,
            stderr,
        } = self.cmd.output().expect("ward starts");
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

/// Waits until `cond` holds, up to `secs` seconds.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    cond()
}

/// True if `pid` is a live process (zombies count as gone).
pub fn alive(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Snapshot folder names in `dir` (no hidden entries, no `latest`), sorted.
pub fn snapshot_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read snapshots")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && n != "latest")
        .collect();
    names.sort();
    names
}

/// A tmpfs mounted for one test (a real small or full disk), unmounted
/// when dropped. Mounting needs root, as the tests run in CI.
pub struct Tmpfs {
    /// Where it is mounted.
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs at `path` (created if missing) with mount `options`
    /// such as `size=1m,mode=0700` or `size=2m,nr_inodes=200`.
    pub fn mount(path: &Path, options: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount a tmpfs at {} (the tests run as root)",
            path.display()
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process still holding a file must not keep the mount.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A time of ward's JSON (RFC 3339 with offset) as Unix ms; panics (fails
/// the test) on anything else, a bare number included.
pub fn json_ms(v: &serde_json::Value) -> i64 {
    let text = v
        .as_str()
        .unwrap_or_else(|| panic!("not an RFC 3339 string: {v}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .timestamp_millis()
}

/// The metadata of `p` itself (a link is not followed).
pub fn stat(p: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Sets `path`'s mtime to `secs` after the epoch.
pub fn set_mtime(path: &Path, secs: u64) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open")
        .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .expect("mtime");
}

/// Sets `path`'s permission bits.
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A snapshot of `current` into `snaps` and the `verify` step on it, as a
/// nightly playbook runs them before it rotates.
pub const SNAP_AND_VERIFY: &str = "\
ward: 1
name: snap
steps:
  - id: snapshot
    action: snapshot.hardlink
    with: { src: current, dir: snaps }
  - id: verify
    needs: [snapshot]
    action: verify
    with: { path: snaps/latest }
";

/// The sha256 of `bytes` in lowercase hex, as manifests record it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
