//! `ward report` and `--report FILE`, from real runs of the real binary:
//! Markdown, JSON and the self-contained HTML (parsed as XML; rendered by
//! a real headless Chromium), the timeline's lanes for steps that ran at
//! once, the downtime window of service.stop/service.start steps, and a
//! report that cannot be written leaving the run's exit code alone.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::harness::Scratch;

/// `left` and `right` run at once and each waits until the other has
/// started, so their times overlap whatever the machine's speed (no
/// sleeps to hope by); then `broken` fails and `after` is skipped.
const PARALLEL: &str = "\
ward: 1
name: nightly
vars:
  dest: /srv/backup
  db_password: hunter2
steps:
  - id: prep
    name: Prepare <&> \"x\"
    run: echo prep
  - id: left
    needs: [prep]
    run: touch left.up; while [ ! -e right.up ]; do sleep 0.05; done; printf 'L\\033[2J<b>'
  - id: right
    needs: [prep]
    run: touch right.up; while [ ! -e left.up ]; do sleep 0.05; done
  - id: broken
    needs: [left, right]
    run: printf 'no space </td>\\033[2J & \"q\"\\n' >&2; exit 3
  - id: after
    needs: [broken]
    run: echo never
";

/// Every element of an XML document as (name, attributes); fails the test
/// on anything not well-formed: unclosed or mismatched elements,
/// references other than XML's five and character references, control
/// characters XML 1.0 does not allow.
fn xml_elements(text: &str) -> Vec<(String, BTreeMap<String, String>)> {
    use quick_xml::events::Event;
    assert!(
        !text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')),
        "a control character XML does not allow:\n{text}"
    );
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut out = Vec::new();
    let mut depth = 0i32;
    loop {
        let event = reader.read_event().unwrap_or_else(|e| {
            panic!(
                "not well-formed at byte {}: {e}\n{text}",
                reader.buffer_position()
            )
        });
        match event {
            Event::Eof => break,
            Event::Start(ref e) | Event::Empty(ref e) => {
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.expect("attribute");
                        let v = a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .expect("attribute value")
                            .into_owned();
                        (a.key.into_inner().to_owned(), v)
                    })
                    .collect();
                out.push((e.name().into_inner().to_owned(), attrs));
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => depth -= 1,
            Event::GeneralRef(r) => {
                let name = r.to_string();
                assert!(
                    ["amp", "lt", "gt", "quot", "apos"].contains(&name.as_str()) || r.is_char_ref(),
                    "a reference XML does not define: &{name};"
                );
            }
            _ => {}
        }
    }
    assert_eq!(depth, 0, "elements left open:\n{text}");
    out
}

/// The SVG bars (`rect class="bar ..."`) by step id.
fn bars(
    elements: &[(String, BTreeMap<String, String>)],
) -> BTreeMap<String, BTreeMap<String, String>> {
    elements
        .iter()
        .filter(|(n, a)| n == "rect" && a.get("class").is_some_and(|c| c.starts_with("bar ")))
        .map(|(_, a)| (a["data-step"].clone(), a.clone()))
        .collect()
}

fn num(attrs: &BTreeMap<String, String>, key: &str) -> f64 {
    attrs[key]
        .parse()
        .unwrap_or_else(|e| panic!("{key}={:?}: {e}", attrs[key]))
}

