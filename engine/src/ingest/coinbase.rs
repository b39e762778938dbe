//! Coinbase Exchange (`wss://ws-feed.exchange.coinbase.com`, no key): one
//! subscribe frame for the `matches` and `heartbeat` channels. A match is
//! `{"type":"match","trade_id","sequence","time","product_id","size","price","side"}`
//! with decimal strings and µs times. `trade_id` grows by one per trade of a
//! product, so it tells duplicates and gaps; each heartbeat names the
//! product's last trade id, so a gap shows even when no trade follows it.

use serde_json::{json, Value};

use super::adapter::{parse_frame, text, trade_or_bad, Adapter, Event};
use super::trade::{self, Trade};

/// The provider's name in records and options.
pub const NAME: &str = "coinbase";

/// The endpoint.
pub const URL: &str = "wss://ws-feed.exchange.coinbase.com";

/// Coinbase's protocol.
pub struct Coinbase {
    products: Vec<String>,
    connections: u64,
}

impl Coinbase {
    /// Subscribes to `products` (e.g. `BTC-USD`).
    pub fn new(products: Vec<String>) -> Self {
        Self {
            products,
            connections: 0,
        }
    }
}

impl Adapter for Coinbase {
    fn on_connect(&mut self) -> Vec<String> {
        self.connections += 1;
        vec![json!({
            "type": "subscribe",
            "product_ids": self.products,
            "channels": ["matches", "heartbeat"],
        })
        .to_string()]
    }

    fn on_text(&mut self, frame: &str, out: &mut Vec<Event>) {
        let Some(v) = parse_frame(frame, out) else {
            return;
        };
        match text(&v, "type") {
            Some("match") => out.push(trade_or_bad(&v, false, to_trade)),
            // The last trade before the subscription: after a reconnect it may be
            // one we missed (a duplicate is dropped by its id); on the first
            // connection it predates this run, which may have written it before.
            Some("last_match") if self.connections > 1 => {
                out.push(trade_or_bad(&v, false, to_trade))
            }
            Some("last_match") => out.push(Event::Skipped("the last trade before this run")),
            Some("heartbeat") => match (
                trade::symbol(v.get("product_id"), "product_id"),
                v.get("last_trade_id").and_then(Value::as_i64),
            ) {
                (Ok(symbol), Some(sequence)) => out.push(Event::LastSequence { symbol, sequence }),
                _ => out.push(Event::KeepAlive),
            },
            Some("subscriptions") => out.push(Event::Acknowledged(format!(
                "subscribed: {}",
                v.get("channels").map_or("none".into(), Value::to_string)
            ))),
            Some("error") => out.push(Event::Fatal(format!(
                "Coinbase refused: {} {}",
                text(&v, "message").unwrap_or("(no message)"),
                text(&v, "reason").unwrap_or("")
            ))),
            Some(_) => out.push(Event::Skipped("a message of another type")),
            None => out.push(Event::Bad {
                reason: "a message without a `type`".into(),
                raw: None,
            }),
        }
    }
}

fn to_trade(v: &Value) -> Result<Trade, String> {
    let id = v
        .get("trade_id")
        .and_then(Value::as_i64)
        .ok_or("`trade_id` is missing or not an integer")?;
    Ok(Trade {
        symbol: trade::symbol(v.get("product_id"), "product_id")?,
        price: trade::positive(v.get("price"), "price")?,
        size: trade::positive(v.get("size"), "size")?,
        ts: trade::rfc3339_ms(v.get("time"), "time")?,
        id: Some(id.to_string()),
        venue: None,
        provider: NAME,
        conditions: trade::short_text(v.get("side"), "side")?
            .into_iter()
            .collect(),
        sequence: Some(id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_heartbeats_and_the_last_match() {
        let mut c = Coinbase::new(vec!["BTC-USD".into()]);
        let sub = c.on_connect();
        assert!(
            sub[0].contains(r#""channels":["matches","heartbeat"]"#),
            "{sub:?}"
        );
        let mut out = Vec::new();
        let m = r#"{"type":"match","trade_id":10,"sequence":50,"time":"2014-11-07T08:19:27.028459Z","product_id":"BTC-USD","size":"5.23512","price":"400.23","side":"sell"}"#;
        c.on_text(&m.replace("\"match\"", "\"last_match\""), &mut out);
        c.on_text(m, &mut out);
        c.on_text(
            r#"{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2014-11-07T08:19:28.464459Z"}"#,
            &mut out,
        );
        assert_eq!(out[0], Event::Skipped("the last trade before this run"));
        let Event::Trade(t) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(
            (t.price.as_str(), t.size.as_str(), t.ts),
            ("400.23", "5.23512", 1415348367028)
        );
        assert_eq!(t.sequence, Some(10));
        assert_eq!(
            out[2],
            Event::LastSequence {
                symbol: "BTC-USD".into(),
                sequence: 20
            }
        );
        c.on_connect();
        out.clear();
        c.on_text(&m.replace("\"match\"", "\"last_match\""), &mut out);
        assert!(
            matches!(out[0], Event::Trade(_)),
            "after a reconnect: {out:?}"
        );
    }
}
