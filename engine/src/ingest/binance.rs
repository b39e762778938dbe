//! Binance spot (`wss://stream.binance.com:9443/ws`, no key): one
//! `SUBSCRIBE` request for every `<symbol>@trade` stream. A trade is
//! `{"e":"trade","s","t","p","q","T","m"}` with decimal strings and `T` in
//! epoch ms; `t` grows by one per trade of a symbol. The server pings
//! (answered by the client) and drops every connection after 24 h (a reconnect).

use serde_json::{json, Value};

use super::adapter::{parse_frame, text, trade_or_bad, Adapter, Event};
use super::trade::{self, Trade};

/// The provider's name in records and options.
pub const NAME: &str = "binance";

/// The endpoint.
pub const URL: &str = "wss://stream.binance.com:9443/ws";

/// Binance's protocol.
pub struct Binance {
    symbols: Vec<String>,
}

impl Binance {
    /// Subscribes to the trades of `symbols` (e.g. `BTCUSDT`).
    pub fn new(symbols: Vec<String>) -> Self {
        Self { symbols }
    }
}

impl Adapter for Binance {
    fn on_connect(&mut self) -> Vec<String> {
        let streams: Vec<String> = (self.symbols.iter())
            .map(|s| format!("{}@trade", s.to_lowercase()))
            .collect();
        vec![json!({"method": "SUBSCRIBE", "params": streams, "id": 1}).to_string()]
    }

    fn on_text(&mut self, frame: &str, out: &mut Vec<Event>) {
        let Some(v) = parse_frame(frame, out) else {
            return;
        };
        // A combined stream (`/stream?streams=...`) wraps each event.
        let event = v
            .get("data")
            .filter(|_| v.get("stream").is_some())
            .unwrap_or(&v);
        match text(event, "e") {
            Some("trade") => out.push(trade_or_bad(event, false, to_trade)),
            Some(_) => out.push(Event::Skipped("a message of another type")),
            None if v.get("error").is_some() => out.push(Event::Fatal(format!(
                "Binance refused the subscription: {}",
                v["error"]
            ))),
            None if v.get("id").is_some() => out.push(Event::Acknowledged("subscribed".into())),
            None => out.push(Event::Bad {
                reason: "a message without an event type `e`".into(),
                raw: None,
            }),
        }
    }
}

fn to_trade(v: &Value) -> Result<Trade, String> {
    let id = v
        .get("t")
        .and_then(Value::as_i64)
        .ok_or("`t` (the trade id) is missing or not an integer")?;
    Ok(Trade {
        symbol: trade::symbol(v.get("s"), "s")?,
        price: trade::positive(v.get("p"), "p")?,
        size: trade::positive(v.get("q"), "q")?,
        ts: trade::epoch_ms(v.get("T"), "T")?,
        id: Some(id.to_string()),
        venue: None,
        provider: NAME,
        conditions: Vec::new(),
        sequence: Some(id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_ack_and_trades() {
        let mut b = Binance::new(vec!["BTCUSDT".into()]);
        assert_eq!(
            b.on_connect(),
            [r#"{"id":1,"method":"SUBSCRIBE","params":["btcusdt@trade"]}"#]
        );
        let mut out = Vec::new();
        b.on_text(r#"{"result":null,"id":1}"#, &mut out);
        b.on_text(
            r#"{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true}"#,
            &mut out,
        );
        assert_eq!(out[0], Event::Acknowledged("subscribed".into()));
        let Event::Trade(t) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(
            (t.price.as_str(), t.size.as_str(), t.sequence),
            ("0.001", "100", Some(12345))
        );
    }
}
