//! Alpaca market data v2 (`wss://stream.data.alpaca.markets/v2/{iex,sip}`,
//! the 24/7 test stream `v2/test`): every frame is an array of messages.
//! The server greets with `connected`; we answer with the keys, and once
//! `authenticated`, subscribe to the symbols' trades. Trades are
//! `{"T":"t","S","i","x","p","s","t","c","z"}` with `t` in RFC 3339 (up to ns).

use serde_json::{json, Value};

use super::adapter::{parse_frame, text, trade_or_bad, Adapter, Event};
use super::trade::{self, Trade};

/// The provider's name in records and options.
pub const NAME: &str = "alpaca";

/// The endpoint (the IEX feed, which every account has).
pub const URL: &str = "wss://stream.data.alpaca.markets/v2/iex";

/// Alpaca's protocol.
pub struct Alpaca {
    symbols: Vec<String>,
    key: String,
    secret: String,
}

impl Alpaca {
    /// Subscribes to `symbols` with the key id and secret.
    pub fn new(symbols: Vec<String>, key: String, secret: String) -> Self {
        Self {
            symbols,
            key,
            secret,
        }
    }

    fn on_message(&mut self, m: &Value, several: bool, out: &mut Vec<Event>) {
        match text(m, "T") {
            Some("t") => out.push(trade_or_bad(m, several, to_trade)),
            Some("success") => match text(m, "msg") {
                Some("connected") => out.push(Event::Send(
                    json!({"action": "auth", "key": self.key, "secret": self.secret}).to_string(),
                )),
                Some("authenticated") => {
                    out.push(Event::Acknowledged("authenticated".into()));
                    out.push(Event::Send(
                        json!({"action": "subscribe", "trades": self.symbols}).to_string(),
                    ));
                }
                _ => out.push(Event::KeepAlive),
            },
            Some("subscription") => out.push(Event::Acknowledged(format!(
                "subscribed to trades of {}",
                m.get("trades").map_or("none".into(), Value::to_string)
            ))),
            Some("error") => out.push(error(m)),
            Some(_) => out.push(Event::Skipped("a message of another type")),
            None => out.push(Event::Bad {
                reason: "a message without `T`".into(),
                raw: several.then(|| m.to_string()),
            }),
        }
    }
}

impl Adapter for Alpaca {
    fn on_connect(&mut self) -> Vec<String> {
        // The keys go once the server says `connected`.
        Vec::new()
    }

    fn on_text(&mut self, frame: &str, out: &mut Vec<Event>) {
        let Some(v) = parse_frame(frame, out) else {
            return;
        };
        match v.as_array() {
            Some(messages) => {
                for m in messages {
                    self.on_message(m, messages.len() > 1, out);
                }
            }
            None => out.push(Event::Bad {
                reason: "not an array of messages".into(),
                raw: None,
            }),
        }
    }
}

/// Alpaca's error codes, as its documentation gives them: some mean "try
/// again later", the rest need the user.
fn error(m: &Value) -> Event {
    let code = m.get("code").and_then(Value::as_i64).unwrap_or(0);
    let message = format!(
        "Alpaca error {code}: {}",
        text(m, "msg").unwrap_or("(no message)")
    );
    match code {
        // auth timeout, connection limit exceeded, slow client, internal error
        404 | 406 | 407 | 500 => Event::Retry(message),
        // 400 invalid syntax, 401 not authenticated, 402 auth failed, 403 already
        // authenticated, 405 symbol limit, 409 insufficient subscription
        _ => Event::Fatal(message),
    }
}

fn to_trade(m: &Value) -> Result<Trade, String> {
    Ok(Trade {
        symbol: trade::symbol(m.get("S"), "S")?,
        price: trade::positive(m.get("p"), "p")?,
        size: trade::positive(m.get("s"), "s")?,
        ts: trade::rfc3339_ms(m.get("t"), "t")?,
        id: trade::short_text(m.get("i"), "i")?,
        venue: trade::short_text(m.get("x"), "x")?,
        provider: NAME,
        conditions: trade::conditions(m.get("c"), "c")?,
        sequence: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(a: &mut Alpaca, frame: &str) -> Vec<Event> {
        let mut out = Vec::new();
        a.on_text(frame, &mut out);
        out
    }

    #[test]
    fn greeting_auth_subscribe_trades() {
        let mut a = Alpaca::new(vec!["AAPL".into()], "K".into(), "S".into());
        assert!(a.on_connect().is_empty());
        let auth = events(&mut a, r#"[{"T":"success","msg":"connected"}]"#);
        assert_eq!(
            auth,
            [Event::Send(
                r#"{"action":"auth","key":"K","secret":"S"}"#.into()
            )]
        );
        let sub = events(&mut a, r#"[{"T":"success","msg":"authenticated"}]"#);
        assert_eq!(
            sub[1],
            Event::Send(r#"{"action":"subscribe","trades":["AAPL"]}"#.into())
        );
        let t = events(
            &mut a,
            r#"[{"T":"t","S":"AAPL","i":96921,"x":"D","p":126.55,"s":1,"t":"2021-02-22T15:51:44.208123456Z","c":["@","I"],"z":"C"}]"#,
        );
        let Event::Trade(t) = &t[0] else {
            panic!("{t:?}")
        };
        assert_eq!(t.ts, 1614009104208);
        assert_eq!(t.id.as_deref(), Some("96921"));
        assert_eq!(t.venue.as_deref(), Some("D"));
    }

    #[test]
    fn errors_retry_or_stop_as_alpaca_means() {
        let mut a = Alpaca::new(vec![], "K".into(), "S".into());
        let e = events(
            &mut a,
            r#"[{"T":"error","code":406,"msg":"connection limit exceeded"}]"#,
        );
        assert!(matches!(&e[0], Event::Retry(m) if m.contains("406")));
        let e = events(&mut a, r#"[{"T":"error","code":402,"msg":"auth failed"}]"#);
        assert!(matches!(&e[0], Event::Fatal(m) if m.contains("auth failed")));
    }
}
