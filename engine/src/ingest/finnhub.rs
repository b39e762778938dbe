//! Finnhub (`wss://ws.finnhub.io?token=KEY`): one subscribe frame per
//! symbol; trades arrive as `{"type":"trade","data":[{"s","p","v","t","c"}]}`
//! with `t` in epoch ms; `{"type":"ping"}` while idle. A `v` of 0 is a
//! price update, not a trade. Finnhub gives no trade id, so duplicates
//! cannot be told from two equal trades and none are dropped.

use serde_json::{json, Value};

use super::adapter::{parse_frame, text, trade_or_bad, Adapter, Event};
use super::trade::{self, Trade};

/// The provider's name in records and options.
pub const NAME: &str = "finnhub";

/// The endpoint; the token is added as the `token` query parameter.
pub const URL: &str = "wss://ws.finnhub.io";

/// Finnhub's protocol.
pub struct Finnhub {
    symbols: Vec<String>,
}

impl Finnhub {
    /// Subscribes to `symbols`.
    pub fn new(symbols: Vec<String>) -> Self {
        Self { symbols }
    }
}

impl Adapter for Finnhub {
    fn on_connect(&mut self) -> Vec<String> {
        (self.symbols.iter())
            .map(|s| json!({"type": "subscribe", "symbol": s}).to_string())
            .collect()
    }

    fn on_text(&mut self, frame: &str, out: &mut Vec<Event>) {
        let Some(v) = parse_frame(frame, out) else {
            return;
        };
        match text(&v, "type") {
            Some("trade") => match v.get("data").and_then(Value::as_array) {
                Some(items) => {
                    for item in items {
                        if item.get("v").and_then(Value::as_f64) == Some(0.0) {
                            out.push(Event::Skipped("price update (v = 0)"));
                        } else {
                            out.push(trade_or_bad(item, items.len() > 1, to_trade));
                        }
                    }
                }
                None => out.push(Event::Bad {
                    reason: "a trade message without a `data` array".into(),
                    raw: None,
                }),
            },
            Some("ping") => out.push(Event::KeepAlive),
            Some("error") => out.push(Event::Fatal(format!(
                "Finnhub refused: {}",
                text(&v, "msg").unwrap_or("(no message)")
            ))),
            Some(_) => out.push(Event::Skipped("a message of another type")),
            None => out.push(Event::Bad {
                reason: "a message without a `type`".into(),
                raw: None,
            }),
        }
    }
}

fn to_trade(item: &Value) -> Result<Trade, String> {
    Ok(Trade {
        symbol: trade::symbol(item.get("s"), "s")?,
        price: trade::positive(item.get("p"), "p")?,
        size: trade::positive(item.get("v"), "v")?,
        ts: trade::epoch_ms(item.get("t"), "t")?,
        id: None,
        venue: None,
        provider: NAME,
        conditions: trade::conditions(item.get("c"), "c")?,
        sequence: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trades_price_updates_and_pings() {
        let mut f = Finnhub::new(vec!["AAPL".into()]);
        assert_eq!(f.on_connect(), [r#"{"symbol":"AAPL","type":"subscribe"}"#]);
        let mut out = Vec::new();
        f.on_text(
            r#"{"type":"trade","data":[{"s":"AAPL","p":189.1,"v":100,"t":1575526691134,"c":["1"]},{"s":"AAPL","p":189.2,"v":0,"t":1575526691135}]}"#,
            &mut out,
        );
        f.on_text(r#"{"type":"ping"}"#, &mut out);
        let Event::Trade(t) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(
            (t.price.as_str(), t.size.as_str(), t.ts),
            ("189.1", "100", 1575526691134)
        );
        assert_eq!(
            out[1..],
            [Event::Skipped("price update (v = 0)"), Event::KeepAlive]
        );
    }

    #[test]
    fn errors_end_the_session() {
        let mut out = Vec::new();
        Finnhub::new(vec![]).on_text(
            r#"{"type":"error","msg":"Subscribing to too many symbols"}"#,
            &mut out,
        );
        assert!(matches!(&out[0], Event::Fatal(m) if m.contains("too many symbols")));
    }
}
