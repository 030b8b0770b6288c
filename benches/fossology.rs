//! Benchmark: `backup-full.yml` on the FOSSology test system against the
//! plain shell script an operator would write from the design (stop and
//! wait for the agents, dump, rsync, start, cp -al), side by side in one
//! run: wall time, and how long the scheduler is down. Issue 11's shape:
//! the scheduler's agents take 0.5-2 s to exit after SIGTERM (finishing
//! their current item), and the floor of the downtime (stop, wait until
//! every agent is gone, start: no work in between) is measured in the same
//! rounds.
//!
//! `cargo bench --bench fossology`, with
//! - `WARD_BENCH_FILES` unpacked files in the repository (default 4,000;
//!   the big shape is 100,000),
//! - `WARD_BENCH_ROWS` jobqueue rows (default 20,000, or 400,000 from
//!   50,000 files on),
//! - `WARD_BENCH_ROUNDS` rounds (default 5; who goes first alternates).
//!
//! Targets (later night, medians): scheduler downtime ≤ 0.75x the script's
//! on ~4,000 files, ≤ 0.4x on 100,000+; wall time ≤ 1.0x. The last lines
//! are markdown table rows for docs/PERFORMANCE.md.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[allow(dead_code)]
#[path = "../tests/support/pg_cluster.rs"]
mod pg_cluster;
#[allow(dead_code)]
#[path = "../tests/support/fossology.rs"]
mod system;

/// Agents of the scheduler stand-in: each takes its own 0.5-2 s to exit.
const AGENTS: usize = 3;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|r| r.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

/// `100000` as `100,000`, as the docs write numbers.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median of signed differences, in seconds.
fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Writes back whatever the previous contender left dirty, so that neither
/// pays for the other's writeback (the script never flushes; ward does).
fn settle() {
    assert!(Command::new("sync").status().expect("sync").success());
}

/// The agents' exit times of one night of one round: pseudo-random in
/// 0.5-2 s, the same for the floor, the script and ward.
fn agent_exit(round: usize, night: usize) -> Vec<Duration> {
    let mut rng = fastrand::Rng::with_seed(0x11 + (round * 2 + night) as u64);
    (0..AGENTS)
        .map(|_| Duration::from_millis(rng.u64(500..=2000)))
        .collect()
}

/// The floor of the downtime: stop (SIGTERM), wait until the scheduler and
/// every agent are gone (looking every 10 ms), start; timed as the stand-in
/// logs it, like the contenders' downtime.
fn floor(sys: &system::FoSystem) -> Duration {
    assert!(
        Command::new(&sys.scheduler)
            .arg("--kill")
            .status()
            .expect("stop")
            .success()
    );
    while sys.count_running() != (0, 0) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        Command::new(&sys.scheduler)
            .arg("--daemon")
            .status()
            .expect("start")
            .success()
    );
    sys.wait_agents(AGENTS);
    sys.last_downtime().expect("floor downtime")
}

#[derive(Default)]
struct Night {
    exit: Vec<Duration>,
    floor: Vec<Duration>,
    sh_wall: Vec<Duration>,
    sh_down: Vec<Duration>,
    ward_wall: Vec<Duration>,
    ward_down: Vec<Duration>,
}

fn run_script(
    sys: &system::FoSystem,
    script: &Path,
    b: &Path,
    day: &str,
    show: bool,
) -> (Duration, Duration) {
    settle();
    let start = Instant::now();
    let ok = Command::new("bash")
        .arg(script)
        .arg(b)
        .arg(day)
        .status()
        .expect("script");
    let wall = start.elapsed();
    assert!(ok.success());
    // Downtime as the scheduler stand-in saw it, the same way for both.
    let down = sys.last_downtime().expect("script downtime");
    if show {
        let read = |f: &str| {
            std::fs::read_to_string(b.join(f))
                .expect("stamp")
                .trim()
                .parse::<u128>()
                .expect("ns")
        };
        let ms = |a: &str, b: &str| (read(b) - read(a)) / 1_000_000;
        println!(
            "    script stages (ms): stop+wait {} | dump {} | rsync {} | start {} | cp -al {}",
            ms("stopped", "gone"),
            ms("gone", "dumped"),
            ms("dumped", "copied"),
            ms("copied", "started"),
            ms("started", "linked"),
        );
    }
    (wall, down)
}

