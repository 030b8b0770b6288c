//! The resume fingerprint: each step's rendered definition, recorded with a
//! run so that `ward resume` can tell which steps changed since it started.
//!
//! It belongs to the plan, not to any output: `ward plan --format json` may
//! change freely without making every recorded run look changed. What a
//! version writes is frozen; a change to what is fingerprinted is a new
//! [`VERSION`], and a resume compares a run's records with the plan's
//! fingerprint in the version the run recorded.
//!
//! Version 1 (the only one so far) is a compact JSON object per step,
//! written without a tag because runs were recorded that way before the
//! fingerprint had versions; later versions start with `v<N> ` (see
//! [`recorded_version`]). Secret values never appear in it: they are
//! masked, and stand in only through their HMAC under the key kept beside
//! (never in) the state database.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Plan, ResolvedBody, ResolvedStep};
use crate::model::RetryPolicy;
use crate::template::FingerprintKey;

/// The version this ward records.
pub const VERSION: u32 = 1;

/// The version a recorded step definition was written in, or `None` if it
/// is in no form any version writes (a damaged record).
pub fn recorded_version(definition: &str) -> Option<u32> {
    if definition.starts_with('{') {
        return Some(1);
    }
    let (tag, _) = definition.strip_prefix('v')?.split_once(' ')?;
    tag.parse().ok()
}

/// A run's fingerprint: each step's definition, in `steps` order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// The version it was written in.
    pub version: u32,
    /// `(step id, definition)` for every step of the plan.
    pub steps: Vec<(String, String)>,
}

impl Fingerprint {
    /// The plan's fingerprint in the current [`VERSION`]. `key` is needed
    /// when some step has secret values ([`Plan::needs_fingerprint_key`]);
    /// without one they would count as unchanged.
    pub fn of(plan: &Plan, key: Option<&FingerprintKey>) -> Fingerprint {
        Fingerprint {
            version: VERSION,
            steps: plan
                .steps
                .iter()
                .map(|s| (s.id.clone(), v1(s, key)))
                .collect(),
        }
    }

    /// The plan's fingerprint in `version`, to compare with a run recorded
    /// in it; `None` for a version this ward does not know (a run recorded
    /// by a newer ward).
    pub fn in_version(
        plan: &Plan,
        key: Option<&FingerprintKey>,
        version: u32,
    ) -> Option<Fingerprint> {
        match version {
            1 => Some(Fingerprint::of(plan, key)),
            _ => None,
        }
    }
}

/// Version 1: the fields and their order are frozen (they were, before
/// versions, the JSON plan's step without its layer).
#[derive(Serialize)]
struct StepV1<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    /// Always null: a step's layer is not part of what it does.
    layer: Option<usize>,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cmd: Option<&'a [String]>,
    needs: &'a [String],
    after: &'a [String],
    when: &'static str,
    #[serde(rename = "if", skip_serializing_if = "Option::is_none")]
    condition: Option<ConditionV1<'a>>,
    env: BTreeMap<&'a str, &'a str>,
    timeout: Option<String>,
    retry: &'a RetryPolicy,
    compensate: Option<&'a str>,
    creates: Option<&'a str>,
    ok_codes: &'a [i32],
    compensation_only: bool,
    /// Keyed fingerprint of the secret values.
    #[serde(skip_serializing_if = "Option::is_none")]
    secrets: Option<String>,
    /// A fan-out step's work list. Left out for other steps, so that what
    /// version 1 wrote for them stays byte for byte the same (no ward
    /// before this field recorded a `for_each` step).
    #[serde(skip_serializing_if = "Option::is_none")]
    for_each: Option<ForEachV1<'a>>,
}

#[derive(Serialize)]
struct ForEachV1<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<&'a [serde_json::Value]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lines: Option<&'a str>,
    key: Option<&'a str>,
    max_parallel: usize,
    /// Left out when the step has none, so that fingerprints recorded
    /// before `workers:` existed stay the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    workers: Option<&'a [String]>,
    /// A `pg_query` source. Left out for the other sources, so what version
    /// 1 wrote for them stays the same (no ward before this field had the
    /// source): a new field, not a new version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pg_query: Option<PgQueryV1<'a>>,
}

/// A `pg_query` source: its SQL and how the server is reached, as libpq
/// keywords (a connection string in `dbname` taken apart) without any
/// password, so that a changed query or server makes the step changed.
#[derive(Serialize)]
struct PgQueryV1<'a> {
    sql: &'a str,
    db: BTreeMap<String, String>,
}

impl<'a> PgQueryV1<'a> {
    fn of(items: &'a super::Items) -> Option<PgQueryV1<'a>> {
        let super::Items::PgQuery { sql, db } = items else {
            return None;
        };
        let db = crate::pg::keywords(db)
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k != "password")
            .collect();
        Some(PgQueryV1 { sql, db })
    }
}

#[derive(Serialize)]
struct ConditionV1<'a> {
    expr: &'a str,
    value: bool,
}