#[test]
fn a_run_with_parallel_steps_and_a_failure_reports_in_every_format() {
    let s = Scratch::new();
    s.write("p.yml", PARALLEL);
    let run = s
        .ward()
        .args(["run", "p.yml", "--report", "night.md"])
        .run()
        .expect_code(1);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);

    // Markdown, written by --report after the failed run.
    let md = s.read("night.md");
    for line in [
        "# Run report: nightly (run `",
        "| State | **failed** |",
        "| `prep` | succeeded | 1 | 0 | ",
        "| `left` | succeeded | 1 | 0 | ",
        "| `right` | succeeded | 1 | 0 | ",
        "| `broken` | **failed** | 1 | 3 | ",
        "| `after` | skipped | 0 | - | - | echo never |",
        "| `db_password` | `********` |  |",
        "## Guards, confirmations and notes",
        "| `run-failed` |  | step \\`broken\\` failed: exit code 3 |",
        "Downtime: none (no `service.stop` step ran).",
    ] {
        assert!(md.contains(line), "no {line:?} in\n{md}");
    }
    assert!(!md.contains("hunter2"), "{md}");
    // No temp file left beside it.
    let names: Vec<String> = std::fs::read_dir(s.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("ward-tmp")), "{names:?}");

    // JSON: the status document and what a report adds.
    let v = s
        .ward()
        .args(["report", "--last", "--format", "json"])
        .run()
        .expect_code(0)
        .json();
    assert_eq!(v["state"], "failed");
    assert_eq!(v["playbook_name"], "nightly");
    let steps = v["steps"].as_array().expect("steps");
    let ids: Vec<&str> = steps.iter().map(|x| x["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["prep", "left", "right", "broken", "after"]);
    assert_eq!(steps[0]["name"], "Prepare <&> \"x\"");
    assert_eq!(steps[3]["exit_code"], 3);
    assert_eq!(steps[3]["attempt_list"][0]["outcome"], "failed");
    assert_eq!(steps[4]["state"], "skipped");
    let vars = v["vars"].as_array().expect("vars");
    assert!(
        vars.iter()
            .any(|x| x["name"] == "db_password" && x["value"] == "********")
    );
    let kinds: Vec<&str> = v["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"run-started"));
    assert_eq!(kinds.last(), Some(&"run-failed"));
    for e in v["events"].as_array().unwrap() {
        chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap()).expect("RFC 3339");
    }
    chrono::DateTime::parse_from_rfc3339(v["generated_at"].as_str().unwrap()).expect("RFC 3339");
    let t = &v["timeline"];
    assert_eq!(t["lanes"], 2, "{t}");
    assert_eq!(t["downtime"], serde_json::Value::Null);
    assert_eq!(t["bars"].as_array().unwrap().len(), 4, "{t}");

    // HTML: well-formed XML, one SVG, the two parallel bars in different
    // lanes with overlapping x ranges.
    let id = v["id"].as_str().unwrap().to_owned();
    s.ward()
        .args(["report", &id, "-o", "night.html"])
        .run()
        .expect_code(0);
    let html = s.read("night.html");
    let elements = xml_elements(&html);
    assert_eq!(elements[0].0, "html");
    assert_eq!(elements[0].1["xmlns"], "http://www.w3.org/1999/xhtml");
    let names: Vec<&str> = elements.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.iter().filter(|n| **n == "svg").count(), 1);
    for forbidden in ["script", "link", "img", "iframe", "object"] {
        assert!(!names.contains(&forbidden), "<{forbidden}> in\n{html}");
    }
    for (_, attrs) in &elements {
        for (k, val) in attrs {
            assert!(
                !(k == "src" || k == "href" || val.contains("https:")),
                "{k}={val:?}: something loaded from elsewhere"
            );
        }
    }
    let bars = bars(&elements);
    let (l, r) = (&bars["left"], &bars["right"]);
    assert_ne!(l["data-lane"], r["data-lane"], "{l:?} {r:?}");
    let (lx, lw, rx, rw) = (num(l, "x"), num(l, "width"), num(r, "x"), num(r, "width"));
    assert!(lx < rx + rw && rx < lx + lw, "no overlap: {l:?} {r:?}");
    assert_ne!(num(l, "y"), num(r, "y"));
    assert_eq!(bars["broken"]["class"], "bar failed");
    assert_eq!(bars["prep"]["class"], "bar succeeded");
    assert!(!bars.contains_key("after"), "a skipped step has no bar");
    // What steps print and what they are named cannot add markup.
    assert!(
        html.contains("Prepare &lt;&amp;&gt; &quot;x&quot;"),
        "{html}"
    );
    // The failed step's last output, escaped, its escape sequence written out.
    assert!(
        html.contains("no space &lt;/td&gt;\\u{1b}[2J &amp; &quot;q&quot;"),
        "{html}"
    );
    assert_eq!(
        steps[3]["output_tail"][0],
        "no space </td>\\u{1b}[2J & \"q\""
    );
    assert!(!html.contains("hunter2"));
}

