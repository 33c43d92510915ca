//! A subset of JSON Schema for validating binding configs against a
//! plugin's declared schema, naming the field that fails.
//!
//! Supported keywords: `type` (a name or a list of names; `integer`
//! included), `enum`, `const`, `properties`, `required`,
//! `additionalProperties` (`false` or a schema), `items` (one schema),
//! `minItems`, `maxItems`, `minLength`, `maxLength`, `minimum`, `maximum`,
//! `exclusiveMinimum`, `exclusiveMaximum` (numbers), `pattern` is **not**
//! supported and is ignored, as are annotations (`title`, `description`,
//! `default`, `$schema`, `$id`, `examples`). Any other keyword makes the
//! schema itself invalid: control refuses a binding it cannot check rather
//! than pass a config it did not understand. The full `jsonschema` crate
//! was judged too heavy for this process (regex engine, URL resolver).

use serde_json::Value;

/// A config that does not satisfy the schema, or a schema this subset
/// cannot apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// The failing place as a JSON path under the config (`config.allow[2]`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for SchemaError {}

const IGNORED: &[&str] = &[
    "title",
    "description",
    "default",
    "$schema",
    "$id",
    "examples",
    "pattern",
    "$comment",
];

/// Validates `value` (found at `path`) against `schema`.
///
/// # Errors
/// The first [`SchemaError`] found, depth first.
pub fn validate(schema: &Value, value: &Value, path: &str) -> Result<(), SchemaError> {
    let fail = |message: String| SchemaError {
        path: path.to_owned(),
        message,
    };
    let obj = match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return Err(fail("no value is allowed here".into())),
        Value::Object(o) => o,
        _ => return Err(fail("the plugin's schema is not an object".into())),
    };
    for key in obj.keys() {
        let known = matches!(
            key.as_str(),
            "type"
                | "enum"
                | "const"
                | "properties"
                | "required"
                | "additionalProperties"
                | "items"
                | "minItems"
                | "maxItems"
                | "minLength"
                | "maxLength"
                | "minimum"
                | "maximum"
                | "exclusiveMinimum"
                | "exclusiveMaximum"
        ) || IGNORED.contains(&key.as_str());
        if !known {
            return Err(fail(format!(
                "the plugin's schema uses keyword {key:?}, which control cannot check"
            )));
        }
    }
    if let Some(t) = obj.get("type") {
        let names: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !names.iter().any(|n| type_matches(n, value)) {
            return Err(fail(format!(
                "expected {}, found {}",
                names.join(" or "),
                type_name(value)
            )));
        }
    }
    if let Some(Value::Array(options)) = obj.get("enum")
        && !options.contains(value)
    {
        return Err(fail(format!(
            "{value} is not one of {}",
            Value::Array(options.clone())
        )));
    }
    if let Some(c) = obj.get("const")
        && c != value
    {
        return Err(fail(format!("must be {c}")));
    }
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(required)) = obj.get("required") {
                for r in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(r) {
                        return Err(SchemaError {
                            path: format!("{path}.{r}"),
                            message: "required field is missing".into(),
                        });
                    }
                }
            }
            let props = obj.get("properties").and_then(Value::as_object);
            for (k, v) in map {
                let sub = format!("{path}.{k}");
                match props.and_then(|p| p.get(k)) {
                    Some(s) => validate(s, v, &sub)?,
                    None => match obj.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            return Err(SchemaError {
                                path: sub,
                                message: "unknown field (the schema allows no others)".into(),
                            });
                        }
                        Some(s @ Value::Object(_)) => validate(s, v, &sub)?,
                        _ => {}
                    },
                }
            }
        }
        Value::Array(items) => {
            if let Some(min) = obj.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                return Err(fail(format!(
                    "at least {min} items expected, found {}",
                    items.len()
                )));
            }
            if let Some(max) = obj.get("maxItems").and_then(Value::as_u64)
                && (items.len() as u64) > max
            {
                return Err(fail(format!(
                    "at most {max} items expected, found {}",
                    items.len()
                )));
            }
            if let Some(s) = obj.get("items") {
                for (i, v) in items.iter().enumerate() {
                    validate(s, v, &format!("{path}[{i}]"))?;
                }
            }
        }
        Value::String(s) => {
            let n = s.chars().count() as u64;
            if let Some(min) = obj.get("minLength").and_then(Value::as_u64)
                && n < min
            {
                return Err(fail(format!(
                    "at least {min} characters expected, found {n}"
                )));
            }
            if let Some(max) = obj.get("maxLength").and_then(Value::as_u64)
                && n > max
            {
                return Err(fail(format!(
                    "at most {max} characters expected, found {n}"
                )));
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            let bound = |k: &str| obj.get(k).and_then(Value::as_f64);
            if let Some(m) = bound("minimum")
                && x < m
            {
                return Err(fail(format!("{n} is below the minimum {m}")));
            }
            if let Some(m) = bound("maximum")
                && x > m
            {
                return Err(fail(format!("{n} is above the maximum {m}")));
            }
            if let Some(m) = bound("exclusiveMinimum")
                && x <= m
            {
                return Err(fail(format!("{n} must be above {m}")));
            }
            if let Some(m) = bound("exclusiveMaximum")
                && x >= m
            {
                return Err(fail(format!("{n} must be below {m}")));
            }
        }
        _ => {}
    }
    Ok(())
}

fn type_matches(name: &str, v: &Value) -> bool {
    match name {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_the_failing_field() {
        let schema = json!({
            "type": "object",
            "required": ["allow"],
            "additionalProperties": false,
            "properties": {
                "allow": {"type": "array", "items": {"type": "string", "minLength": 1}},
                "limit": {"type": "integer", "minimum": 0}
            }
        });
        assert!(validate(&schema, &json!({"allow": ["a"]}), "config").is_ok());
        let e = validate(&schema, &json!({}), "config").unwrap_err();
        assert_eq!(e.path, "config.allow");
        let e = validate(&schema, &json!({"allow": ["a", 3]}), "config").unwrap_err();
        assert_eq!(e.path, "config.allow[1]");
        let e = validate(&schema, &json!({"allow": [], "x": 1}), "config").unwrap_err();
        assert_eq!(e.path, "config.x");
        let e = validate(&schema, &json!({"allow": [], "limit": -1}), "config").unwrap_err();
        assert_eq!(e.path, "config.limit");
        let e = validate(&json!({"pattern2": 1}), &json!(1), "config").unwrap_err();
        assert!(e.message.contains("pattern2"));
    }
}
