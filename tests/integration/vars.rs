//! Variables: `--var` typing, values that are one template, dependency order.

use crate::harness::Scratch;

fn plan_json(s: &Scratch, args: &[&str]) -> serde_json::Value {
    let mut w = s.ward().args(["plan", "--format", "json", "vars.yml"]);
    for a in args {
        w = w.args(["--var", a]);
    }
    w.run().expect_code(0).json()
}

#[test]
fn a_var_that_is_one_template_keeps_the_type_of_its_value() {
    let s = Scratch::new();
    s.write(
        "vars.yml",
        r#"ward: 1
name: vars
vars:
  zero_lead: "010"
  version: "1.10"
  tilde: "~"
  word: "yes"
  port: 5432
  names: ["010", "~", "1.10"]
  a: "{{ zero_lead }}"
  b: "{{ version }}"
  c: "{{ tilde }}"
  d: "{{ word }}"
  e: "{{ port }}"
  f: "{{ names }}"
steps:
  - id: stop
    action: service.stop
    with:
      stop: [true]
      wait_gone: "{{ names }}"
  - id: show
    run: echo {{ a }} {{ port + 1 }}
"#,
    );
    let plan = plan_json(&s, &[]);
    let vars = &plan["vars"];
    assert_eq!(vars["a"], "010", "{vars}");
    assert_eq!(vars["b"], "1.10", "{vars}");
    assert_eq!(vars["c"], "~", "{vars}");
    assert_eq!(vars["d"], "yes", "{vars}");
    assert_eq!(vars["e"], 5432, "a number stays a number: {vars}");
    assert_eq!(vars["f"], serde_json::json!(["010", "~", "1.10"]), "{vars}");
    // An action parameter filled from a list of strings keeps each string.
    assert_eq!(
        plan["steps"][0]["params"]["wait_gone"],
        serde_json::json!(["010", "~", "1.10"]),
        "{}",
        plan["steps"][0]
    );
    assert_eq!(plan["steps"][1]["run"], "echo 010 5433");
}

#[test]
fn var_overrides_are_text_unless_they_are_a_documented_typed_form() {
    let s = Scratch::new();
    s.write(
        "vars.yml",
        r#"ward: 1
name: vars
vars:
  v: default
  copy: "{{ v }}"
steps:
  - id: a
    run: echo {{ v }}
"#,
    );
    let cases: &[(&str, serde_json::Value)] = &[
        ("010", "010".into()),
        ("1.10", "1.10".into()),
        ("~", "~".into()),
        ("null", "null".into()),
        ("yes", "yes".into()),
        ("1e3", "1e3".into()),
        ("-0", "-0".into()),
        ("+5", "+5".into()),
        ("99999999999999999999", "99999999999999999999".into()),
        ("", "".into()),
        ("true", true.into()),
        ("false", false.into()),
        ("0", 0.into()),
        ("42", 42.into()),
        ("-7", (-7).into()),
        ("[a, 010]", serde_json::json!(["a", 10])),
        ("{k: v}", serde_json::json!({"k": "v"})),
    ];
    for (given, expected) in cases {
        let plan = plan_json(&s, &[&format!("v={given}")]);
        assert_eq!(&plan["vars"]["v"], expected, "--var v={given}");
        assert_eq!(
            &plan["vars"]["copy"], expected,
            "copy: \"{{{{ v }}}}\" with --var v={given}"
        );
    }
}