#[test]
fn the_downtime_window_spans_the_stop_to_the_end_of_the_start() {
    let s = Scratch::new();
    s.write(
        "svc.yml",
        "\
ward: 1
name: restore
steps:
  - id: before
    run: echo before
  - id: stop
    needs: [before]
    action: service.stop
    with: { stop: [sh, -c, 'echo stopped'] }
  - id: restore
    needs: [stop]
    run: echo restoring
  - id: start
    needs: [restore]
    action: service.start
    with: { start: [sh, -c, 'echo started'] }
  - id: after
    needs: [start]
    run: echo after
",
    );
    s.ward()
        .args(["run", "svc.yml", "--report", "r.html"])
        .run()
        .expect_code(0);
    let html = s.read("r.html");
    let elements = xml_elements(&html);
    let bars = bars(&elements);
    let window = elements
        .iter()
        .find(|(n, a)| n == "rect" && a.get("class").map(String::as_str) == Some("downtime"))
        .map(|(_, a)| a)
        .unwrap_or_else(|| panic!("no downtime rect in\n{html}"));
    assert_eq!(window["data-start-ms"], bars["stop"]["data-start-ms"]);
    assert_eq!(window["data-end-ms"], bars["start"]["data-end-ms"]);
    assert_eq!(num(window, "x"), num(&bars["stop"], "x"));
    // The window ends where the start step's bar ends (unless that bar was
    // widened to be seen at all).
    let start_end = num(&bars["start"], "x") + num(&bars["start"], "width");
    let window_end = num(window, "x") + num(window, "width");
    assert!(
        window_end <= start_end + 0.11,
        "{window:?} {:?}",
        bars["start"]
    );
    assert!(window_end >= num(&bars["start"], "x"), "{window:?}");
    let v = s
        .ward()
        .args(["report", "last", "--format", "json"])
        .run()
        .expect_code(0)
        .json();
    let d = &v["timeline"]["downtime"];
    assert_eq!(d["stop_step"], "stop");
    assert_eq!(d["start_step"], "start");
    assert_eq!(d["closed"], true);
    assert_eq!(v["steps"][1]["action"], "service.stop");
    let md = s
        .ward()
        .args(["report", "last"])
        .run()
        .expect_code(0)
        .stdout;
    assert!(
        md.contains("from the start of `stop` to the end of `start`."),
        "{md}"
    );
}

