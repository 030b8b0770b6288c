//! A `for_each` step's items in `ward status` (text and JSON) and in `ward
//! report` (counts, the items' timeline strip, the failed items), from
//! real runs.

use std::collections::BTreeMap;

use crate::harness::{Scratch, status_step, wait_for};

/// Items `i01`..`i12`; `i03`, `i07` and `i11` fail with their number as
/// exit code.
const TWELVE: &str = "ward: 1\nname: fan\nsteps:\n  \
     - id: each\n    for_each: [i01, i02, i03, i04, i05, i06, i07, i08, i09, i10, i11, i12]\n    \
       max_parallel: 3\n    \
       run: 'case {{ item }} in i03) exit 3;; i07) exit 7;; i11) exit 11;; esac'\n  \
     - id: after\n    needs: [each]\n    run: echo after\n";

/// Each element of an HTML report (it is well-formed XML) as its name and
/// attributes, in document order.
fn elements(text: &str) -> Vec<(String, BTreeMap<String, String>)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut out = Vec::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Eof => return out,
            Event::Start(e) | Event::Empty(e) => {
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.expect("an attribute");
                        let value = a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .expect("its value")
                            .into_owned();
                        (a.key.into_inner().to_owned(), value)
                    })
                    .collect();
                out.push((e.name().into_inner().to_owned(), attrs));
            }
            _ => {}
        }
    }
}

/// The `data-key`s of the rows of the failed-items table of `step`.
fn failed_rows(html: &str, step: &str) -> Vec<String> {
    let from = html
        .find(&format!(
            r#"<table class="failed-items" data-step="{step}">"#
        ))
        .expect("a failed-items table");
    let table = &html[from..from + html[from..].find("</table>").expect("its end")];
    elements(&format!("{table}</table>"))
        .into_iter()
        .filter(|(name, _)| name == "tr")
        .filter_map(|(_, a)| a.get("data-key").cloned())
        .collect()
}

#[test]
fn status_shows_a_fan_out_steps_items_by_state_with_a_rate() {
    let s = Scratch::new();
    s.write("p.yml", TWELVE);
    s.ward().args(["run", "p.yml"]).run().expect_code(10);

    let text = s.ward().args(["status"]).run().expect_code(0).stdout;
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with("each "))
        .expect("the step's line");
    // Right under the step's line, one line of items.
    let items = lines[at + 1];
    assert!(
        items.contains("↳ items of 12: 9 succeeded, 3 failed, 0 running, 0 left · "),
        "{text}"
    );
    assert!(
        items.ends_with(" items/s"),
        "an ended step has no ETA: {text}"
    );
    assert_eq!(
        text.matches("↳ items of").count(),
        1,
        "only the fan-out step: {text}"
    );

    let json = s.status(None);
    let each = status_step(&json, "each");
    let c = &each["items"];
    assert_eq!(
        (
            &c["total"],
            &c["succeeded"],
            &c["failed"],
            &c["running"],
            &c["pending"],
            &c["skipped"],
            &c["ended"]
        ),
        (
            &12.into(),
            &9.into(),
            &3.into(),
            &0.into(),
            &0.into(),
            &0.into(),
            &12.into()
        ),
        "{c}"
    );
    let rate = c["rate_per_s"].as_f64().expect("a rate");
    let elapsed = c["elapsed_ms"].as_u64().expect("the time it is over");
    assert!((rate - 12_000.0 / elapsed as f64).abs() < 1e-6, "{c}");
    assert!(c["eta_ms"].is_null(), "{c}");
    assert!(status_step(&json, "after").get("items").is_none(), "{json}");
}

#[test]
fn a_running_fan_out_shows_what_is_left_and_an_eta() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: slow\nsteps:\n  \
         - id: each\n    for_each: [a, b, c, d, e, f, g, h]\n    max_parallel: 2\n    \
           run: sleep 0.4\n",
    );
    let mut child = s.ward().args(["run", "p.yml"]).spawn();
    let mut seen = serde_json::Value::Null;
    let live = wait_for(20, || {
        let run = s.ward().args(["status", "--json"]).run();
        if run.code != 0 {
            return false;
        }
        let step = status_step(&run.json(), "each");
        seen = step["items"].clone();
        seen["succeeded"].as_u64().unwrap_or(0) >= 2 && seen["pending"].as_u64().unwrap_or(0) > 0
    });
    assert!(live, "never saw the step half done: {seen}");
    assert!(seen["eta_ms"].as_u64().is_some(), "{seen}");
    assert_eq!(seen["total"], 8, "{seen}");
    let text = s.ward().args(["status"]).run().expect_code(0).stdout;
    assert!(text.contains("↳ items of 8: "), "{text}");
    assert!(
        text.contains(" · ETA ") || text.contains(" 0 left"),
        "{text}"
    );
    assert!(child.wait().expect("ward ends").success());
    let c = status_step(&s.status(None), "each")["items"].clone();
    assert_eq!(
        (&c["succeeded"], &c["pending"]),
        (&8.into(), &0.into()),
        "{c}"
    );
    assert!(c["eta_ms"].is_null(), "{c}");
}

