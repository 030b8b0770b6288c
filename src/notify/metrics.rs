//! `metrics: PATH`: Prometheus text-format metrics for node_exporter's
//! textfile collector, written atomically after each run (temp name in the
//! same folder, fsync, rename, fsync of the folder: `fs::atomic`).
//!
//! Several playbooks may name the same file: the series of the other
//! playbooks are kept (read back under a lock beside the file), this
//! playbook's are replaced.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::summary::{RunResult, Summary};

/// The metrics, in the order they are written: name, help, and this
/// run's samples (label suffix, value).
const METRICS: &[(&str, &str)] = &[
    (
        "ward_last_run_timestamp_seconds",
        "When the playbook's last run ended (Unix time).",
    ),
    (
        "ward_last_success_timestamp_seconds",
        "When the playbook's last successful run ended (Unix time); absent if none did.",
    ),
    (
        "ward_last_run_duration_seconds",
        "How long the playbook's last run took (a resumed run: since its first start).",
    ),
    (
        "ward_last_run_success",
        "1 if the playbook's last run succeeded (warnings included), else 0.",
    ),
    (
        "ward_last_run_result",
        "1 for how the playbook's last run ended, 0 for the other results.",
    ),
    (
        "ward_last_run_warnings",
        "Warnings of steps that succeeded in the playbook's last run.",
    ),
    (
        "ward_last_run_bytes_copied",
        "Bytes rsync steps transferred in the playbook's last run (absent if none reported it).",
    ),
    (
        "ward_snapshots",
        "Snapshots kept after the playbook's last rotate step (absent if none ran).",
    ),
];

/// The samples of one run: metric name -> lines `name{labels} value`.
pub fn samples(summary: &Summary) -> BTreeMap<&'static str, Vec<String>> {
    let p = &summary.playbook;
    let mut m: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut put = |name: &'static str, labels: String, value: String| {
        m.entry(name)
            .or_default()
            .push(format!("{name}{{{labels}}} {value}"));
    };
    let pl = format!("playbook=\"{p}\"");
    put(
        "ward_last_run_timestamp_seconds",
        pl.clone(),
        format!("{:.3}", summary.finished_unix),
    );
    if let Some(t) = summary.last_success_unix {
        put(
            "ward_last_success_timestamp_seconds",
            pl.clone(),
            format!("{t:.3}"),
        );
    }
    put(
        "ward_last_run_duration_seconds",
        pl.clone(),
        format!("{:.3}", summary.duration_ms as f64 / 1000.0),
    );
    put(
        "ward_last_run_success",
        pl.clone(),
        u8::from(summary.result == RunResult::Succeeded).to_string(),
    );
    for r in RunResult::ALL {
        put(
            "ward_last_run_result",
            format!("{pl},result=\"{}\"", r.as_str()),
            u8::from(summary.result == r).to_string(),
        );
    }
    put(
        "ward_last_run_warnings",
        pl.clone(),
        summary.warnings.len().to_string(),
    );
    if let Some(b) = summary.bytes_copied {
        put("ward_last_run_bytes_copied", pl.clone(), b.to_string());
    }
    if let Some(n) = summary.snapshots {
        put("ward_snapshots", pl, n.to_string());
    }
    m
}

/// The `playbook` label of a sample line, if it has one.
fn playbook_label(line: &str) -> Option<&str> {
    let rest = &line[line
        .find("{playbook=\"")
        .or_else(|| line.find(",playbook=\""))?
        + 11..];
    Some(&rest[..rest.find('"')?])
}

/// The whole file: this run's samples plus the other playbooks' from `old`.
pub fn render(summary: &Summary, old: &str) -> String {
    let mut all = samples(summary);
    for line in old.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split(['{', ' ']).next().unwrap_or("");
        let Some((known, _)) = METRICS.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        match playbook_label(line) {
            Some(p) if p != summary.playbook => all.entry(known).or_default().push(line.to_owned()),
            _ => {}
        }
    }
    let mut out = String::new();
    for (name, help) in METRICS {
        let Some(lines) = all.get(name) else {
            continue;
        };
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        let mut lines = lines.clone();
        lines.sort();
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

/// How long ward waits for another holder of the metrics lock (another
/// ward, or any local user: the lock file is readable, and a shared lock
/// needs no more) before it gives up on the metrics of this run.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The old file is read up to this size; a larger one is not ward's.
const MAX_OLD: u64 = 16 * 1024 * 1024;

/// Takes the lock, retrying without blocking until `wait` has passed.
fn lock_within(
    lock: &rustix::fd::OwnedFd,
    lock_path: &Path,
    wait: std::time::Duration,
) -> Result<(), String> {
    use rustix::fs::FlockOperation;
    let until = std::time::Instant::now() + wait;
    loop {
        match rustix::fs::flock(lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {
                if std::time::Instant::now() >= until {
                    return Err(format!(
                        "another process has held {} for {} s; this run's metrics are not written",
                        lock_path.display(),
                        wait.as_secs()
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(format!("cannot lock {}: {e}", lock_path.display())),
        }
    }
}

/// The old file's text, to keep the other playbooks' series: only a
/// regular file (never through a symlink, never a FIFO or a device) and
/// at most [`MAX_OLD`] bytes; anything else is noted and ignored, and
/// the new file replaces it.
fn read_old(path: &Path) -> Result<String, String> {
    use rustix::fs::{Mode, OFlags};
    use std::io::Read;
    let ignored = |why: &str| {
        eprintln!(
            "warning: metrics: {} {why}; its old content is ignored and the file is replaced",
            path.display()
        );
        Ok(String::new())
    };
    let fd = match rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(String::new()),
        Err(rustix::io::Errno::LOOP) => return ignored("is a symbolic link"),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let stat =
        rustix::fs::fstat(&fd).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return ignored("is not a regular file");
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_OLD + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_OLD {
        return ignored(&format!("is larger than {} MiB", MAX_OLD >> 20));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Writes the file atomically, keeping other playbooks' series. Two wards
/// writing the same file take turns (a `flock` on a hidden file beside
/// it, which the collector ignores: it reads only `*.prom`).
pub fn write(path: &Path, summary: &Summary) -> Result<(), String> {
    use rustix::fs::{Mode, OFlags};
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} is not a file name", path.display()))?
        .to_string_lossy();
    let lock_path = dir.join(format!(".{name}.lock"));
    let lock = rustix::fs::open(
        &lock_path,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    lock_within(&lock, &lock_path, LOCK_WAIT)?;
    let old = read_old(path)?;
    let text = render(summary, &old);
    let mut file = crate::fs::AtomicFile::create(path, 0o644).map_err(|e| e.to_string())?;
    // Readable by the collector, which usually runs as another user,
    // whatever ward's umask (cron's may be 077).
    use std::os::unix::fs::PermissionsExt;
    let written = file
        .file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .and_then(|()| std::io::Write::write_all(file.file(), text.as_bytes()));
    written.map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.commit().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_found() {
        assert_eq!(
            playbook_label("ward_last_run_success{playbook=\"a-b\"} 1"),
            Some("a-b")
        );
        assert_eq!(
            playbook_label("x{result=\"ok\",playbook=\"c\"} 1"),
            Some("c")
        );
        assert_eq!(playbook_label("x 1"), None);
    }
}
