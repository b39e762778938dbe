//! Polygon (`wss://socket.polygon.io/stocks`): frames are arrays of
//! messages. After the `connected` status we authenticate with the key,
//! after `auth_success` subscribe to `T.<symbol>`. A trade is
//! `{"ev":"T","sym","x","i","p","s","c","t","q"}` with `t` in epoch ms; `q`
//! increases per symbol but with gaps by design, so it is not counted as one.

use serde_json::{json, Value};

use super::adapter::{parse_frame, text, trade_or_bad, Adapter, Event};
use super::trade::{self, Trade};

/// The provider's name in records and options.
pub const NAME: &str = "polygon";

/// The endpoint (real-time stocks).
pub const URL: &str = "wss://socket.polygon.io/stocks";

/// Polygon's protocol.
pub struct Polygon {
    symbols: Vec<String>,
    key: String,
}

impl Polygon {
    /// Subscribes to the trades of `symbols` with `key`.
    pub fn new(symbols: Vec<String>, key: String) -> Self {
        Self { symbols, key }
    }

    fn on_status(&self, m: &Value, out: &mut Vec<Event>) {
        let message = text(m, "message").unwrap_or("(no message)");
        match text(m, "status") {
            Some("connected") => out.push(Event::Send(
                json!({"action": "auth", "params": self.key}).to_string(),
            )),
            Some("auth_success") => {
                let params: Vec<String> = self.symbols.iter().map(|s| format!("T.{s}")).collect();
                out.push(Event::Acknowledged("authenticated".into()));
                out.push(Event::Send(
                    json!({"action": "subscribe", "params": params.join(",")}).to_string(),
                ));
            }
            Some("auth_failed") => {
                out.push(Event::Fatal(format!("Polygon refused the key: {message}")))
            }
            // Another connection took over the key: it may end; try again later.
            Some("max_connections") => out.push(Event::Retry(format!("Polygon: {message}"))),
            Some("error") => out.push(Event::Fatal(format!("Polygon: {message}"))),
            _ => out.push(Event::Acknowledged(message.to_string())),
        }
    }
}

impl Adapter for Polygon {
    fn on_connect(&mut self) -> Vec<String> {
        Vec::new()
    }

    fn on_text(&mut self, frame: &str, out: &mut Vec<Event>) {
        let Some(v) = parse_frame(frame, out) else {
            return;
        };
        let Some(messages) = v.as_array() else {
            return out.push(Event::Bad {
                reason: "not an array of messages".into(),
                raw: None,
            });
        };
        for m in messages {
            match text(m, "ev") {
                Some("T") => out.push(trade_or_bad(m, messages.len() > 1, to_trade)),
                Some("status") => self.on_status(m, out),
                Some(_) => out.push(Event::Skipped("a message of another type")),
                None => out.push(Event::Bad {
                    reason: "a message without `ev`".into(),
                    raw: (messages.len() > 1).then(|| m.to_string()),
                }),
            }
        }
    }
}

fn to_trade(m: &Value) -> Result<Trade, String> {
    Ok(Trade {
        symbol: trade::symbol(m.get("sym"), "sym")?,
        price: trade::positive(m.get("p"), "p")?,
        size: trade::positive(m.get("s"), "s")?,
        ts: trade::epoch_ms(m.get("t"), "t")?,
        // `q` is unique per symbol; the trade id `i` only per venue.
        id: trade::short_text(m.get("q"), "q")?,
        venue: trade::short_text(m.get("x"), "x")?,
        provider: NAME,
        conditions: trade::conditions(m.get("c"), "c")?,
        sequence: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_subscribe_trades() {
        let mut p = Polygon::new(vec!["MSFT".into()], "KEY".into());
        let mut out = Vec::new();
        p.on_text(
            r#"[{"ev":"status","status":"connected","message":"Connected Successfully"}]"#,
            &mut out,
        );
        p.on_text(
            r#"[{"ev":"status","status":"auth_success","message":"authenticated"}]"#,
            &mut out,
        );
        p.on_text(
            r#"[{"ev":"T","sym":"MSFT","x":4,"i":"12345","z":3,"p":114.125,"s":100,"c":[0,12],"t":1536036818784,"q":3681328}]"#,
            &mut out,
        );
        assert_eq!(
            out[0],
            Event::Send(r#"{"action":"auth","params":"KEY"}"#.into())
        );
        assert_eq!(
            out[2],
            Event::Send(r#"{"action":"subscribe","params":"T.MSFT"}"#.into())
        );
        let Event::Trade(t) = &out[3] else {
            panic!("{out:?}")
        };
        assert_eq!(
            (t.id.as_deref(), t.venue.as_deref(), t.ts),
            (Some("3681328"), Some("4"), 1536036818784)
        );
        assert_eq!(t.conditions, ["0", "12"]);
    }
}