/// A step's definition in version 1: compact JSON, secret values masked
/// and fingerprinted under `key`.
fn v1(s: &ResolvedStep, key: Option<&FingerprintKey>) -> String {
    let (action, summary, params, run, cmd) = match &s.body {
        ResolvedBody::Action(p) => (
            Some(p.action()),
            Some(p.describe()),
            Some(p.to_json()),
            None,
            None,
        ),
        ResolvedBody::Run(line) => (None, None, None, Some(line.as_str()), None),
        ResolvedBody::Cmd(argv) => (None, None, None, None, Some(argv.as_slice())),
    };
    let secrets = s.secret_values();
    let secrets = (!secrets.is_empty()).then(|| match key {
        Some(key) => key.fingerprint(
            secrets
                .iter()
                .flat_map(|(what, value)| [what.as_str(), *value]),
        ),
        None => "no key".to_owned(),
    });
    let step = StepV1 {
        id: &s.id,
        name: s.name.as_deref(),
        layer: None,
        kind: s.body.kind(),
        action,
        summary,
        params,
        run,
        cmd,
        needs: &s.needs,
        after: &s.after,
        when: s.when.as_str(),
        condition: s.condition.as_ref().map(|c| ConditionV1 {
            expr: &c.expr,
            value: c.value,
        }),
        env: s.shown_env().collect(),
        timeout: s.timeout.map(|t| t.to_string()),
        retry: &s.retry,
        compensate: s.compensate.as_deref(),
        creates: s.shown_creates(),
        ok_codes: &s.ok_codes,
        compensation_only: s.compensation_only,
        secrets,
        for_each: s.fan_out.as_ref().map(|f| ForEachV1 {
            items: f.list(),
            lines: f.lines(),
            key: f.key.as_deref(),
            max_parallel: f.max_parallel,
            workers: f.workers.as_deref(),
            pg_query: PgQueryV1::of(&f.items),
        }),
    };
    // Every field is a string, number, list or string-keyed map, which JSON
    // always holds; were it ever to fail, the empty text differs from every
    // record, so the step would count as changed (never as unchanged).
    serde_json::to_string(&step).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(yaml: &str) -> Plan {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.yml");
        std::fs::write(&path, yaml).expect("write");
        let now = chrono::NaiveDate::from_ymd_opt(2026, 11, 23)
            .and_then(|d| d.and_hms_opt(2, 0, 0))
            .expect("date");
        let facts = crate::template::RunFacts::new(now, "r", &path);
        crate::check_file_with(&path, &[], facts)
            .expect("read")
            .plan
            .expect("valid")
    }

    /// Version 1 is what runs were recorded with before the fingerprint
    /// had versions: its text must never change, or those runs would look
    /// changed on resume.
    #[test]
    fn version_1_is_frozen() {
        let p = plan(
            "ward: 1\nname: p\nvars:\n  db_password: hunter2\nsteps:\n  \
             - id: a\n    name: First\n    run: echo hi\n    timeout: 5m\n    creates: /tmp/x\n  \
             - id: b\n    needs: [a]\n    if: \"{{ true }}\"\n    cmd: [ls, -l]\n    \
               env: { PGPASSWORD: \"{{ db_password }}\", MODE: fast }\n    retry: 2\n    when: always\n",
        );
        let key = FingerprintKey::from_bytes([7; 32]);
        let fp = p.fingerprint(Some(&key));
        assert_eq!(fp.version, 1);
        assert_eq!(
            fp.steps[0].1,
            r#"{"id":"a","name":"First","layer":null,"kind":"run","run":"echo hi","needs":[],"after":[],"when":"success","env":{},"timeout":"5m","retry":{"attempts":1,"delay":"10s","backoff":2.0,"max_delay":"5m"},"compensate":null,"creates":"/tmp/x","ok_codes":[0],"compensation_only":false}"#
        );
        assert_eq!(
            fp.steps[1].1,
            format!(
                r#"{{"id":"b","layer":null,"kind":"cmd","cmd":["ls","-l"],"needs":["a"],"after":[],"when":"always","if":{{"expr":"{{{{ true }}}}","value":true}},"env":{{"MODE":"fast","PGPASSWORD":"********"}},"timeout":null,"retry":{{"attempts":3,"delay":"10s","backoff":2.0,"max_delay":"5m"}},"compensate":null,"creates":null,"ok_codes":[0],"compensation_only":false,"secrets":"{}"}}"#,
                key.fingerprint(["env.PGPASSWORD", "hunter2"])
            )
        );
        assert_eq!(recorded_version(&fp.steps[0].1), Some(1));
    }

    /// A `for_each` step of another source keeps its version 1 text (no
    /// `pg_query` field); a `pg_query` one records its SQL and connection,
    /// never a password.
    #[test]
    fn a_pg_query_source_is_fingerprinted_without_a_password() {
        let p = plan(
            "ward: 1\nname: p\nsteps:\n  \
             - id: a\n    for_each: [x, y]\n    run: echo {{ item }}\n  \
             - id: b\n    for_each:\n      pg_query:\n        sql: SELECT name FROM users\n        \
               db: { host: db1, port: 5433, user: ward, dbname: app }\n    \
               key: \"{{ item.name }}\"\n    run: echo {{ item.name }}\n",
        );
        let fp = p.fingerprint(None);
        assert_eq!(
            fp.steps[0].1,
            r#"{"id":"a","layer":null,"kind":"run","run":"echo x","needs":[],"after":[],"when":"success","env":{},"timeout":null,"retry":{"attempts":1,"delay":"10s","backoff":2.0,"max_delay":"5m"},"compensate":null,"creates":null,"ok_codes":[0],"compensation_only":false,"for_each":{"items":["x","y"],"key":null,"max_parallel":4}}"#
        );
        assert!(
            fp.steps[1].1.ends_with(
                r#""for_each":{"key":"{{ item.name }}","max_parallel":4,"pg_query":{"sql":"SELECT name FROM users","db":{"dbname":"app","host":"db1","port":"5433","user":"ward"}}}}"#
            ),
            "{}",
            fp.steps[1].1
        );
        assert!(!fp.steps[1].1.contains("password"));
    }

    #[test]
    fn versions_are_read_from_the_record() {
        assert_eq!(recorded_version("{\"id\":\"a\"}"), Some(1));
        assert_eq!(recorded_version("v2 {\"id\":\"a\"}"), Some(2));
        assert_eq!(recorded_version(""), None);
        assert_eq!(recorded_version("garbage"), None);
    }
}