#[test]
fn a_report_that_cannot_be_written_is_a_warning_and_the_exit_code_is_the_runs() {
    let s = Scratch::new();
    s.write(
        "ok.yml",
        "ward: 1\nname: ok\nsteps:\n  - id: a\n    run: echo hi\n",
    );
    let run = s
        .ward()
        .args(["run", "ok.yml", "--report", "no/such/folder/r.md"])
        .run()
        .expect_code(0);
    assert!(
        run.stderr.contains("warning: the report of run"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("no/such/folder/r.md"), "{}", run.stderr);
    assert!(run.stderr.contains("--output FILE"), "{}", run.stderr);
    assert_eq!(s.status(None)["state"], "succeeded");
    // The same for resume; and once the cause is fixed, a resume writes
    // the report with every attempt of the run.
    s.write(
        "f.yml",
        "ward: 1\nname: f\nsteps:\n  - id: a\n    run: test -e fixed\n",
    );
    s.ward().args(["run", "f.yml"]).run().expect_code(1);
    let resumed = s
        .ward()
        .args(["resume", "--last", "--report", "no/such/r.json"])
        .run()
        .expect_code(1);
    assert!(
        resumed.stderr.contains("warning: the report of run"),
        "{}",
        resumed.stderr
    );
    s.write("fixed", "");
    s.ward()
        .args(["resume", "--last", "--report", "resumed.md"])
        .run()
        .expect_code(0);
    let md = s.read("resumed.md");
    for line in [
        "| State | **succeeded** |",
        "| Resumed | 2 time(s) |",
        "- attempt 3: succeeded, exit 0",
        "| `run-resumed` |",
    ] {
        assert!(md.contains(line), "no {line:?} in\n{md}");
    }
}

#[test]
fn a_report_name_without_a_known_extension_is_refused_before_anything_runs() {
    let s = Scratch::new();
    s.write(
        "ok.yml",
        "ward: 1\nname: ok\nsteps:\n  - id: a\n    run: touch ran\n",
    );
    let run = s
        .ward()
        .args(["run", "ok.yml", "--report", "r.txt"])
        .run()
        .expect_code(2);
    assert!(run.stderr.contains("--report r.txt"), "{}", run.stderr);
    assert!(run.stderr.contains(".md, .html or .json"), "{}", run.stderr);
    assert!(!s.path().join("ran").exists());
    assert!(!s.state().exists(), "nothing recorded");
    // With the format given, any name does.
    s.ward()
        .args([
            "run",
            "ok.yml",
            "--report",
            "r.txt",
            "--report-format",
            "json",
        ])
        .run()
        .expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&s.read("r.txt")).expect("JSON");
    assert_eq!(v["state"], "succeeded");
    // `ward report` of an unknown run: exit 2, and the file is not made.
    let r = s
        .ward()
        .args(["report", "nope", "-o", "x.html"])
        .run()
        .expect_code(2);
    assert!(r.stderr.contains("no run `nope`"), "{}", r.stderr);
    assert!(!s.path().join("x.html").exists());
    s.ward()
        .args(["report", "-o", "x.txt", "--last"])
        .run()
        .expect_code(2);
}

#[test]
fn the_markdown_of_a_fixed_run() {
    let s = Scratch::new();
    s.write(
        "fixed.yml",
        "\
ward: 1
name: fixed
vars:
  dest: /srv/backup
  api_token: t0ken
steps:
  - id: dump
    name: Dump the catalogue
    run: echo dump
  - id: copy
    needs: [dump]
    action: snapshot.hardlink
    with: { src: data, dir: snaps }
  - id: check
    needs: [copy]
    run: echo 'checksum mismatch | <x>' >&2; exit 3
  - id: cleanup
    needs: [check]
    run: echo never
",
    );
    std::fs::create_dir_all(s.path().join("data")).expect("data");
    s.write("data/file", "content");
    s.ward().args(["run", "fixed.yml"]).run().expect_code(1);
    let md = s
        .ward()
        .args(["report", "last"])
        .run()
        .expect_code(0)
        .stdout;
    let dir = std::fs::canonicalize(s.path()).expect("canonical");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("host name")
        .trim()
        .to_owned();
    let md = md
        .replace(&dir.display().to_string(), "[dir]")
        .replace(&s.path().display().to_string(), "[dir]");
    insta::with_settings!({filters => vec![
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", "[time]"),
        (r"\d{8}-\d{6}-[0-9a-f]{8}", "[run-id]"),
        (r"\b\d+(\.\d)?(ms|s)\b", "[dur]"),
        (r"\b\d+m\d\ds\b", "[dur]"),
        (r"pid \d+ on \S+", "pid [pid] on [host]"),
        (&format!(r"\| Host \| {} \|", regex_escape(&host)), "| Host | [host] |"),
        (r"ward \d+\.\d+\.\d+", "ward [version]"),
        (r"\| ward \| \S+ \|", "| ward | [version] |"),
    ]}, {
        insta::assert_snapshot!("report_markdown_of_a_fixed_run", md);
    });
}

