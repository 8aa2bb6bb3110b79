//! JSON Schema -> the OpenAPI-subset `Schema` Gemini accepts for `functionDeclarations[].parameters`
//! and `generationConfig.responseSchema`.
//!
//! Kept fields (python-genai `types.Schema`, the `Schema` message of googleapis
//! `google/ai/generativelanguage/v1beta/content.proto`): `type` (upper-case enum `STRING`,
//! `NUMBER`, `INTEGER`, `BOOLEAN`, `ARRAY`, `OBJECT`, as the recorded tests/fixtures/gemini
//! requests send it), `format`, `title`, `description`, `nullable`, `enum`, `items`,
//! `minItems`/`maxItems`, `properties`, `required`, `minProperties`/`maxProperties`,
//! `minLength`/`maxLength`, `pattern`, `anyOf`, `minimum`, `maximum`, `default`.
//!
//! Rewritten: `$ref` to `$defs`/`definitions` is inlined (a reference inside its own expansion,
//! i.e. recursion, ends at a bare node of the referenced type; nesting is cut at [`MAX_DEPTH`]
//! and the whole output at [`MAX_NODES`]);
//! `"type": ["string","null"]` and `anyOf`/`oneOf` with a `{"type":"null"}` branch become
//! `nullable: true`; `oneOf` becomes `anyOf`; a one-branch `allOf` is merged; `const` becomes a
//! one-value `enum`. Everything else (`$schema`, `additionalProperties`, `exclusiveMinimum`,
//! `propertyNames`, `patternProperties`, `examples`, ...) is dropped, never passed through.
//! `properties`/`required` are sent only on an `OBJECT` and never empty: Gemini rejects both
//! ("properties: only allowed for OBJECT type", "properties: should be non-empty for OBJECT
//! type"). An `ARRAY` always has `items` ("items: missing field"): a tuple's `prefixItems`
//! types, else `{}`.

use serde_json::{Map, Value, json};

/// Deepest nesting converted; deeper schemas become a bare `OBJECT`.
pub const MAX_DEPTH: usize = 32;

/// Most schema nodes converted for one schema (shared `$defs` referenced from many places
/// multiply when inlined); past it every node becomes a bare `OBJECT`.
pub const MAX_NODES: usize = 10_000;

/// Conversion state: the root (for `$ref`), the references being expanded, nodes converted.
struct Ctx<'a> {
    root: &'a Value,
    expanding: Vec<String>,
    nodes: usize,
}

/// String formats Gemini accepts (`enum`, `date-time`); numeric formats per type.
const FORMATS: &[(&str, &[&str])] = &[
    ("STRING", &["enum", "date-time"]),
    ("NUMBER", &["float", "double"]),
    ("INTEGER", &["int32", "int64"]),
];

/// Integer-valued keywords copied as they are.
const COUNTS: &[&str] = &[
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
];

/// Convert a JSON Schema (draft 2020-12 / OpenAI function `parameters`) to Gemini's subset.
pub fn convert(schema: &Value) -> Value {
    let mut ctx = Ctx {
        root: schema,
        expanding: Vec::new(),
        nodes: 0,
    };
    convert_at(schema, &mut ctx, 0)
}

fn upper_type(t: &str) -> Option<&'static str> {
    Some(match t {
        "string" => "STRING",
        "number" => "NUMBER",
        "integer" => "INTEGER",
        "boolean" => "BOOLEAN",
        "array" => "ARRAY",
        "object" => "OBJECT",
        _ => return None,
    })
}

fn is_null_schema(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("null")
}

/// `#/$defs/Name` or `#/definitions/Name` in `root`.
fn resolve_ref<'a>(root: &'a Value, r: &str) -> Option<&'a Value> {
    let pointer = r.strip_prefix('#')?;
    root.pointer(pointer)
}

/// A bare node standing for `target` where it is not expanded (recursion): its type only.
fn bare(target: &Value) -> Value {
    let ty = target
        .get("type")
        .and_then(Value::as_str)
        .and_then(upper_type)
        .unwrap_or("OBJECT");
    json!({ "type": ty })
}

