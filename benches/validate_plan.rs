//! Benchmark: validate + plan of a generated 5,000-step playbook.
//!
//! Run with `cargo bench --bench validate_plan`. Not part of the test suite;
//! the figure goes into docs/PERFORMANCE.md. Target: under 300 ms.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

const STEPS: usize = 5_000;
const CHAINS: usize = 50;
const ROUNDS: usize = 15;

/// 50 chains of 100 steps; every step templated, a third of them actions,
/// each chain's head waiting for the previous chain's head, one final join.
fn playbook() -> String {
    let mut s = String::from(
        "ward: 1\nname: bench\nmax_parallel: 8\nvars:\n  root: /backup\n  dest: \"{{ root }}/current\"\n  agents: [a, b, c]\ndefaults:\n  timeout: 5m\n  retry: { attempts: 2, delay: 1s }\nsteps:\n",
    );
    let per_chain = STEPS / CHAINS;
    for c in 0..CHAINS {
        for i in 0..per_chain {
            let id = format!("c{c}-s{i}");
            let _ = writeln!(s, "  - id: {id}");
            if i > 0 {
                let _ = writeln!(s, "    needs: [c{c}-s{}]", i - 1);
            } else if c > 0 {
                let _ = writeln!(s, "    after: [c{}-s0]", c - 1);
            }
            match i % 3 {
                0 => {
                    let _ = writeln!(
                        s,
                        "    run: echo {{{{ dest | quote }}}}/{id} && test -d {{{{ root }}}}"
                    );
                }
                1 => {
                    let _ = writeln!(
                        s,
                        "    cmd: [ls, -l, \"{{{{ dest }}}}/{id}\"]\n    env: {{ STEP: \"{id}\" }}"
                    );
                }
                _ => {
                    let _ = writeln!(
                        s,
                        "    action: rsync\n    with: {{ src: \"{{{{ root }}}}/src/{id}\", dest: \"{{{{ dest }}}}/{id}\", mode: full }}"
                    );
                }
            }
        }
    }
    let last: Vec<String> = (0..CHAINS)
        .map(|c| format!("c{c}-s{}", per_chain - 1))
        .collect();
    let _ = writeln!(
        s,
        "  - id: join\n    after: [{}]\n    when: always\n    cmd: [/bin/true]",
        last.join(", ")
    );
    s
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.yml");
    let text = playbook();
    std::fs::write(&path, &text).expect("write playbook");
    println!("playbook: {} steps, {} KiB", STEPS + 1, text.len() / 1024);

    // In-process: read, parse, validate, template, build the DAG, render JSON.
    let mut times = Vec::new();
    let mut check_times = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let checked = ward::check_file(&path, &[], "bench").expect("readable");
        let plan = checked.plan.expect("valid");
        check_times.push(start.elapsed());
        let mut sink = std::io::sink();
        ward::report::plan_json(&mut sink, &plan).expect("render");
        sink.flush().expect("flush");
        times.push(start.elapsed());
    }
    println!(
        "library read+parse+validate+DAG: median {:?} over {ROUNDS} rounds",
        median(check_times)
    );
    println!(
        "library validate+plan (json): median {:?} over {ROUNDS} rounds",
        median(times)
    );

    // End to end: the real binary, process start included.
    for format in ["text", "json"] {
        let mut times = Vec::new();
        for _ in 0..ROUNDS {
            let start = Instant::now();
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_ward"))
                .args(["plan", "--format", format])
                .arg(&path)
                .output()
                .expect("ward runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            times.push(start.elapsed());
        }
        println!(
            "`ward plan --format {format}` end to end: median {:?}",
            median(times)
        );
    }
    let mut times = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ward"))
            .arg("validate")
            .arg(&path)
            .output()
            .expect("ward runs");
        assert!(out.status.success());
        times.push(start.elapsed());
    }
    println!("`ward validate` end to end: median {:?}", median(times));
}
