//! A JSON object as `field  value` rows for people: nested objects by dotted path, lists of
//! plain values joined with commas.

use serde_json::Value;

/// The rows of `value`, in the order its map keeps.
pub fn rows(value: &Value) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    collect("", value, &mut rows);
    rows
}

fn collect(path: &str, value: &Value, rows: &mut Vec<Vec<String>>) {
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (name, field) in fields {
                let path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                collect(&path, field, rows);
            }
        }
        Value::Array(items) if items.iter().all(|item| !item.is_object()) => {
            rows.push(vec![path.to_owned(), plain(value)]);
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                collect(&format!("{path}[{index}]"), item, rows);
            }
        }
        other => rows.push(vec![path.to_owned(), plain(other)]),
    }
}

/// A value as text: strings without quotes, lists joined with commas, null as `-`.
pub fn plain(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
        Value::String(text) => text.clone(),
        Value::Object(fields) if fields.is_empty() => "-".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_fields_become_dotted_rows() {
        let value = json!({
            "name": "crm",
            "invited_roles": ["bots", "sales"],
            "client_secret_set": true,
            "revocation_url": null,
            "token_health": {"shared": {"status": "valid"}, "user_tokens": {"total": 2}},
            "extra": {},
        });
        // Sorted: whether the map keeps the server's order depends on serde_json's features.
        let mut rows: Vec<(String, String)> = rows(&value)
            .into_iter()
            .map(|row| (row[0].clone(), row[1].clone()))
            .collect();
        rows.sort();
        let mut expected: Vec<(String, String)> = [
            ("name", "crm"),
            ("invited_roles", "bots, sales"),
            ("client_secret_set", "true"),
            ("revocation_url", "-"),
            ("token_health.shared.status", "valid"),
            ("token_health.user_tokens.total", "2"),
            ("extra", "-"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .into();
        expected.sort();
        assert_eq!(rows, expected);
    }
}