fn run_ward(
    sys: &system::FoSystem,
    wb: &Path,
    state: &Path,
    day: &str,
    show: bool,
) -> (Duration, Duration) {
    settle();
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .arg("run")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/playbooks/fossology/backup-full.yml"
        ))
        .args(sys.vars(wb))
        .env("WARD_STATE", state)
        .env("WARD_NOW", format!("{day}T02:00:00"))
        .output()
        .expect("ward");
    let wall = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let down = sys.last_downtime().expect("ward downtime");
    if show {
        let status = Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(["status", "--json"])
            .env("WARD_STATE", state)
            .output()
            .expect("status");
        let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
        println!(
            "    ward steps (ms: duration, from..to since the run started; run {} ms, process {} ms):",
            v["duration_ms"],
            wall.as_millis()
        );
        // Times are RFC 3339 in ward's JSON.
        let ms = |t: &serde_json::Value| {
            t.as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis())
        };
        let t0 = ms(&v["started_at"]).unwrap_or(0);
        for st in v["steps"].as_array().expect("steps") {
            println!(
                "      {:<24} {:>6}  {:>6}..{:<6}",
                st["id"].as_str().unwrap_or(""),
                st["duration_ms"],
                ms(&st["started_at"]).unwrap_or(t0) - t0,
                ms(&st["finished_at"]).unwrap_or(t0) - t0,
            );
            // What the built-in actions say about their own timings.
            let log = st["log_path"].as_str().unwrap_or("");
            for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
                if line.contains(" in ") && line.contains('s') && !line.contains("running:") {
                    println!("        {line}");
                }
            }
        }
    }
    (wall, down)
}

