//! What one provider's protocol is to the websocket client: frames to send
//! on connect, and what each text frame it receives holds.

use serde_json::Value;

use super::trade::Trade;

/// What a frame held, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A trade.
    Trade(Trade),
    /// A frame to send now (authentication after the greeting, the subscription after it).
    Send(String),
    /// The provider acknowledged the subscription (or authentication): logged.
    Acknowledged(String),
    /// A keep-alive or status frame: nothing to do, but the connection lives.
    KeepAlive,
    /// A heartbeat naming the last trade id (`sequence`) of `symbol`: trades
    /// between the last one seen and it were missed.
    LastSequence {
        /// The product.
        symbol: String,
        /// Its last trade's sequence.
        sequence: i64,
    },
    /// Not a trade, on purpose (Finnhub's price updates with `v = 0`): counted.
    Skipped(&'static str),
    /// Not understood: `raw` (the element, or the whole frame if `None`) goes
    /// to the dead letters with `reason`.
    Bad {
        /// Why.
        reason: String,
        /// The offending element's JSON, when the frame held several.
        raw: Option<String>,
    },
    /// The provider refused something that may work later (Alpaca's
    /// connection limit): reconnect after the backoff.
    Retry(String),
    /// The provider refused what retrying cannot mend (keys, symbols): stop with this message.
    Fatal(String),
}

/// One provider's protocol, for one connection after another.
pub trait Adapter: Send + Sync {
    /// A new connection is open: frames to send before any is received
    /// (subscriptions, for providers that need no greeting first).
    fn on_connect(&mut self) -> Vec<String>;

    /// One text frame received; what it held goes to `out`.
    fn on_text(&mut self, frame: &str, out: &mut Vec<Event>);
}

/// The frame as JSON, or one [`Event::Bad`] saying why not.
pub fn parse_frame(frame: &str, out: &mut Vec<Event>) -> Option<Value> {
    match serde_json::from_str(frame) {
        Ok(v) => Some(v),
        Err(e) => {
            out.push(Event::Bad {
                reason: format!("not JSON: {e}"),
                raw: None,
            });
            None
        }
    }
}

/// A trade from `item`, or an [`Event::Bad`] with the item itself when
/// `make` says why it is not one.
pub fn trade_or_bad(
    item: &Value,
    several: bool,
    make: impl FnOnce(&Value) -> Result<Trade, String>,
) -> Event {
    match make(item) {
        Ok(t) => Event::Trade(t),
        Err(reason) => Event::Bad {
            reason: format!("not a trade: {reason}"),
            raw: several.then(|| item.to_string()),
        },
    }
}

/// The `field` of an object as text, for dispatch on a message's type.
pub fn text<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field).and_then(Value::as_str)
}
