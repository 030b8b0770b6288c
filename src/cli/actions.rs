//! `ward actions [--json]`

use std::io::Write;

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use super::ActionsArgs;
use crate::action::REGISTRY;
use crate::error::{WardError, exit};

pub(super) fn actions(args: &ActionsArgs) -> Result<i32, WardError> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.json {
        serde_json::to_writer_pretty(&mut out, &actions_json()).map_err(std::io::Error::from)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(exit::OK);
    }
    let width = REGISTRY.iter().map(|d| d.name.len()).max().unwrap_or(0);
    for def in REGISTRY {
        writeln!(out, "{:<width$}  {}", def.name, def.summary)?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "Parameters: `ward actions --json`, `ward schema` or docs/actions.md."
    )?;
    out.flush()?;
    Ok(exit::OK)
}

/// Each action of the registry (the source of the text listing, of `ward
/// schema` and of validation) with its parameters: name, whether it is
/// required, its description and its JSON Schema.
fn actions_json() -> Value {
    // Inlined, so that each parameter's schema stands on its own rather
    // than pointing into a `$defs` that is not printed.
    let mut settings = SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    let mut generator = settings.into_generator();
    let list: Vec<Value> = REGISTRY
        .iter()
        .map(|def| {
            let schema = (def.schema)(&mut generator).to_value();
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let params: Vec<Value> = schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|props| {
                    props
                        .iter()
                        .map(|(name, p)| {
                            let mut p = p.clone();
                            let description = p
                                .as_object_mut()
                                .and_then(|o| o.remove("description"))
                                .unwrap_or(Value::Null);
                            json!({
                                "name": name,
                                "required": required.contains(&name.as_str()),
                                "description": description,
                                "schema": p,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "name": def.name,
                "summary": def.summary,
                "params": params,
            })
        })
        .collect();
    Value::Array(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_is_listed_with_its_parameters() {
        let doc = actions_json();
        let list = doc.as_array().expect("list");
        assert_eq!(list.len(), REGISTRY.len());
        // Every action in the registry has at least one parameter it takes,
        // and a schema that was inlined (no `$ref` into unprinted `$defs`).
        for a in list {
            let params = a["params"].as_array().expect("params");
            assert!(!params.is_empty(), "{a}");
            assert!(!a.to_string().contains("$ref"), "{a}");
        }
    }
}
