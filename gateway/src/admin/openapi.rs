//! `GET /admin/openapi.json`: the OpenAPI 3.1 description of the admin API, kept in
//! `openapi.json` beside this file. It is served without authentication: it says which routes
//! exist and what they take, which the source says too, and never anything stored. The test
//! below walks [`super::ROUTES`] so the document and the router cannot drift apart.

use std::sync::OnceLock;

use serde_json::Value;

const TEXT: &str = include_str!("openapi.json");

/// Routes on the admin listener served outside the router (`proxy/admin.rs`), documented too.
pub const SERVED_ELSEWHERE: &[(&str, &str)] = &[("GET", "/admin/plugins")];

/// The parsed document (parsed once; the text is part of the binary and checked by tests).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_str(TEXT).unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::ROUTES;

    #[test]
    fn document_parses_and_is_openapi_3_1() {
        let doc: Value = serde_json::from_str(TEXT).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(document(), &doc);
    }

    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let doc = document();
        let paths = doc["paths"].as_object().expect("paths");
        let served: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p, _)| (m.to_lowercase(), p.to_string()))
            .chain(
                SERVED_ELSEWHERE
                    .iter()
                    .map(|(m, p)| (m.to_lowercase(), p.to_string())),
            )
            .collect();
        for (method, path) in &served {
            let op = &paths
                .get(path)
                .unwrap_or_else(|| panic!("{path} missing from openapi.json"))[method];
            assert!(op.is_object(), "{method} {path} missing from openapi.json");
            // Each documented parameter of the path exists in the operation.
            for seg in path.split('/').filter(|s| s.starts_with('{')) {
                let name = seg.trim_matches(|c| c == '{' || c == '}');
                let declared = op["parameters"].as_array().is_some_and(|ps| {
                    ps.iter().any(|p| {
                        p["$ref"].as_str() == Some(&format!("#/components/parameters/{name}"))
                    })
                });
                assert!(
                    declared,
                    "{method} {path} does not declare parameter {name}"
                );
            }
        }
        for (path, ops) in paths {
            for method in ops.as_object().expect("operations").keys() {
                assert!(
                    served.contains(&(method.clone(), path.clone())),
                    "openapi.json documents {method} {path}, which is not served"
                );
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        fn walk(v: &Value, doc: &Value) {
            match v {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        let pointer = r.trim_start_matches('#');
                        assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
                    }
                    map.values().for_each(|x| walk(x, doc));
                }
                Value::Array(items) => items.iter().for_each(|x| walk(x, doc)),
                _ => {}
            }
        }
        walk(document(), document());
    }
}