fn main() {
    let files = env_usize("WARD_BENCH_FILES", 4_000);
    let rows = env_usize(
        "WARD_BENCH_ROWS",
        if files >= 50_000 { 400_000 } else { 20_000 },
    );
    let rounds = env_usize("WARD_BENCH_ROUNDS", 5).max(1);
    // A day's work between the first and the later night.
    let (day_files, day_rows) = ((files / 100).max(10), rows / 8);
    let shape = format!(
        "{files} files, {rows} jobqueue rows; a day's work: +{day_files} files, +{day_rows} rows; \
         {AGENTS} agents, 0.5-2 s to exit"
    );
    let dir = tempfile::Builder::new()
        .prefix("ward-bench-fossology")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir");
    let sys = system::FoSystem::build(&dir.path().join("fo"));
    println!("growing the test system: {shape}");
    sys.grow(files, rows);
    sys.linger_agents(AGENTS);
    let script = dir.path().join("backup.sh");
    // What an operator would write: stop (the init script returns at once),
    // wait until the scheduler and its agents are gone, dump, copy, start,
    // then a hard-linked copy of the night. `pgrep -r RSDT`: zombies do not
    // count (this machine's init reaps orphaned agents only every second or
    // so; ward skips zombies too).
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\nset -e -o pipefail\nb=\"$1\"\nday=\"$2\"\nmkdir -p \"$b/current/db\" \"$b/snapshots\"\n\
             date +%s%N > \"$b/stopped\"\n\"{s}\" --kill\n\
             while pgrep -r RSDT -x {sched} > /dev/null || pgrep -r RSDT -x {agent} > /dev/null; do sleep 0.1; done\n\
             date +%s%N > \"$b/gone\"\n\
             pg_dumpall -w -h {sock} -p {port} -U postgres | gzip > \"$b/current/db/pg_dumpall.sql.gz\"\n\
             date +%s%N > \"$b/dumped\"\n\
             rsync -a --delete {repo}/ \"$b/current/repository/\"\n\
             date +%s%N > \"$b/copied\"\n\
             \"{s}\" --daemon\ndate +%s%N > \"$b/started\"\n\
             cp -al \"$b/current\" \"$b/snapshots/$day\"\n\
             date +%s%N > \"$b/linked\"\n",
            s = sys.scheduler.display(),
            sched = sys.scheduler_name,
            agent = sys.agent_name,
            sock = sys.cluster.socket.display(),
            port = sys.cluster.port,
            repo = sys.repo.display(),
        ),
    )
    .expect("script");
    // Each round: a first night (everything is copied) and a later night
    // (after a day's work), both timed; each night also measures the floor.
    let mut nights = [Night::default(), Night::default()];
    for round in 0..rounds {
        let ward_first = round % 2 == 1;
        for (night, n) in nights.iter_mut().enumerate() {
            let day = format!("2026-11-{:02}", round * 2 + night + 1);
            let exit = agent_exit(round, night);
            let b = dir.path().join(format!("sh-{round}"));
            let wb = dir.path().join(format!("ward-{round}"));
            let state = dir.path().join(format!("state-{round}/ward.db"));
            let show = round == 0 || night == 1;
            sys.set_agent_exit(&exit);
            sys.wait_agents(AGENTS);
            let fl = floor(&sys);
            let mut sh = None;
            let mut wd = None;
            for contender in 0..2 {
                sys.set_agent_exit(&exit);
                sys.wait_agents(AGENTS);
                if (contender == 0) != ward_first {
                    sh = Some(run_script(&sys, &script, &b, &day, show));
                } else {
                    wd = Some(run_ward(&sys, &wb, &state, &day, show));
                }
            }
            let ((sw, sd), (ww, wdn)) = (sh.expect("script ran"), wd.expect("ward ran"));
            let max_exit = exit.iter().max().copied().unwrap_or_default();
            println!(
                "  round {} {} night ({} first; agents exit in {:?} ms): floor {:.2} s | script {:.2} s, down {:.2} s | ward {:.2} s, down {:.2} s",
                round + 1,
                if night == 0 { "first" } else { "later" },
                if ward_first { "ward" } else { "script" },
                exit.iter().map(|d| d.as_millis()).collect::<Vec<_>>(),
                fl.as_secs_f64(),
                sw.as_secs_f64(),
                sd.as_secs_f64(),
                ww.as_secs_f64(),
                wdn.as_secs_f64(),
            );
            n.exit.push(max_exit);
            n.floor.push(fl);
            n.sh_wall.push(sw);
            n.sh_down.push(sd);
            n.ward_wall.push(ww);
            n.ward_down.push(wdn);
            if night == 0 {
                sys.day_of_work(&day, day_files, day_rows);
            }
        }
        // Untimed: the round's backups go, so that disk space stays bounded.
        for d in [format!("sh-{round}"), format!("ward-{round}")] {
            let _ = std::fs::remove_dir_all(dir.path().join(d));
        }
    }
    println!(
        "\nshape: {shape}; {rounds} rounds, medians; downtime minus floor: median of each round's difference"
    );
    println!(
        "| shape | night | agents' exit | floor | ward wall | script wall | wall ratio | ward down | script down | down ratio | per round | ward down − floor | script down − floor |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (label, n) in ["first", "later"].iter().zip(nights) {
        let over = |downs: &[Duration]| {
            median_f(
                downs
                    .iter()
                    .zip(&n.floor)
                    .map(|(d, f)| d.as_secs_f64() - f.as_secs_f64())
                    .collect(),
            )
        };
        let (ward_over, sh_over) = (over(&n.ward_down), over(&n.sh_down));
        // The agents' exit differs between rounds: the ratio within each
        // round, then its median, next to the ratio of the medians.
        let per_round = median_f(
            n.ward_down
                .iter()
                .zip(&n.sh_down)
                .map(|(w, s)| w.as_secs_f64() / s.as_secs_f64())
                .collect(),
        );
        let exit = median(n.exit);
        let fl = median(n.floor);
        let (sw, sd, ww, wd) = (
            median(n.sh_wall),
            median(n.sh_down),
            median(n.ward_wall),
            median(n.ward_down),
        );
        println!(
            "| {} files, {} rows | {label} | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.2}x | {:.2} s | {:.2} s | **{:.2}x** | {:.2}x | {:+.2} s | {:+.2} s |",
            thousands(files),
            thousands(rows),
            exit.as_secs_f64(),
            fl.as_secs_f64(),
            ww.as_secs_f64(),
            sw.as_secs_f64(),
            ww.as_secs_f64() / sw.as_secs_f64(),
            wd.as_secs_f64(),
            sd.as_secs_f64(),
            wd.as_secs_f64() / sd.as_secs_f64(),
            per_round,
            ward_over,
            sh_over,
        );
    }
}
