//! The trade contract a provider's frames are normalized to: key = symbol,
//! `{"symbol","price","size","ts"}` with `ts` in epoch ms, plus the optional
//! `id`, `venue`, `provider` and `conditions` a job may declare.

use std::fmt::Write as _;

use serde_json::Value;

/// The longest symbol a trade may carry: symbols are tickers, and the key of
/// every record downstream.
pub const MAX_SYMBOL_BYTES: usize = 64;

/// The longest trade id or venue kept (a provider's ids are short).
pub const MAX_ID_BYTES: usize = 128;

/// Conditions kept per trade (codes are a few characters each).
pub const MAX_CONDITIONS: usize = 16;

/// One trade, normalized. Prices and sizes keep the provider's own decimal
/// text (Coinbase and Binance send strings), so nothing is rounded on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    /// The ticker, as the provider names it (the Kafka key).
    pub symbol: String,
    /// The price, as a JSON number's text.
    pub price: String,
    /// The size, as a JSON number's text.
    pub size: String,
    /// Event time, epoch ms UTC.
    pub ts: i64,
    /// The provider's trade id (or sequence), for duplicates across a reconnect.
    pub id: Option<String>,
    /// Where it traded (exchange code), if the provider says.
    pub venue: Option<String>,
    /// The provider's name.
    pub provider: &'static str,
    /// Trade condition codes, if the provider gives them.
    pub conditions: Vec<String>,
    /// A number that grows by one per trade of this symbol (Coinbase and
    /// Binance trade ids), for counting gaps.
    pub sequence: Option<i64>,
}

impl Trade {
    /// The record's value: one JSON object.
    pub fn to_json(&self) -> Vec<u8> {
        let mut s = String::with_capacity(96);
        s.push_str("{\"symbol\":");
        s.push_str(&json_string(&self.symbol));
        let _ = write!(
            s,
            ",\"price\":{},\"size\":{},\"ts\":{}",
            self.price, self.size, self.ts
        );
        if let Some(id) = &self.id {
            s.push_str(",\"id\":");
            s.push_str(&json_string(id));
        }
        if let Some(venue) = &self.venue {
            s.push_str(",\"venue\":");
            s.push_str(&json_string(venue));
        }
        let _ = write!(s, ",\"provider\":\"{}\"", self.provider);
        if !self.conditions.is_empty() {
            s.push_str(",\"conditions\":[");
            for (i, c) in self.conditions.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(&json_string(c));
            }
            s.push(']');
        }
        s.push('}');
        s.into_bytes()
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// Why a field of a provider's trade cannot be taken.
pub type FieldError = String;

/// A symbol: non-empty text of at most [`MAX_SYMBOL_BYTES`] without control characters.
pub fn symbol(v: Option<&Value>, field: &str) -> Result<String, FieldError> {
    let s = v
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{field}` (the symbol) is missing or not text"))?;
    if s.is_empty() || s.len() > MAX_SYMBOL_BYTES || s.chars().any(char::is_control) {
        return Err(format!(
            "`{field}` is not a symbol (1 to {MAX_SYMBOL_BYTES} bytes, no control characters; {} bytes)",
            s.len()
        ));
    }
    Ok(s.to_string())
}

/// A positive, finite decimal from a JSON number or a decimal string, as
/// JSON number text (a string's own digits are kept).
pub fn positive(v: Option<&Value>, field: &str) -> Result<String, FieldError> {
    non_negative(v, field).and_then(|text| {
        if text.parse::<f64>().is_ok_and(|x| x > 0.0) {
            Ok(text)
        } else {
            Err(format!("`{field}` must be positive, not {text}"))
        }
    })
}

/// A finite decimal at least 0, as for [`positive`].
pub fn non_negative(v: Option<&Value>, field: &str) -> Result<String, FieldError> {
    let text = match v {
        Some(Value::Number(n)) => n.to_string(),
        // Only the JSON number grammar is kept as it is (no "0x1", " 1", "NaN", "+1").
        Some(Value::String(s)) if s.len() <= 64 && serde_json::from_str::<f64>(s).is_ok() => {
            s.clone()
        }
        Some(Value::String(s)) => {
            return Err(format!(
                "`{field}` is not a decimal: {}",
                crate::decode::excerpt(&json_string(s), 40)
            ))
        }
        Some(_) => return Err(format!("`{field}` is not a number")),
        None => return Err(format!("`{field}` is missing")),
    };
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(text),
        Ok(_) => Err(format!("`{field}` is out of range: {text}")),
        Err(_) => Err(format!("`{field}` is not a decimal: {text}")),
    }
}

/// Epoch ms from a JSON integer of ms, within the years chrono can hold.
pub fn epoch_ms(v: Option<&Value>, field: &str) -> Result<i64, FieldError> {
    let ms = v
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("`{field}` (epoch ms) is missing or not an integer"))?;
    checked_ms(ms, field)
}

/// Epoch ms from RFC 3339 text with up to ns (`2021-02-22T15:51:44.208123456Z`),
/// rounded down to the ms.
pub fn rfc3339_ms(v: Option<&Value>, field: &str) -> Result<i64, FieldError> {
    let s = v
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{field}` (RFC 3339 time) is missing or not text"))?;
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| {
        format!(
            "`{field}` is not an RFC 3339 time ({e}): {}",
            crate::decode::excerpt(s, 40)
        )
    })?;
    checked_ms(t.timestamp_millis(), field)
}

