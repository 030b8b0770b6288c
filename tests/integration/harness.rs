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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ward"));
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
    std::fs::write(&path, text).expect("write fixture");
    path
}