#[test]
fn vars_may_use_vars_written_below_them_and_cycles_are_errors() {
    let s = Scratch::new();
    s.write(
        "vars.yml",
        r#"ward: 1
name: vars
vars:
  current: "{{ root }}/current"
  root: "{{ base }}/backup"
  base: /srv
steps:
  - id: a
    run: echo {{ current }}
"#,
    );
    let plan = plan_json(&s, &[]);
    assert_eq!(plan["vars"]["current"], "/srv/backup/current");
    // An override is a value, not a template: it cuts the chain.
    let plan = plan_json(&s, &["root=/mnt"]);
    assert_eq!(plan["vars"]["current"], "/mnt/current");

    s.write(
        "cycle.yml",
        r#"ward: 1
name: vars
vars:
  a: "{{ b }}"
  b: "{{ a }}"
  user: "{{ a }}"
steps:
  - id: a
    run: echo {{ user }}
"#,
    );
    let out = s
        .ward()
        .args(["validate", "cycle.yml"])
        .run()
        .expect_code(2);
    assert!(
        out.stderr
            .contains("error[var-cycle]: variables use each other in a cycle: `a` → `b` → `a`"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.matches("error[").count(), 1, "{}", out.stderr);
}

#[test]
fn text_made_by_several_templates_stays_text() {
    let s = Scratch::new();
    s.write(
        "vars.yml",
        r#"ward: 1
name: vars
vars:
  major: 1
  minor: 10
  y: 2026
  m: 10
  a: "010"
  ver: "{{ major }}.{{ minor }}"
  zip5: "0{{ 2134 }}"
  label: "{{ 'n' }}{{ 'ull' }}"
  empty_join: "{{ a }}{{ '' }}"
  comment_first: "{# c #}{{ a }}"
  tilde: "{{ '~' }}{{ '' }}"
  inf: "{{ '.inf' }}{{ '' }}"
  hex: "0x{{ 10 }}"
  word: "{{ 'True' }}{{ '' }}"
  trimmed: "{{- a -}}"
  kept_type: "{{- major -}}"
  spaced: "  {{ major }}"
steps:
  - id: snap
    action: snapshot.hardlink
    with:
      src: /srv/data
      dir: /backup
      name: "{{ y }}.{{ m }}"
  - id: rotate
    action: rotate
    with:
      dir: /backup
      keep_last: "{{ minor }}"
  - id: show
    run: echo {{ ver }} {{ zip5 }} {{ label }}
"#,
    );
    let plan = plan_json(&s, &[]);
    let vars = &plan["vars"];
    assert_eq!(vars["ver"], "1.10", "{vars}");
    assert_eq!(vars["zip5"], "02134", "{vars}");
    assert_eq!(vars["label"], "null", "{vars}");
    assert_eq!(vars["empty_join"], "010", "{vars}");
    assert_eq!(vars["comment_first"], "010", "{vars}");
    assert_eq!(vars["tilde"], "~", "{vars}");
    assert_eq!(vars["inf"], ".inf", "{vars}");
    assert_eq!(vars["hex"], "0x10", "{vars}");
    assert_eq!(vars["word"], "True", "{vars}");
    // Whitespace control is one template too, and keeps the type.
    assert_eq!(vars["trimmed"], "010", "{vars}");
    assert_eq!(vars["kept_type"], 1, "{vars}");
    // Text around the template is kept as text.
    assert_eq!(vars["spaced"], "  1", "{vars}");
    let steps = &plan["steps"];
    assert_eq!(steps[0]["params"]["name"], "2026.10", "{}", steps[0]);
    // A typed parameter given as one template of a number still works.
    assert_eq!(steps[1]["params"]["keep_last"], 10, "{}", steps[1]);
    assert_eq!(steps[2]["run"], "echo 1.10 02134 null", "{}", steps[2]);
}

#[test]
fn a_typed_parameter_made_of_text_around_a_template_is_a_type_error() {
    let s = Scratch::new();
    s.write(
        "vars.yml",
        r#"ward: 1
name: vars
vars:
  base: 1
steps:
  - id: rotate
    action: rotate
    with:
      dir: /backup
      keep_last: "{{ base }}0"
"#,
    );
    let out = s.ward().args(["validate", "vars.yml"]).run().expect_code(2);
    assert!(out.stderr.contains("vars.yml:10:"), "{}", out.stderr);
    assert!(out.stderr.contains("10"), "{}", out.stderr);
}

#[test]
fn a_number_too_large_to_store_is_an_error_not_null() {
    let s = Scratch::new();
    s.write(
        "vars.yml",
        "ward: 1\nname: big\nvars:\n  n: \"{{ 2 ** 100 }}\"\nsteps:\n  - id: s\n    run: echo {{ n }}\n",
    );
    let out = s.ward().args(["validate", "vars.yml"]).run().expect_code(2);
    assert!(
        out.stderr
            .contains("template error in variable `n`: its value cannot be stored"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("vars.yml:4:"), "{}", out.stderr);
    assert_eq!(out.stderr.matches("error[").count(), 1, "{}", out.stderr);
}