/// `text` with the characters a regular expression gives a meaning to escaped.
fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// The pixels of a PNG as RGB triples: Chromium writes 8-bit RGB or RGBA,
/// not interlaced; the rows are inflated (flate2) and unfiltered here.
fn png_pixels(png: &[u8]) -> Vec<[u8; 3]> {
    use std::io::Read;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut width, mut height, mut channels) = (0usize, 0usize, 0usize);
    let mut data = Vec::new();
    let mut at = 8;
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let kind = &png[at + 4..at + 8];
        let body = &png[at + 8..at + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(body[0..4].try_into().unwrap()) as usize;
                height = u32::from_be_bytes(body[4..8].try_into().unwrap()) as usize;
                assert_eq!(body[8], 8, "bit depth");
                channels = match body[9] {
                    2 => 3,
                    6 => 4,
                    other => panic!("colour type {other}"),
                };
                assert_eq!(body[12], 0, "interlaced");
            }
            b"IDAT" => data.extend_from_slice(body),
            _ => {}
        }
        at += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&data[..])
        .read_to_end(&mut raw)
        .expect("inflate");
    let stride = width * channels;
    assert_eq!(raw.len(), height * (stride + 1), "image data size");
    let mut prev = vec![0u8; stride];
    let mut pixels = Vec::with_capacity(width * height);
    for row in raw.chunks(stride + 1) {
        let (filter, line) = (row[0], &row[1..]);
        let mut cur = vec![0u8; stride];
        for i in 0..stride {
            let a = if i >= channels { cur[i - channels] } else { 0 };
            let b = prev[i];
            let c = if i >= channels { prev[i - channels] } else { 0 };
            let x = line[i];
            cur[i] = match filter {
                0 => x,
                1 => x.wrapping_add(a),
                2 => x.wrapping_add(b),
                3 => x.wrapping_add(((a as u16 + b as u16) / 2) as u8),
                4 => {
                    let p = a as i16 + b as i16 - c as i16;
                    let (pa, pb, pc) = (
                        (p - a as i16).abs(),
                        (p - b as i16).abs(),
                        (p - c as i16).abs(),
                    );
                    let pred = if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    };
                    x.wrapping_add(pred)
                }
                f => panic!("filter {f}"),
            };
        }
        pixels.extend(cur.chunks(channels).map(|p| [p[0], p[1], p[2]]));
        prev = cur;
    }
    pixels
}

/// Chromium from Debian's `chromium` package (scripts/test installs it).
fn chromium() -> &'static str {
    let ok = Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "this test renders the HTML report in a real browser: install Debian's `chromium` \
         (scripts/test installs what the tests need)"
    );
    "chromium"
}

/// Chromium, headless, with its profile, cache and home in `dir` (nothing
/// of the machine's is read or written), on a local file only.
fn headless(dir: &Path) -> Command {
    let mut cmd = Command::new(chromium());
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("home");
    cmd.env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-pings",
            "--no-default-browser-check",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()));
    cmd
}

