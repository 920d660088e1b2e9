//! The Rego input as a regorus `Value`, built directly.
//!
//! Serializing the input to JSON text and parsing it again (`Value::from_json_str`) was about
//! a sixth of a decision's cost with the shipped pack. The proxy serializes its input structs
//! straight into a regorus value (`ser::to_value`, a serde `Serializer`): no JSON text, no
//! `serde_json::Value` tree, and no key interning. `to_rego` (tests only) converts a
//! `serde_json::Value` the same way; it is the reference the serializer is checked against. Nesting is bounded (`MAX_DEPTH`): a deeper document is
//! an error, which the caller turns into a fail-closed `policy_error` deny.

#[cfg(test)]
use std::collections::BTreeMap;

#[cfg(test)]
use regorus::Value;

mod ser;
#[cfg(test)]
mod ser_tests;

pub use ser::to_value;

/// Deepest nesting converted. Request bodies reach the input already parsed by serde_json,
/// whose own limit is 128 levels; the input adds a few levels around them.
pub const MAX_DEPTH: usize = 192;

/// Converts `v` to a regorus value, or says why it cannot.
#[cfg(test)]
pub fn to_rego(v: serde_json::Value) -> Result<Value, String> {
    convert(v, 0)
}

#[cfg(test)]
fn convert(v: serde_json::Value, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("input nested deeper than {MAX_DEPTH} levels"));
    }
    Ok(match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::from(b),
        serde_json::Value::Number(n) => number(&n)?,
        serde_json::Value::String(s) => Value::from(s),
        serde_json::Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(convert(item, depth + 1)?);
            }
            Value::from(out)
        }
        serde_json::Value::Object(fields) => {
            let mut out = BTreeMap::new();
            for (k, item) in fields {
                out.insert(Value::from(k), convert(item, depth + 1)?);
            }
            Value::from(out)
        }
    })
}

#[cfg(test)]
fn number(n: &serde_json::Number) -> Result<Value, String> {
    if let Some(u) = n.as_u64() {
        Ok(Value::from(u))
    } else if let Some(i) = n.as_i64() {
        Ok(Value::from(i))
    } else if let Some(f) = n.as_f64() {
        Ok(Value::from(f))
    } else {
        Err(format!("number {n} is not representable"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct conversion and regorus's own JSON parser agree, value for value.
    #[test]
    fn agrees_with_parsing_the_json_text() {
        for text in [
            r#"null"#,
            r#"{"a": [1, -2, 3.5, 18446744073709551615, -9223372036854775808, 1e300, 0.1]}"#,
            r#"{"s": "caf\u00e9 \"q\" \\", "t": true, "f": false, "n": null, "e": {}, "l": []}"#,
            r#"{"request": {"headers": {"x": ["1", "2"]}, "body": {"json": {"k": [{"d": [[[]]]}]}}}}"#,
        ] {
            let json: serde_json::Value = serde_json::from_str(text).unwrap();
            let direct = to_rego(json).unwrap();
            let parsed = Value::from_json_str(text).unwrap();
            assert_eq!(direct, parsed, "{text}");
            assert_eq!(direct.to_json_str().unwrap(), parsed.to_json_str().unwrap());
        }
    }

    #[test]
    fn nesting_beyond_the_limit_is_an_error() {
        let mut v = serde_json::json!(1);
        for _ in 0..=MAX_DEPTH {
            v = serde_json::json!([v]);
        }
        assert!(to_rego(v.clone()).unwrap_err().contains("nested deeper"));
        // One level less is fine.
        let serde_json::Value::Array(mut inner) = v else {
            unreachable!()
        };
        assert!(to_rego(inner.remove(0)).is_ok());
    }
}
