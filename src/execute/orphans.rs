//! Step processes left behind by a ward that died.
//!
//! A `kill -9` or a crash of ward does not stop its children: they run in
//! their own process groups. Before a crashed run is resumed, its leftovers
//! must be stopped, or the old and the new attempt of a step would run at
//! once. Every child ward starts carries `WARD_RUN_ID=<run>` in its
//! environment, so leftovers are found through /proc without trusting
//! recorded pids (which the kernel may have reused).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, getpgid, kill_process_group};

/// Process groups whose processes carry `WARD_RUN_ID=run_id`.
pub fn find(run_id: &str) -> BTreeSet<i32> {
    let needle = format!("WARD_RUN_ID={run_id}");
    let my_group = getpgid(None).ok();
    let mut groups = BTreeSet::new();
    for (pid, dir) in crate::action::procs::other_processes() {
        let Some(pid) = Pid::from_raw(pid) else {
            continue;
        };
        let Ok(environ) = std::fs::read(dir.join("environ")) else {
            continue;
        };
        if !environ
            .split(|b| *b == 0)
            .any(|var| var == needle.as_bytes())
        {
            continue;
        }
        if let Ok(group) = getpgid(Some(pid))
            && Some(group) != my_group
        {
            groups.insert(group.as_raw_nonzero().get());
        }
    }
    groups
}

/// Stops every leftover process group of `run_id`: SIGTERM, then SIGKILL
/// after `grace`. Returns how many groups it found.
pub fn stop(run_id: &str, grace: Duration) -> usize {
    let groups = find(run_id);
    for g in &groups {
        if let Some(pgid) = Pid::from_raw(*g) {
            let _ = kill_process_group(pgid, Signal::TERM);
        }
    }
    let deadline = Instant::now() + grace;
    while !find(run_id).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for g in find(run_id) {
        if let Some(pgid) = Pid::from_raw(g) {
            let _ = kill_process_group(pgid, Signal::KILL);
        }
    }
    // Give the kernel a moment to reap, so nothing writes after we resume.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !find(run_id).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    groups.len()
}
