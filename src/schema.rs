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
    let param_defs: Vec<String> = params
        .iter()
        .filter_map(|(_, s)| s.get("$ref").and_then(Value::as_str))
        .filter_map(|r| r.strip_prefix("#/$defs/"))
        .map(str::to_owned)
        .chain(["PgConn".to_owned()])
        .collect();
    if let Some(defs) = root.get_mut("$defs").and_then(Value::as_object_mut) {
        for name in &param_defs {
            if let Some(def) = defs.get_mut(name) {
                allow_templates(def);
            }
        }
        if let Some(step) = defs.get_mut("StepDoc") {
            tie_actions_to_params(step, &params);
        }
    }
    root
}

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
/// is a valid port: allow a template string beside every non-string scalar type.
fn allow_templates(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else { return };
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
    let types: Vec<&str> = match obj.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let scalar = types.iter().any(|t| matches!(*t, "integer" | "number" | "boolean"));
    let keyword = obj.contains_key("enum") || obj.contains_key("const");
    if scalar || keyword {
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
}