#[test]
fn a_headless_browser_renders_the_html_report_with_its_timeline() {
    let s = Scratch::new();
    s.write("p.yml", PARALLEL);
    s.ward()
        .args(["run", "p.yml", "--report", "night.html"])
        .run()
        .expect_code(1);
    let page = s.path().join("night.html");
    let url = format!("file://{}", page.display());

    // The DOM as the browser built it: the SVG is an SVG element with its
    // bars, nothing of the steps' output became markup.
    let dom = headless(s.path())
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium starts");
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("<svg"), "{dom}");
    for step in ["prep", "left", "right", "broken"] {
        assert!(
            dom.contains(&format!("data-step=\"{step}\"")),
            "{step}: {dom}"
        );
    }
    assert!(dom.contains("class=\"bar failed\""), "{dom}");
    assert!(!dom.contains("<b>"), "{dom}");

    // The picture as drawn: the failed bar's red and the succeeded bars'
    // green are on the screen.
    let shot = s.path().join("shot.png");
    let out = headless(s.path())
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1100,800")
        .arg(&url)
        .output()
        .expect("chromium starts");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    let pixels = png_pixels(&png);
    let count = |rgb: [u8; 3]| {
        pixels
            .iter()
            .filter(|p| p.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 6))
            .count()
    };
    let white = count([255, 255, 255]);
    assert!(white < pixels.len(), "a blank page");
    // #c62828 (failed) and #2e7d32 (succeeded), as the SVG fills them.
    assert!(count([0xc6, 0x28, 0x28]) > 20, "no red bar drawn");
    assert!(count([0x2e, 0x7d, 0x32]) > 200, "no green bars drawn");
}

/// A hostile run: names that try to end the SVG, a CDATA section or a
/// comment, a bidi override, a name of 5000 characters, and a step that
/// prints secrets before failing.
#[test]
fn hostile_names_and_printed_secrets_do_not_get_through_the_report() {
    let s = Scratch::new();
    let long = "n".repeat(5000);
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: hostile\nvars:\n  api_token: tok-abc123\nsteps:\n  \
             - id: a\n    name: \"</svg><script>x()</script> ]]> <!-- \u{202e}dedeecus\"\n    run: \"true\"\n  \
             - id: b\n    name: {long}\n    needs: [a]\n    \
             run: |\n      echo PGPASSWORD=hunter2\n      echo 'url postgres://app:pw-in-url@db/app'\n      \
             echo '{{\"secret_key\": \"sk-999\"}}'\n      exit 1\n"
        ),
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(1);
    for format in ["html", "md", "json"] {
        let out = s
            .ward()
            .args(["report", "--last", "--format", format])
            .run()
            .expect_code(0);
        for secret in ["hunter2", "pw-in-url", "sk-999", "tok-abc123"] {
            assert!(
                !out.stdout.contains(secret),
                "{format}: {secret}\n{}",
                out.stdout
            );
        }
        // JSON is data (serde escapes what JSON must); the pages are read.
        if format != "json" {
            assert!(!out.stdout.contains('\u{202e}'), "{format}");
        }
        assert!(
            out.stdout.contains("PGPASSWORD=********"),
            "{format}\n{}",
            out.stdout
        );
        if format == "html" {
            let elements = xml_elements(&out.stdout);
            assert!(
                !elements.iter().any(|(n, _)| n == "script"),
                "{}",
                out.stdout
            );
            assert_eq!(elements.iter().filter(|(n, _)| n == "svg").count(), 1);
            assert!(!out.stdout.contains("<!--"), "a comment opened");
            assert!(!out.stdout.contains("]]>"), "a CDATA end got through");
        }
    }
}

/// 500 steps: the report stays a sane size, every step is in it, and the
/// timeline has a bar for each.
#[test]
fn a_run_of_500_steps_reports_with_a_bar_each_at_a_sane_size() {
    let s = Scratch::new();
    let mut text = String::from("ward: 1\nname: many\nsteps:\n");
    for i in 0..500 {
        text.push_str(&format!("  - id: s{i}\n    run: \"true\"\n"));
    }
    s.write("p.yml", &text);
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let out = s
        .ward()
        .args(["report", "--last", "--format", "html"])
        .run()
        .expect_code(0);
    let elements = xml_elements(&out.stdout);
    let bars = elements
        .iter()
        .filter(|(n, a)| n == "rect" && a.get("class").is_some_and(|c| c.starts_with("bar ")))
        .count();
    assert_eq!(bars, 500);
    assert!(out.stdout.len() < 2_000_000, "{} bytes", out.stdout.len());
}