fn convert_at(schema: &Value, ctx: &mut Ctx<'_>, depth: usize) -> Value {
    let Some(obj) = schema.as_object() else {
        // `true` / `{}` / anything else: no constraint.
        return json!({});
    };
    ctx.nodes += 1;
    if depth >= MAX_DEPTH || ctx.nodes > MAX_NODES {
        return json!({"type": "OBJECT"});
    }
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        let root = ctx.root;
        let mut resolved = match resolve_ref(root, r) {
            Some(target) if ctx.expanding.iter().any(|e| e == r) => bare(target),
            Some(target) => {
                ctx.expanding.push(r.to_string());
                let v = convert_at(target, ctx, depth + 1);
                ctx.expanding.pop();
                v
            }
            None => json!({}),
        };
        // Sibling keywords of `$ref` (description, nullable) still apply.
        let mut rest = obj.clone();
        rest.remove("$ref");
        if let (Value::Object(target), Value::Object(extra)) = (
            &mut resolved,
            convert_at(&Value::Object(rest), ctx, depth + 1),
        ) {
            for (k, v) in extra {
                target.insert(k, v);
            }
        }
        return resolved;
    }
    let mut out = Map::new();
    let mut nullable = obj.get("nullable").and_then(Value::as_bool) == Some(true);

    // allOf with one branch: merge it in (the common pydantic `allOf: [{$ref}]` shape).
    if let Some([only]) = obj
        .get("allOf")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        && let Value::Object(merged) = convert_at(only, ctx, depth + 1)
    {
        out.extend(merged);
    }

    // anyOf / oneOf: null branches become `nullable`; one remaining branch is merged.
    let branches = obj
        .get("anyOf")
        .or_else(|| obj.get("oneOf"))
        .and_then(Value::as_array);
    if let Some(branches) = branches {
        let (nulls, rest): (Vec<&Value>, Vec<&Value>) =
            branches.iter().partition(|b| is_null_schema(b));
        nullable |= !nulls.is_empty();
        match rest.as_slice() {
            [] => {}
            [one] => {
                if let Value::Object(merged) = convert_at(one, ctx, depth + 1) {
                    out.extend(merged);
                }
            }
            many => {
                out.insert(
                    "anyOf".into(),
                    many.iter().map(|b| convert_at(b, ctx, depth + 1)).collect(),
                );
            }
        }
    }

    match obj.get("type") {
        Some(Value::String(t)) => {
            if let Some(u) = upper_type(t) {
                out.insert("type".into(), u.into());
            } else if t == "null" {
                nullable = true;
            }
        }
        Some(Value::Array(types)) => {
            let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            nullable |= names.contains(&"null");
            let real: Vec<&'static str> = names.iter().filter_map(|t| upper_type(t)).collect();
            match real.as_slice() {
                [] => {}
                [one] => {
                    out.insert("type".into(), (*one).into());
                }
                many => {
                    // Several types: one branch per type, the other keywords kept on each.
                    let mut base = obj.clone();
                    base.remove("type");
                    let variants = many
                        .iter()
                        .map(|t| {
                            let mut b = base.clone();
                            b.insert("type".into(), t.to_lowercase().into());
                            convert_at(&Value::Object(b), ctx, depth + 1)
                        })
                        .collect();
                    out.insert("anyOf".into(), variants);
                }
            }
        }
        _ => {}
    }

    for key in ["title", "description", "pattern"] {
        if let Some(v) = obj.get(key).filter(|v| v.is_string()) {
            out.insert(key.into(), v.clone());
        }
    }
    for key in COUNTS {
        if let Some(v) = obj.get(*key).filter(|v| v.is_u64()) {
            out.insert((*key).into(), v.clone());
        }
    }
    for key in ["minimum", "maximum"] {
        if let Some(v) = obj.get(key).filter(|v| v.is_number()) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(d) = obj.get("default") {
        out.insert("default".into(), d.clone());
    }

    // enum / const: Gemini enums are strings (`format: enum` on a STRING).
    let values: Option<Vec<Value>> = obj
        .get("enum")
        .and_then(Value::as_array)
        .map(|vals| vals.iter().filter(|v| !v.is_null()).cloned().collect())
        .or_else(|| obj.get("const").map(|c| vec![c.clone()]));
    if let Some(values) = values {
        if obj
            .get("enum")
            .and_then(Value::as_array)
            .is_some_and(|v| v.iter().any(Value::is_null))
        {
            nullable = true;
        }
        let strings: Vec<Value> = values
            .iter()
            .map(|v| match v {
                Value::String(s) => Value::String(s.clone()),
                other => Value::String(other.to_string()),
            })
            .collect();
        out.insert("enum".into(), Value::Array(strings));
        out.insert("type".into(), "STRING".into());
    }

    if let Some(f) = obj.get("format").and_then(Value::as_str) {
        let ty = out.get("type").and_then(Value::as_str).unwrap_or_default();
        if FORMATS
            .iter()
            .any(|(t, allowed)| *t == ty && allowed.contains(&f))
        {
            out.insert("format".into(), f.into());
        }
    }

    if let Some(items) = obj.get("items") {
        out.insert("items".into(), convert_at(items, ctx, depth + 1));
    } else if out.get("type").and_then(Value::as_str) == Some("ARRAY") && !out.contains_key("items")
    {
        // Gemini requires `items` on every ARRAY ("items: missing field"). A tuple
        // (`prefixItems`) gives its element types; otherwise any element (`{}`).
        let mut kinds: Vec<Value> = Vec::new();
        for p in obj
            .get("prefixItems")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let k = convert_at(p, ctx, depth + 1);
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        let items = match kinds.len() {
            0 => json!({}),
            1 => kinds.remove(0),
            _ => json!({ "anyOf": kinds }),
        };
        out.insert("items".into(), items);
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        let converted: Map<String, Value> = props
            .iter()
            .map(|(k, v)| (k.clone(), convert_at(v, ctx, depth + 1)))
            .collect();
        if let Some(req) = obj.get("required").and_then(Value::as_array) {
            let kept: Vec<Value> = req
                .iter()
                .filter(|r| r.as_str().is_some_and(|r| converted.contains_key(r)))
                .cloned()
                .collect();
            if !kept.is_empty() {
                out.insert("required".into(), Value::Array(kept));
            }
        }
        out.insert("properties".into(), Value::Object(converted));
        out.entry("type").or_insert_with(|| "OBJECT".into());
    }
    // Gemini accepts `properties` (and `required`) only on an OBJECT, and only non-empty.
    let object = out.get("type").and_then(Value::as_str) == Some("OBJECT");
    if !object
        || out
            .get("properties")
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
    {
        out.remove("properties");
        out.remove("required");
    }
    if nullable {
        out.insert("nullable".into(), true.into());
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_upper_cased_and_unknown_keywords_dropped() {
        let s = json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
            "additionalProperties": false, "properties": {"n": {"type": "integer", "exclusiveMinimum": 0,
            "minimum": 1, "format": "int32"}, "s": {"type": "string", "format": "email", "maxLength": 9,
            "propertyNames": {}}}, "required": ["n", "missing"]});
        assert_eq!(
            convert(&s),
            json!({"type": "OBJECT", "properties": {"n": {"type": "INTEGER", "minimum": 1, "format": "int32"},
                   "s": {"type": "STRING", "maxLength": 9}}, "required": ["n"]})
        );
    }

    #[test]
    fn nullable_from_type_list_and_any_of() {
        assert_eq!(
            convert(&json!({"type": ["string", "null"], "description": "d"})),
            json!({"type": "STRING", "description": "d", "nullable": true})
        );
        assert_eq!(
            convert(&json!({"anyOf": [{"type": "integer"}, {"type": "null"}], "default": null})),
            json!({"type": "INTEGER", "nullable": true, "default": null})
        );
        assert_eq!(
            convert(&json!({"oneOf": [{"type": "integer"}, {"type": "string"}]})),
            json!({"anyOf": [{"type": "INTEGER"}, {"type": "STRING"}]})
        );
    }

    #[test]
    fn refs_are_inlined_and_const_becomes_enum() {
        let s = json!({"type": "object", "$defs": {"Unit": {"type": "string", "enum": ["c", "f"]}},
            "properties": {"unit": {"$ref": "#/$defs/Unit", "description": "unit"},
                           "kind": {"const": "weather"}, "level": {"enum": [1, 2]}}});
        assert_eq!(
            convert(&s),
            json!({"type": "OBJECT", "properties": {
                "unit": {"type": "STRING", "enum": ["c", "f"], "description": "unit"},
                "kind": {"type": "STRING", "enum": ["weather"]},
                "level": {"type": "STRING", "enum": ["1", "2"]}}})
        );
    }

    #[test]
    fn recursive_refs_terminate() {
        let s = json!({"$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
                       "$ref": "#/$defs/Node"});
        let out = convert(&s);
        assert_eq!(out["type"], "OBJECT");
        assert!(out.to_string().len() < 10_000);
    }

    #[test]
    fn recursion_with_several_branches_is_cut_not_expanded() {
        // A tree whose nodes refer to themselves through three properties: expanding each `$ref`
        // to the depth limit is 3^16 nodes (minutes and gigabytes for one client request).
        let s = json!({"$defs": {"Node": {"type": "object", "description": "n", "properties": {
            "a": {"$ref": "#/$defs/Node"}, "b": {"$ref": "#/$defs/Node"},
            "c": {"$ref": "#/$defs/Node"}, "v": {"type": "string"}}}}, "$ref": "#/$defs/Node"});
        let t = std::time::Instant::now();
        let out = convert(&s);
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        // The recursive reference ends at a bare node of the referenced type.
        assert_eq!(out["properties"]["a"], json!({"type": "OBJECT"}));
        assert_eq!(out["properties"]["v"], json!({"type": "STRING"}));
        // A definition used twice, not recursively, is inlined both times.
        let s = json!({"$defs": {"P": {"type": "object", "properties": {"x": {"type": "number"}}}},
            "type": "object", "properties": {"from": {"$ref": "#/$defs/P"}, "to": {"$ref": "#/$defs/P"}}});
        let p = json!({"type": "OBJECT", "properties": {"x": {"type": "NUMBER"}}});
        assert_eq!(convert(&s)["properties"], json!({"from": p, "to": p}));
        // Shared definitions fanning out (not recursive) are bounded too.
        let mut defs = serde_json::Map::new();
        for i in 0..40 {
            let next = json!({"$ref": format!("#/$defs/D{}", i + 1)});
            defs.insert(
                format!("D{i}"),
                json!({"type": "object", "properties": {"l": next, "r": next}}),
            );
        }
        defs.insert("D40".into(), json!({"type": "string"}));
        let s = json!({"$defs": defs, "$ref": "#/$defs/D0"});
        let t = std::time::Instant::now();
        let out = convert(&s);
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        assert!(out.to_string().len() < 2_000_000);
    }

    #[test]
    fn properties_only_on_objects_and_never_empty() {
        // Gemini: "properties: should be non-empty for OBJECT type" and "properties: only allowed
        // for OBJECT type" (INVALID_ARGUMENT).
        assert_eq!(
            convert(&json!({"type": "object", "properties": {
                "go_back": {"type": "object", "properties": {}, "required": []},
                "data": {"type": "string", "properties": {"x": {"type": "string"}}, "required": ["x"]}}})),
            json!({"type": "OBJECT", "properties": {"go_back": {"type": "OBJECT"},
                   "data": {"type": "STRING"}}})
        );
    }

    #[test]
    fn arrays_always_have_items() {
        // Gemini: "items: missing field" (INVALID_ARGUMENT) for an ARRAY without `items`.
        assert_eq!(
            convert(&json!({"type": "array", "items": {"type": "array"}})),
            json!({"type": "ARRAY", "items": {"type": "ARRAY", "items": {}}})
        );
        // A tuple (`prefixItems`, as pydantic and zod emit) keeps its element types.
        assert_eq!(
            convert(&json!({"type": "array", "minItems": 2, "maxItems": 2,
                "prefixItems": [{"type": "integer"}, {"type": "integer"}]})),
            json!({"type": "ARRAY", "minItems": 2, "maxItems": 2, "items": {"type": "INTEGER"}})
        );
        assert_eq!(
            convert(
                &json!({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]})
            ),
            json!({"type": "ARRAY", "items": {"anyOf": [{"type": "INTEGER"}, {"type": "STRING"}]}})
        );
        // Items from a merged `anyOf` branch are kept.
        assert_eq!(
            convert(
                &json!({"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]})
            ),
            json!({"type": "ARRAY", "items": {"type": "STRING"}, "nullable": true})
        );
    }

    #[test]
    fn arrays_convert_items() {
        assert_eq!(
            convert(
                &json!({"type": "array", "items": {"type": "number"}, "minItems": 1, "uniqueItems": true})
            ),
            json!({"type": "ARRAY", "items": {"type": "NUMBER"}, "minItems": 1})
        );
    }
}
