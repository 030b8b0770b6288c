//! Hostile files are refused quickly, with a clear message and exit 2.

use std::time::{Duration, Instant};

use crate::harness::{ward, write};

#[test]
fn huge_file_is_refused_before_parsing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::from("ward: 1\nname: huge\nsteps:\n");
    let filler = format!("  # {}\n", "x".repeat(1000));
    while text.len() <= 9 * 1024 * 1024 {
        text.push_str(&filler);
    }
    let path = write(dir.path(), "huge.yml", &text);
    let run = ward().arg("validate").arg(&path).run().expect_code(2);
    assert!(
        run.stderr.contains("larger than 8388608 bytes"),
        "{}",
        run.stderr
    );
}

#[test]
fn alias_bomb_is_refused_fast() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::from(
        "ward: 1\nname: bomb\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..12 {
        let p = i - 1;
        let refs = vec![format!("*l{p}"); 10].join(", ");
        text.push_str(&format!("l{i}: &l{i} [{refs}]\n"));
    }
    text.push_str("steps:\n  - id: a\n    run: echo a\n");
    let path = write(dir.path(), "bomb.yml", &text);
    let start = Instant::now();
    let run = ward().arg("validate").arg(&path).run().expect_code(2);
    // Generous bound: the point is "refused, not expanded to 10^11 nodes".
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(run.stderr.contains("billion laughs"), "{}", run.stderr);
}

#[test]
fn deep_flow_nesting_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "ward: 1\nname: deep\nsteps: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let path = write(dir.path(), "deep.yml", &text);
    let run = ward().arg("validate").arg(&path).run().expect_code(2);
    assert!(run.stderr.contains("deep.yml:3:"), "{}", run.stderr);
}

#[test]
fn deep_block_nesting_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::from("ward: 1\nname: deep\nsteps:\n");
    for depth in 0..200 {
        text.push_str(&format!("{}k{depth}:\n", "  ".repeat(depth + 1)));
    }
    let path = write(dir.path(), "deep.yml", &text);
    let run = ward().arg("validate").arg(&path).run().expect_code(2);
    assert!(
        run.stderr.contains("nested more than 64 levels"),
        "{}",
        run.stderr
    );
}

#[test]
fn binary_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("binary.yml");
    std::fs::write(&path, b"ward: 1\nname: \xff\xfe\x00\n").expect("write");
    let run = ward().arg("validate").arg(&path).run().expect_code(2);
    assert!(run.stderr.contains("not UTF-8"), "{}", run.stderr);
}

#[test]
fn missing_file_and_directory_are_usage_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = ward()
        .arg("validate")
        .arg(dir.path().join("nope.yml"))
        .run()
        .expect_code(2);
    assert!(
        run.stderr.contains("cannot read playbook"),
        "{}",
        run.stderr
    );
    let run = ward().arg("plan").arg(dir.path()).run().expect_code(2);
    assert!(run.stderr.contains("is a directory"), "{}", run.stderr);
}

#[test]
fn usage_errors_exit_2() {
    ward().arg("validate").run().expect_code(2);
    ward().arg("frobnicate").run().expect_code(2);
    let run = ward()
        .args(["plan", "examples/quickstart.yml", "--var", "novalue"])
        .run()
        .expect_code(2);
    assert!(run.stderr.contains("expected name=value"), "{}", run.stderr);
    let run = ward()
        .args(["plan", "examples/quickstart.yml"])
        .env("WARD_NOW", "yesterday")
        .run()
        .expect_code(2);
    assert!(run.stderr.contains("WARD_NOW"), "{}", run.stderr);
}
