//! `--param key=value` pairs into a JSON object.

use anyhow::{Result, bail};
use serde_json::{Map, Value};

/// Builds the parameters object from `--params-json` and `--param k=v` pairs (pairs win).
/// A value that parses as JSON (a number, `true`, a quoted string, a list) is taken as such;
/// anything else is a string.
pub fn build(json: Option<&str>, pairs: &[String]) -> Result<String> {
    let mut map = match json {
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => bail!("--params-json must be a JSON object"),
            Err(e) => bail!("--params-json is not valid JSON: {e}"),
        },
        None => Map::new(),
    };
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--param {pair:?} is not key=value");
        };
        if key.is_empty() {
            bail!("--param {pair:?} has an empty key");
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        map.insert(key.to_string(), value);
    }
    Ok(Value::Object(map).to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn pairs_become_typed_json() {
        let p = super::build(
            None,
            &["pid=12".into(), "name=sleep".into(), "on=true".into()],
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v["pid"], 12);
        assert_eq!(v["name"], "sleep");
        assert_eq!(v["on"], true);
        assert!(super::build(None, &["novalue".into()]).is_err());
        assert!(super::build(Some("[1]"), &[]).is_err());
    }
}
