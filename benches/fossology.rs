//! Benchmark: `backup-full.yml` on the FOSSology test system against the
//! plain shell script an operator would write from the design (stop, dump,
//! rsync, cp -al, start), side by side in one run: wall time, and how long
//! the scheduler is down.
//!
//! `cargo bench --bench fossology`. Targets: ≤ 0.8x the script's wall time
//! and ≤ 0.7x its scheduler downtime.

use std::process::Command;
use std::time::{Duration, Instant};

#[allow(dead_code)]
#[path = "../tests/support/pg_cluster.rs"]
mod pg_cluster;
#[allow(dead_code)]
#[path = "../tests/support/fossology.rs"]
mod system;

fn rounds() -> usize {
    std::env::var("WARD_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Writes back whatever the previous contender left dirty, so that neither
/// pays for the other's writeback (the script never flushes; ward does).
fn settle() {
    assert!(Command::new("sync").status().expect("sync").success());
}

fn main() {
    let dir = tempfile::Builder::new()
        .prefix("ward-bench-fossology")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir");
    let sys = system::FoSystem::build(&dir.path().join("fo"));
    println!("growing the test system: 30,000 unpacked files, 400,000 jobqueue rows");
    sys.grow(30_000, 400_000);
    let script = dir.path().join("backup.sh");
    let s = sys.scheduler.display();
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\nset -e -o pipefail\nb=\"$1\"\nday=\"$2\"\nmkdir -p \"$b/current/db\" \"$b/snapshots\"\n\
             date +%s%N > \"$b/stopped\"\n\"{s}\" --kill\n\
             pg_dumpall -w -h {sock} -p {port} -U postgres | gzip > \"$b/current/db/pg_dumpall.sql.gz\"\n\
             date +%s%N > \"$b/dumped\"\n\
             rsync -a --delete {repo}/ \"$b/current/repository/\"\n\
             date +%s%N > \"$b/copied\"\n\
             \"{s}\" --daemon\ndate +%s%N > \"$b/started\"\n\
             cp -al \"$b/current\" \"$b/snapshots/$day\"\n",
            sock = sys.cluster.socket.display(),
            port = sys.cluster.port,
            repo = sys.repo.display(),
        ),
    )
    .expect("script");
    // Each round: a first night (full copy) and a later night (after a day's
    // work: 500 new unpacked files, 50,000 new jobqueue rows), both timed.
    let mut first = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut later = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds() {
        for night in 0..2 {
            let day = format!("2026-11-{:02}", round * 2 + night + 1);
            let b = dir.path().join(format!("sh-{round}"));
            settle();
            let start = Instant::now();
            let ok = Command::new("bash")
                .arg(&script)
                .arg(&b)
                .arg(&day)
                .status()
                .expect("script");
            let sh_wall = start.elapsed();
            assert!(ok.success());
            let read = |f: &str| {
                std::fs::read_to_string(b.join(f))
                    .expect("stamp")
                    .trim()
                    .parse::<u128>()
                    .expect("ns")
            };
            // Downtime as the scheduler stand-in saw it, the same way for both.
            let sh_down = sys.last_downtime().expect("script downtime");
            if round == 0 {
                let ms = |a: &str, b: &str| (read(b) - read(a)) / 1_000_000;
                println!(
                    "  night {}: script stages (ms): stop+dump {} | rsync {} | start {}",
                    night + 1,
                    ms("stopped", "dumped"),
                    ms("dumped", "copied"),
                    ms("copied", "started")
                );
            }

            let wb = dir.path().join(format!("ward-{round}"));
            let state = dir.path().join(format!("state-{round}/ward.db"));
            settle();
            let start = Instant::now();
            let out = Command::new(env!("CARGO_BIN_EXE_ward"))
                .arg("run")
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/playbooks/fossology/backup-full.yml"
                ))
                .args(sys.vars(&wb))
                .env("WARD_STATE", &state)
                .env("WARD_NOW", format!("{day}T02:00:00"))
                .output()
                .expect("ward");
            let ward_wall = start.elapsed();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let status = Command::new(env!("CARGO_BIN_EXE_ward"))
                .args(["status", "--json"])
                .env("WARD_STATE", &state)
                .output()
                .expect("status");
            let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
            let down = sys.last_downtime().expect("ward downtime");
            if round == 0 {
                println!(
                    "  night {}: ward steps (ms: duration, from..to since the run started; run {} ms, process {} ms):",
                    night + 1,
                    v["duration_ms"],
                    ward_wall.as_millis()
                );
                let t0 = v["started_at"].as_i64().unwrap_or(0);
                for st in v["steps"].as_array().expect("steps") {
                    println!(
                        "    {:<24} {:>6}  {:>6}..{:<6}",
                        st["id"].as_str().unwrap_or(""),
                        st["duration_ms"],
                        st["started_at"].as_i64().unwrap_or(t0) - t0,
                        st["finished_at"].as_i64().unwrap_or(t0) - t0,
                    );
                    // What the built-in actions say about their own timings.
                    let log = st["log_path"].as_str().unwrap_or("");
                    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
                        if line.contains(" in ") && line.contains('s') && !line.contains("running:")
                        {
                            println!("      {line}");
                        }
                    }
                }
            }
            let bucket = if night == 0 { &mut first } else { &mut later };
            bucket.0.push(sh_wall);
            bucket.1.push(sh_down);
            bucket.2.push(ward_wall);
            bucket.3.push(down);
            if night == 0 {
                sys.grow(500, 50_000);
            }
        }
    }
    for (label, (sw, sd, ww, wd)) in [("first night", first), ("later night", later)] {
        let (sw, sd, ww, wd) = (median(sw), median(sd), median(ww), median(wd));
        println!(
            "backup-full, {label}: ward {:.2} s (scheduler down {:.2} s) | shell script {:.2} s (down {:.2} s) | wall {:.2}x, downtime {:.2}x",
            ww.as_secs_f64(),
            wd.as_secs_f64(),
            sw.as_secs_f64(),
            sd.as_secs_f64(),
            ww.as_secs_f64() / sw.as_secs_f64(),
            wd.as_secs_f64() / sd.as_secs_f64()
        );
    }
}
