//! Start-up of the Lambda functions (issue 7, item 5): not measured yet. Another change fills
//! this in; the report's `startup` section is `null` until then.

use serde_json::Value;

/// The report's `startup` section.
pub async fn measure() -> Value {
    println!("5. start-up: not measured");
    Value::Null
}

/// Table rows (what, measured, floor / baseline, ratio) of the `startup` section.
pub fn table_rows(section: &Value) -> Vec<[String; 4]> {
    if section.is_null() {
        return vec![[
            "5. start-up and bootstrap sizes".into(),
            "not measured".into(),
            String::new(),
            String::new(),
        ]];
    }
    Vec::new()
}
