//! `show ID`: one session. Its data is redacted unless `--reveal`: each key with the type
//! and size of its value, so an operator can see what a session holds without reading
//! what users put in it.

use serde_json::{Value, json};

use super::{data_bytes, describe, parse_id};
use crate::cli::{Context, Failure};
use crate::output::{Report, Table, pairs, when};

/// `show`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The session id (the cookie's value; 22 to 128 characters of A-Z a-z 0-9 - _; one
    /// starting with `-` is an id too, not an option).
    #[arg(allow_hyphen_values = true)]
    id: String,
    /// Print the data's values too, not only their types and sizes.
    #[arg(long)]
    reveal: bool,
}

pub(crate) async fn run(ctx: &Context, args: &Args) -> Result<Report, Failure> {
    let id = parse_id(&args.id)?;
    let opened = ctx.open().await?;
    let Some(record) = opened.store.get(&id).await? else {
        return Err(Failure::not_found(format!(
            "no live session {} in the store",
            id.fingerprint()
        )));
    };
    let mut json = describe(&record, false);
    json["backend"] = Value::from(opened.backend);
    json["store"] = Value::from(ctx.store());
    json["revealed"] = Value::from(args.reveal);
    json["data"] = if args.reveal {
        Value::Object(record.data().clone())
    } else {
        record
            .data()
            .iter()
            .map(|(key, value)| (key.clone(), shape(value)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let mut text = pairs(&[
        ("session", record.id().fingerprint().to_string()),
        ("owner", record.owner().unwrap_or("-").to_owned()),
        ("created", when(record.created_at())),
        ("expires", when(record.expires_at())),
        (
            "deadline",
            record.deadline().map_or_else(|| "-".to_owned(), when),
        ),
        ("version", record.version().to_string()),
        ("bytes", data_bytes(&record).to_string()),
    ]);
    text.push('\n');
    if args.reveal {
        let mut table = Table::new(&["key", "value"]);
        for (key, value) in record.data() {
            table.row(vec![key.clone(), value.to_string()]);
        }
        text.push_str(&table.render());
    } else {
        let mut table = Table::new(&["key", "type", "size"]);
        for (key, value) in record.data() {
            let shape = shape(value);
            let size = shape
                .get("bytes")
                .map(|b| format!("{b} bytes"))
                .or_else(|| shape.get("items").map(|n| format!("{n} items")))
                .or_else(|| shape.get("keys").map(|n| format!("{n} keys")))
                .unwrap_or_default();
            table.row(vec![
                key.clone(),
                shape["type"].as_str().unwrap_or("").to_owned(),
                size,
            ]);
        }
        text.push_str(&table.render());
        text.push_str("(values redacted; --reveal prints them)\n");
    }
    Ok(Report::new(json, text))
}

/// A value's type and size, instead of the value: `{"type": "string", "bytes": 12}`,
/// `{"type": "object", "keys": 3}`, `{"type": "array", "items": 2}`, `{"type": "number"}`.
fn shape(value: &Value) -> Value {
    match value {
        Value::Null => json!({"type": "null"}),
        Value::Bool(_) => json!({"type": "bool"}),
        Value::Number(_) => json!({"type": "number"}),
        Value::String(s) => json!({"type": "string", "bytes": s.len()}),
        Value::Array(items) => json!({"type": "array", "items": items.len()}),
        Value::Object(keys) => json!({"type": "object", "keys": keys.len()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_tells_type_and_size_never_the_value() {
        assert_eq!(
            shape(&json!("secret-token")),
            json!({"type": "string", "bytes": 12})
        );
        assert_eq!(shape(&json!(42)), json!({"type": "number"}));
        assert_eq!(shape(&json!([1, 2])), json!({"type": "array", "items": 2}));
        assert_eq!(
            shape(&json!({"k": "v"})),
            json!({"type": "object", "keys": 1})
        );
        assert_eq!(shape(&json!(true)), json!({"type": "bool"}));
        assert_eq!(shape(&Value::Null), json!({"type": "null"}));
    }
}
