//! JSON body schemas merged over all samples: types, required vs optional, nullable, enums of
//! low-cardinality strings, and string formats (uuid, date-time, date, email, uri).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::vocab::volatile::is_datetime;
use crate::vocab::{is_date, is_uuid};

const MAX_DEPTH: usize = 12;
const MAX_ARRAY_SAMPLES: usize = 50;
const MAX_ENUM: usize = 6;

const F_UUID: u8 = 1;
const F_DATETIME: u8 = 2;
const F_DATE: u8 = 4;
const F_EMAIL: u8 = 8;
const F_URI: u8 = 16;

/// The merged shape of many JSON values.
#[derive(Debug, Default)]
pub struct Shape {
    count: u64,
    null: u64,
    boolean: u64,
    integer: u64,
    number: u64,
    strings: u64,
    formats: u8,
    values: BTreeMap<String, u64>,
    too_many_values: bool,
    arrays: u64,
    items: Option<Box<Shape>>,
    objects: u64,
    properties: BTreeMap<String, Shape>,
}

fn formats_of(s: &str) -> u8 {
    let mut f = 0;
    if is_uuid(s) {
        f |= F_UUID;
    }
    if is_datetime(s) {
        f |= F_DATETIME;
    }
    if is_date(s) {
        f |= F_DATE;
    }
    if let Some((user, domain)) = s.split_once('@') {
        if !user.is_empty() && domain.contains('.') && !s.contains(char::is_whitespace) {
            f |= F_EMAIL;
        }
    }
    if s.starts_with("http://") || s.starts_with("https://") {
        f |= F_URI;
    }
    f
}

impl Shape {
    /// Merges one value in.
    pub fn add(&mut self, v: &Value) {
        self.add_at(v, 0);
    }

    fn add_at(&mut self, v: &Value, depth: usize) {
        self.count += 1;
        match v {
            Value::Null => self.null += 1,
            Value::Bool(_) => self.boolean += 1,
            Value::Number(n) => {
                if n.is_i64() || n.is_u64() {
                    self.integer += 1
                } else {
                    self.number += 1
                }
            }
            Value::String(s) => {
                let f = formats_of(s);
                self.formats = if self.strings == 0 {
                    f
                } else {
                    self.formats & f
                };
                self.strings += 1;
                if !self.too_many_values {
                    *self.values.entry(s.clone()).or_insert(0) += 1;
                    if self.values.len() > MAX_ENUM {
                        self.too_many_values = true;
                        self.values.clear();
                    }
                }
            }
            Value::Array(items) => {
                self.arrays += 1;
                if depth < MAX_DEPTH {
                    let shape = self.items.get_or_insert_with(Box::default);
                    for item in items.iter().take(MAX_ARRAY_SAMPLES) {
                        shape.add_at(item, depth + 1);
                    }
                }
            }
            Value::Object(map) => {
                self.objects += 1;
                if depth < MAX_DEPTH {
                    for (k, item) in map {
                        self.properties
                            .entry(k.clone())
                            .or_default()
                            .add_at(item, depth + 1);
                    }
                }
            }
        }
    }

    /// The JSON Schema (2020-12, as OpenAPI 3.1 uses it).
    pub fn to_schema(&self) -> Value {
        let mut types: Vec<&str> = Vec::new();
        let mut out = Map::new();
        if self.objects > 0 {
            types.push("object");
            let props: Map<String, Value> = self
                .properties
                .iter()
                .map(|(k, s)| (k.clone(), s.to_schema()))
                .collect();
            let required: Vec<Value> = self
                .properties
                .iter()
                .filter(|(_, s)| s.count == self.objects)
                .map(|(k, _)| Value::String(k.clone()))
                .collect();
            out.insert("properties".into(), Value::Object(props));
            if !required.is_empty() {
                out.insert("required".into(), Value::Array(required));
            }
        }
        if self.arrays > 0 {
            types.push("array");
            if let Some(items) = self.items.as_ref().filter(|i| i.count > 0) {
                out.insert("items".into(), items.to_schema());
            }
        }
        if self.strings > 0 {
            types.push("string");
            let format = [
                (F_UUID, "uuid"),
                (F_DATETIME, "date-time"),
                (F_DATE, "date"),
                (F_EMAIL, "email"),
                (F_URI, "uri"),
            ]
            .into_iter()
            .find(|(bit, _)| self.formats & bit != 0)
            .map(|(_, name)| name);
            if let Some(f) = format {
                out.insert("format".into(), json!(f));
            } else if !self.too_many_values
                && self.strings >= 10
                && (self.values.len() as u64) * 3 <= self.strings
                && !self.values.keys().any(|v| v == super::redact::REDACTED)
            {
                out.insert(
                    "enum".into(),
                    Value::Array(self.values.keys().map(|k| json!(k)).collect()),
                );
            }
        }
        if self.integer > 0 && self.number == 0 {
            types.push("integer");
        } else if self.integer + self.number > 0 {
            types.push("number");
        }
        if self.boolean > 0 {
            types.push("boolean");
        }
        if self.null > 0 {
            types.push("null");
        }
        match types.as_slice() {
            [] => {}
            [one] => {
                out.insert("type".into(), json!(one));
            }
            many => {
                out.insert("type".into(), json!(many));
            }
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_required_optional_formats_and_enums() {
        let mut s = Shape::default();
        for i in 0..12 {
            let mut v = json!({
                "id": "9b2f6c1e-8d1a-4c3b-9f2e-1a2b3c4d5e6f",
                "email": format!("u{i}@example.com"),
                "created": "2024-05-01T12:00:00Z",
                "status": if i % 2 == 0 { "open" } else { "paid" },
                "n": i,
            });
            if i % 2 == 0 {
                v["note"] = json!(null);
            }
            s.add(&v);
        }
        let schema = s.to_schema();
        assert_eq!(schema["type"], "object");
        assert_eq!(
            schema["required"],
            json!(["created", "email", "id", "n", "status"])
        );
        assert_eq!(schema["properties"]["id"]["format"], "uuid");
        assert_eq!(schema["properties"]["email"]["format"], "email");
        assert_eq!(schema["properties"]["created"]["format"], "date-time");
        assert_eq!(
            schema["properties"]["status"]["enum"],
            json!(["open", "paid"])
        );
        assert_eq!(schema["properties"]["n"]["type"], "integer");
        assert_eq!(schema["properties"]["note"]["type"], "null");
    }
}