#[test]
fn the_report_draws_each_item_and_lists_the_failed_ones() {
    let s = Scratch::new();
    s.write("p.yml", TWELVE);
    s.ward().args(["run", "p.yml"]).run().expect_code(10);
    let html = s
        .ward()
        .args(["report", "last", "--format", "html"])
        .run()
        .expect_code(0)
        .stdout;
    let all = elements(&html);
    let strip = all
        .iter()
        .find(|(n, a)| n == "svg" && a.get("class").map(String::as_str) == Some("items"))
        .expect("the items' strip");
    assert_eq!(strip.1["data-step"], "each");
    assert_eq!(strip.1["data-kind"], "bars");
    let bars: Vec<&BTreeMap<String, String>> = all
        .iter()
        .filter(|(n, a)| n == "rect" && a.get("class").is_some_and(|c| c.starts_with("item ")))
        .map(|(_, a)| a)
        .collect();
    assert_eq!(bars.len(), 12, "a bar per item");
    let mut failed: Vec<&str> = bars
        .iter()
        .filter(|a| a["class"] == "item failed")
        .map(|a| a["data-key"].as_str())
        .collect();
    failed.sort();
    assert_eq!(failed, ["i03", "i07", "i11"]);
    for a in &bars {
        let (start, end): (i64, i64) = (
            a["data-start-ms"].parse().unwrap(),
            a["data-end-ms"].parse().unwrap(),
        );
        assert!(0 <= start && start <= end, "{a:?}");
    }
    assert_eq!(failed_rows(&html, "each"), ["i03", "i07", "i11"]);
    // Each row: position, key, exit code, attempts, why, log.
    assert!(
        html.contains(r#"<tr data-key="i07"><td>7</td><td><code>i07</code></td><td>7</td><td>1</td><td>exit code 7</td><td><code>"#),
        "{html}"
    );
    let counts = all
        .iter()
        .find(|(n, a)| n == "p" && a.get("class").map(String::as_str) == Some("item-counts"))
        .expect("the counts");
    assert_eq!(
        (
            &counts.1["data-succeeded"][..],
            &counts.1["data-failed"][..],
            &counts.1["data-total"][..]
        ),
        ("9", "3", "12")
    );

    let md = s
        .ward()
        .args(["report", "last"])
        .run()
        .expect_code(0)
        .stdout;
    assert!(
        md.contains("- items of 12: 9 succeeded, 3 failed, 0 running, 0 left"),
        "{md}"
    );
    assert!(
        md.contains("| 11 | `i11` | 11 | 1 | exit code 11 |"),
        "{md}"
    );

    let json = s
        .ward()
        .args(["report", "last", "--format", "json"])
        .run()
        .expect_code(0)
        .json();
    let each = status_step(&json, "each");
    assert_eq!(each["items"]["failed"], 3, "{each}");
    let listed: Vec<(String, i64)> = each["failed_items"]
        .as_array()
        .expect("failed items")
        .iter()
        .map(|i| {
            (
                i["key"].as_str().unwrap().to_owned(),
                i["exit_code"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("i03".to_owned(), 3),
            ("i07".to_owned(), 7),
            ("i11".to_owned(), 11)
        ]
    );
}

#[test]
fn many_items_are_drawn_as_buckets_and_the_failed_table_is_cut() {
    let s = Scratch::new();
    let list: String = (1..=300).map(|i| format!("n{i:03}\n")).collect();
    s.write("items.txt", &list);
    // Every item fails but every fifth: 240 failed, more than a report lists.
    s.write(
        "p.yml",
        "ward: 1\nname: many\nsteps:\n  \
         - id: each\n    for_each: { lines: items.txt }\n    max_parallel: 8\n    \
           run: 'case {{ item }} in *0|*5) ;; *) exit 1;; esac'\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(10);
    let html = s
        .ward()
        .args(["report", "last", "--format", "html"])
        .run()
        .expect_code(0)
        .stdout;
    let all = elements(&html);
    let strip = all
        .iter()
        .find(|(n, a)| n == "svg" && a.get("class").map(String::as_str) == Some("items"))
        .expect("the items' strip");
    assert_eq!(strip.1["data-kind"], "buckets");
    let sum = |key: &str| -> u64 {
        all.iter()
            .filter(|(n, a)| n == "g" && a.get("class").map(String::as_str) == Some("bucket"))
            .map(|(_, a)| a[key].parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!((sum("data-succeeded"), sum("data-failed")), (60, 240));
    let svg_len = html[html.find(r#"class="items""#).unwrap()..]
        .find("</svg>")
        .unwrap();
    assert!(svg_len < 40_000, "the strip is {svg_len} bytes");
    let rows = failed_rows(&html, "each");
    assert_eq!(rows.len(), 200);
    assert_eq!(rows[0], "n001");
    assert!(
        html.contains("and 40 more failed items: <code>ward items "),
        "the rest are counted"
    );
}