fn checked_ms(ms: i64, field: &str) -> Result<i64, FieldError> {
    // The engine reads `ts` as a timestamp: keep to what it (and Parquet) can hold.
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) if (1970..=9999).contains(&chrono::Datelike::year(&t)) => Ok(ms),
        _ => Err(format!("`{field}` is out of range: {ms} ms")),
    }
}

/// Short optional text (an id or venue): a string or a number, at most [`MAX_ID_BYTES`].
pub fn short_text(v: Option<&Value>, field: &str) -> Result<Option<String>, FieldError> {
    let text = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(format!("`{field}` is not text or a number")),
    };
    if text.len() > MAX_ID_BYTES {
        return Err(format!(
            "`{field}` is longer than {MAX_ID_BYTES} bytes ({})",
            text.len()
        ));
    }
    Ok(Some(text))
}

/// Condition codes: an array of short strings or numbers (at most [`MAX_CONDITIONS`]).
pub fn conditions(v: Option<&Value>, field: &str) -> Result<Vec<String>, FieldError> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() <= MAX_CONDITIONS => items,
        Some(_) => {
            return Err(format!(
                "`{field}` is not an array of at most {MAX_CONDITIONS} codes"
            ))
        }
    };
    items
        .iter()
        .map(|c| short_text(Some(c), field).map(Option::unwrap_or_default))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimal_strings_keep_their_digits() {
        assert_eq!(
            positive(Some(&json!("400.23000001")), "p").unwrap(),
            "400.23000001"
        );
        assert_eq!(positive(Some(&json!(189.1)), "p").unwrap(), "189.1");
        for bad in [
            json!("0x10"),
            json!(" 1"),
            json!("NaN"),
            json!("1e400"),
            json!(-1),
            json!("0"),
        ] {
            assert!(positive(Some(&bad), "p").is_err(), "{bad}");
        }
        assert!(positive(Some(&json!(1e308 * 10.0)), "p").is_err());
    }

    #[test]
    fn times_in_three_units() {
        assert_eq!(
            epoch_ms(Some(&json!(1575526691134i64)), "t").unwrap(),
            1575526691134
        );
        assert_eq!(
            rfc3339_ms(Some(&json!("2021-02-22T15:51:44.208999999Z")), "t").unwrap(),
            1614009104208
        );
        assert!(epoch_ms(Some(&json!(i64::MAX)), "t").is_err());
        assert!(epoch_ms(Some(&json!(-1)), "t").is_err());
        assert!(epoch_ms(Some(&json!(1.5)), "t").is_err());
    }

    #[test]
    fn json_escapes_text_and_keeps_numbers() {
        let t = Trade {
            symbol: "A\"B".into(),
            price: "1.50".into(),
            size: "3".into(),
            ts: 5,
            id: Some("7".into()),
            venue: None,
            provider: "test",
            conditions: vec!["@".into()],
            sequence: None,
        };
        let v: Value = serde_json::from_slice(&t.to_json()).unwrap();
        assert_eq!(
            v,
            json!({"symbol":"A\"B","price":1.50,"size":3,"ts":5,"id":"7","provider":"test","conditions":["@"]})
        );
        assert!(String::from_utf8(t.to_json())
            .unwrap()
            .contains("\"price\":1.50"));
    }
}
