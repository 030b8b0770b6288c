//! Finding processes by name through /proc (no `ps`, no shell).

use std::path::Path;

/// A running process that matched a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Its pid.
    pub pid: i32,
    /// The name it matched.
    pub name: String,
}

/// The kernel keeps at most 15 bytes of a process name in `comm`.
const COMM_LEN: usize = 15;

/// Live processes (not zombies, not ward itself) whose `comm`, or the base
/// name of whose argv[0], equals one of `names`.
pub fn running(names: &[String]) -> Vec<Found> {
    let mut found = Vec::new();
    for (pid, dir) in other_processes() {
        if !alive(&dir) {
            continue;
        }
        let comm = std::fs::read_to_string(dir.join("comm"))
            .map(|c| c.trim_end_matches('\n').to_owned())
            .unwrap_or_default();
        let argv0 = std::fs::read(dir.join("cmdline"))
            .ok()
            .and_then(|c| {
                c.split(|b| *b == 0)
                    .next()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
            })
            .unwrap_or_default();
        let base = argv0.rsplit('/').next().unwrap_or("");
        for name in names {
            let short: String = name.chars().take(COMM_LEN).collect();
            let comm_match =
                !comm.is_empty() && (comm == *name || (name.len() > COMM_LEN && comm == short));
            if comm_match || (!base.is_empty() && base == name) {
                found.push(Found {
                    pid,
                    name: name.clone(),
                });
                break;
            }
        }
    }
    found.sort_by_key(|f| f.pid);
    found
}

/// Every process but ward itself: its pid and its /proc folder.
pub(crate) fn other_processes() -> impl Iterator<Item = (i32, std::path::PathBuf)> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .parse::<i32>()
                .ok()
                .map(|pid| (pid, e.path()))
        })
        .filter(move |(pid, _)| *pid != me)
}

/// False for zombies and processes that are gone.
fn alive(proc_dir: &Path) -> bool {
    std::fs::read_to_string(proc_dir.join("stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|s| s != "Z" && s != "X"))
        })
        .unwrap_or(false)
}

/// `name (pid 12), other (pid 34)` for messages.
pub fn describe(found: &[Found]) -> String {
    found
        .iter()
        .map(|f| format!("{} (pid {})", f.name, f.pid))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_child_by_name_and_not_after_it_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let names = vec!["sleep".to_owned()];
        assert!(running(&names).iter().any(|f| f.pid == child.id() as i32));
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert!(!running(&names).iter().any(|f| f.pid == child.id() as i32));
    }
}
