//! `docs/openapi.json` stays true: its (method, path) set is the router's
//! route table, its references resolve, and the answers of a real control
//! process fit its schemas (required fields present, no field it does not
//! describe where it says `additionalProperties: false`).

mod control_support;

use std::collections::BTreeSet;
use std::time::Duration;

use control_support::{Setup, maybe_run_role};
use odock_control::api::ROUTES;
use odock_suite::watchdog;
use serde_json::Value;

/// Runs a child role when this binary is re-executed as one.
#[test]
fn role_child() {
    maybe_run_role();
}

fn is_child() -> bool {
    std::env::var("ODOCK_TEST_ROLE").is_ok()
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn spec() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unsupported $ref {r}"));
            let target = &spec["components"]["schemas"][name];
            assert!(!target.is_null(), "$ref {r} does not resolve");
            resolve(spec, target)
        }
        None => schema,
    }
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[test]
fn openapi_describes_exactly_the_routes_the_router_serves() {
    let spec = spec();
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "an OpenAPI 3 document"
    );
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        let item = item.as_object().unwrap();
        for (method, op) in item {
            assert!(METHODS.contains(&method.as_str()), "{path}: key {method}");
            documented.insert((method.to_uppercase(), path.clone()));
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|c| c.starts_with('2')),
                "{method} {path} has no 2xx answer"
            );
            // Every path parameter is declared, and only those.
            let in_path: BTreeSet<String> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .map(str::to_owned)
                .collect();
            let declared: BTreeSet<String> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| p["name"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(in_path, declared, "{method} {path} path parameters");
        }
    }
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "served but not in docs/openapi.json: {missing:?}; documented but not served: {extra:?}"
    );
    let mut all = Vec::new();
    refs(&spec, &mut all);
    assert!(!all.is_empty());
    for r in &all {
        resolve(&spec, &serde_json::json!({ "$ref": r }));
    }
}

/// Checks `v` against `schema` as far as this document uses JSON Schema:
/// types, required fields, closed objects, array items, enums.
fn check(spec: &Value, schema: &Value, v: &Value, at: &str) {
    let schema = resolve(spec, schema);
    if v.is_null() && schema["nullable"] == true {
        return;
    }
    if let Some(values) = schema["enum"].as_array() {
        assert!(values.contains(v), "{at}: {v} not in {values:?}");
    }
    match schema["type"].as_str() {
        Some("object") => {
            let m = v
                .as_object()
                .unwrap_or_else(|| panic!("{at}: {v} is not an object"));
            for r in schema["required"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap();
                assert!(m.contains_key(r), "{at}: required {r} missing in {v}");
            }
            let props = schema["properties"].as_object();
            for (k, x) in m {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => check(spec, s, x, &format!("{at}.{k}")),
                    None => match &schema["additionalProperties"] {
                        Value::Bool(false) => panic!("{at}: {k} is not in the schema"),
                        s @ Value::Object(_) => check(spec, s, x, &format!("{at}.{k}")),
                        _ => {}
                    },
                }
            }
        }
        Some("array") => {
            for (i, x) in v.as_array().unwrap().iter().enumerate() {
                check(spec, &schema["items"], x, &format!("{at}[{i}]"));
            }
        }
        Some("string") => assert!(v.is_string(), "{at}: {v} is not a string"),
        Some("integer") => assert!(v.is_i64() || v.is_u64(), "{at}: {v} not an integer"),
        Some("boolean") => assert!(v.is_boolean(), "{at}: {v} not a boolean"),
        _ => {}
    }
}

fn answer_schema(spec: &Value, method: &str, path: &str, status: u16) -> Value {
    let r = &spec["paths"][path][method.to_lowercase()]["responses"][status.to_string()];
    assert!(!r.is_null(), "{method} {path} does not document {status}");
    r["content"]["application/json"]["schema"].clone()
}

#[test]
fn real_answers_fit_the_documented_schemas() {
    if is_child() {
        return;
    }
    watchdog(Duration::from_secs(60), || {
        let spec = spec();
        let s = Setup::new();
        let extra = format!(
            "[[sinks]]\nname = \"siem\"\nkind = \"jsonl\"\npath = {:?}\n",
            s.dir.path().join("siem.jsonl").display().to_string()
        );
        let _control = s.control_with(None, &extra);
        let c = s.client();
        let call = |method: &str, path: &str, doc_path: &str, body: Option<&str>, want: u16| {
            let a = c.request(method, path, body.map(str::as_bytes)).unwrap();
            assert_eq!(a.status, want, "{method} {path}: {}", a.text());
            let schema = answer_schema(&spec, method, doc_path, a.status);
            check(&spec, &schema, &a.json(), &format!("{method} {path}"));
        };
        call(
            "POST",
            "/v1/scopes",
            "/v1/scopes",
            Some(r#"{"name": "acme", "tenant": "acme"}"#),
            201,
        );
        call(
            "PUT",
            "/v1/scopes/acme",
            "/v1/scopes/{name}",
            Some(r#"{"name": "acme", "model": "m"}"#),
            200,
        );
        call("GET", "/v1/scopes", "/v1/scopes", None, 200);
        call("GET", "/v1/scopes/acme", "/v1/scopes/{name}", None, 200);
        call("GET", "/v1/status", "/v1/status", None, 200);
        call("GET", "/v1/history", "/v1/history", None, 200);
        call("GET", "/v1/plugins", "/v1/plugins", None, 200);
        call("GET", "/v1/bindings", "/v1/bindings", None, 200);
        call("GET", "/v1/dataplanes", "/v1/dataplanes", None, 200);
        call(
            "POST",
            "/v1/rollback",
            "/v1/rollback",
            Some(r#"{"version": 1}"#),
            200,
        );
        call(
            "POST",
            "/v1/scopes",
            "/v1/scopes",
            Some(r#"{"name": "b", "tennant": "x"}"#),
            400,
        );
        call(
            "POST",
            "/v1/scopes",
            "/v1/scopes",
            Some(r#"{"name": "acme"}"#),
            409,
        );
        call("GET", "/v1/bindings/none", "/v1/bindings/{name}", None, 404);
        call("DELETE", "/v1/scopes/acme", "/v1/scopes/{name}", None, 200);
        call(
            "POST",
            "/v1/bindings/none/enable",
            "/v1/bindings/{name}/enable",
            None,
            404,
        );
        let a = c
            .request("GET", "/v1/evidence?kind=control_change", None)
            .unwrap();
        assert_eq!(a.status, 200);
        let schema = spec["paths"]["/v1/evidence"]["get"]["responses"]["200"]["content"]
            ["application/x-ndjson"]["schema"]
            .clone();
        let text = a.text();
        assert!(text.lines().count() >= 4, "{text}");
        for line in text.lines() {
            check(
                &spec,
                &schema,
                &serde_json::from_str(line).unwrap(),
                "evidence line",
            );
        }
    });
}
