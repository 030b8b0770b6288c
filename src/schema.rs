//! The JSON Schema of the playbook format, generated from the Rust types.
//!
//! `ward schema` prints it; `schemas/playbook.schema.json` is the committed
//! copy, and a test fails when the two drift apart.

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::action::REGISTRY;
use crate::model::PlaybookDoc;

/// The full schema: the document types, each action's parameters tied to
/// its `action:` name with if/then, and template strings allowed wherever
/// an action parameter is a number, a bool or a keyword.
pub fn playbook_schema() -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let mut params = Vec::new();
    for def in REGISTRY {
        let schema = (def.schema)(&mut generator).to_value();
        params.push((def.name, schema));
    }
    let mut root = generator.root_schema_for::<PlaybookDoc>().to_value();
    if let Some(defs) = root.get_mut("$defs").and_then(Value::as_object_mut) {
        for (name, def) in defs.iter_mut() {
            // Only action parameters are rendered before they are read.
            if !DOCUMENT_DEFS.contains(&name.as_str()) {
                allow_templates(def);
            }
        }
        if let Some(step) = defs.get_mut("StepDoc") {
            tie_actions_to_params(step, &params);
        }
    }
    root
}

/// Definitions of the playbook document itself, whose values are not templated.
const DOCUMENT_DEFS: &[&str] = &[
    "StepDoc",
    "ForEachDoc",
    "OnItemDoc",
    "ItemEnd",
    "LinesDoc",
    "DefaultsDoc",
    "RetryDoc",
    "RetryPolicy",
    "StepRefs",
    "When",
    "Duration",
    "NotifyDoc",
    "EmailDoc",
    "MailboxesDoc",
    "CommandDoc",
    "PingDoc",
    "NotifyOn",
    "SmtpTls",
];

/// Adds `action: enum`, "exactly one of action/run/cmd" and one if/then per action.
fn tie_actions_to_params(step: &mut Value, params: &[(&str, Value)]) {
    let names: Vec<&str> = params.iter().map(|(n, _)| *n).collect();
    if let Some(action) = step.pointer_mut("/properties/action") {
        let description = action.get("description").cloned();
        *action = json!({ "enum": names });
        if let Some(d) = description {
            action["description"] = d;
        }
    }
    let mut all_of = vec![json!({
        "oneOf": [
            { "required": ["action"] },
            { "required": ["run"] },
            { "required": ["cmd"] }
        ]
    })];
    for (name, schema) in params {
        all_of.push(json!({
            "if": { "properties": { "action": { "const": name } }, "required": ["action"] },
            "then": { "properties": { "with": schema } }
        }));
    }
    step["allOf"] = Value::Array(all_of);
}

/// Action parameters are rendered before they are typed, so `"{{ port }}"`
/// is a valid port: allow a template string beside every number, bool and keyword.
fn allow_templates(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if !is_keyword_or_scalar(obj) {
        for key in ["properties", "$defs"] {
            if let Some(props) = obj.get_mut(key).and_then(Value::as_object_mut) {
                for (_, v) in props.iter_mut() {
                    allow_templates(v);
                }
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(v) = obj.get_mut(key) {
                allow_templates(v);
            }
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(list) = obj.get_mut(key).and_then(Value::as_array_mut) {
                for v in list {
                    allow_templates(v);
                }
            }
        }
        if !has_type(obj, &["array", "object"]) {
            return;
        }
    }
    // `"{{ var }}"` may stand for the whole value.
    let description = obj.remove("description");
    let default = obj.remove("default");
    let original = Value::Object(std::mem::take(obj));
    obj.insert(
        "anyOf".into(),
        json!([original, { "type": "string", "pattern": "\\{\\{" }]),
    );
    if let Some(d) = description {
        obj.insert("description".into(), d);
    }
    if let Some(d) = default {
        obj.insert("default".into(), d);
    }
}

fn has_type(obj: &serde_json::Map<String, Value>, wanted: &[&str]) -> bool {
    match obj.get("type") {
        Some(Value::String(t)) => wanted.contains(&t.as_str()),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .any(|t| wanted.contains(&t)),
        _ => false,
    }
}

/// Numbers, bools and keyword sets (`enum`, `const`, or a oneOf of consts):
/// the values a template may stand in for as a whole.
fn is_keyword_or_scalar(obj: &serde_json::Map<String, Value>) -> bool {
    if has_type(obj, &["integer", "number", "boolean"]) {
        return true;
    }
    if obj.contains_key("enum") || obj.contains_key("const") {
        return true;
    }
    ["oneOf", "anyOf"].iter().any(|key| {
        obj.get(*key)
            .and_then(Value::as_array)
            .is_some_and(|branches| {
                !branches.is_empty()
                    && branches
                        .iter()
                        .all(|b| b.get("const").is_some() || b.get("enum").is_some())
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{DEFAULTS_KEYS, PLAYBOOK_KEYS, STEP_KEYS};

    fn keys(schema: &Value, pointer: &str) -> Vec<String> {
        let mut k: Vec<String> = schema
            .pointer(pointer)
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("no {pointer}"))
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    }

    fn sorted(list: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn parser_keys_match_the_schema_types() {
        let schema = playbook_schema();
        assert_eq!(keys(&schema, "/properties"), sorted(PLAYBOOK_KEYS));
        assert_eq!(
            keys(&schema, "/$defs/StepDoc/properties"),
            sorted(STEP_KEYS)
        );
        assert_eq!(
            keys(&schema, "/$defs/DefaultsDoc/properties"),
            sorted(DEFAULTS_KEYS)
        );
    }

    #[test]
    fn every_action_has_its_parameters_in_the_schema() {
        let schema = playbook_schema();
        let all_of = schema
            .pointer("/$defs/StepDoc/allOf")
            .and_then(Value::as_array)
            .expect("allOf");
        for def in REGISTRY {
            assert!(
                all_of
                    .iter()
                    .any(|c| c.pointer("/if/properties/action/const") == Some(&json!(def.name))),
                "{} missing",
                def.name
            );
        }
    }
}
