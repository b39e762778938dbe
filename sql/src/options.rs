//! Typed connector options from `WITH (key = 'value', ...)`.
//!
//! Every key must be read by the connector that owns the table; a key left
//! unread is an error listing the known ones, so a typo (`topik`) never
//! silently falls back to a default.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{line_err, LineError};

/// The raw `WITH (...)` options of one table, with the line of each. Its
/// `Debug` hides the values of options that may hold secrets.
#[derive(Clone, Default, PartialEq)]
pub struct Options {
    entries: BTreeMap<String, (String, usize)>,
    read: std::collections::BTreeSet<String>,
}

/// Whether option `key` may hold a secret: every pass-through
/// `properties.*` (a mistyped `sasl.pasword` is a password too) and any key
/// naming a password, secret, token or key.
pub fn may_be_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.starts_with("properties.")
        || ["pass", "secret", "token", "key", "credential", "auth"]
            .iter()
            .any(|w| key.contains(w))
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for (key, (value, line)) in &self.entries {
            let shown = if may_be_secret(key) {
                "***"
            } else {
                value.as_str()
            };
            map.entry(key, &format_args!("{shown:?} (line {line})"));
        }
        map.finish()
    }
}

impl Options {
    /// Adds an option; a repeated key is an error.
    pub(crate) fn insert(
        &mut self,
        key: String,
        value: String,
        line: usize,
    ) -> Result<(), LineError> {
        if let Some((_, first)) = self.entries.get(&key) {
            line_err!(
                line,
                "option `{key}` is given twice (first on line {first})"
            );
        }
        self.entries.insert(key, (value, line));
        Ok(())
    }

    /// Options read from somewhere other than a job file's `WITH (...)` (a
    /// command line, a client properties file): `(key, value, line)` each,
    /// where `line` is the entry's line in its file (0 for none). A repeated
    /// key is an error.
    pub fn from_entries(
        entries: impl IntoIterator<Item = (String, String, usize)>,
    ) -> Result<Self, LineError> {
        let mut options = Self::default();
        for (key, value, line) in entries {
            options.insert(key, value, line)?;
        }
        Ok(options)
    }

    /// Every option but those that may hold a secret, as `(key, value)` in
    /// key order: what identifies a table's configuration (e.g. in a job's
    /// fingerprint) without carrying a secret anywhere.
    pub fn public_entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .filter(|(k, _)| !may_be_secret(k))
            .map(|(k, (v, _))| (k.as_str(), v.as_str()))
    }

    /// The line of option `key`, or `default` when absent.
    pub fn line_of(&self, key: &str, default: usize) -> usize {
        self.entries.get(key).map(|(_, l)| *l).unwrap_or(default)
    }

    /// The value of `key`, marking it as known.
    pub fn get(&mut self, key: &str) -> Option<String> {
        self.read.insert(key.to_string());
        self.entries.get(key).map(|(v, _)| v.clone())
    }

    /// The value of a required key.
    pub fn required(&mut self, key: &str, table_line: usize) -> Result<String, LineError> {
        match self.get(key) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => line_err!(table_line, "option `{key}` is required"),
        }
    }

    /// A value that must be one of `allowed`; the first is the default.
    pub fn one_of(&mut self, key: &str, allowed: &[&str]) -> Result<String, LineError> {
        let Some(v) = self.get(key) else {
            return Ok(allowed[0].to_string());
        };
        if !allowed.contains(&v.as_str()) {
            line_err!(
                self.line_of(key, 0),
                "option `{key}` = {} is not one of {}",
                shown(key, &v),
                quote_list(allowed)
            );
        }
        Ok(v)
    }

    /// A duration such as `500ms`, `30s`, `5min`, `1h`, at most [`MAX_DURATION`].
    pub fn duration(&mut self, key: &str, default: Duration) -> Result<Duration, LineError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse_duration(&v).ok_or_else(|| {
                (self.line_of(key, 0), format!("option `{key}` = {} is not a duration of at most 365 days (e.g. '500ms', '30s', '5min', '1h')", shown(key, &v)))
            }),
        }
    }

    /// A size such as `128MB`, `64KiB`, `1048576`.
    pub fn bytes(&mut self, key: &str, default: u64) -> Result<u64, LineError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse_bytes(&v).ok_or_else(|| {
                (
                    self.line_of(key, 0),
                    format!(
                        "option `{key}` = {} is not a size (e.g. '128MB', '1MiB', '65536')",
                        shown(key, &v)
                    ),
                )
            }),
        }
    }

    /// A positive integer.
    pub fn count(&mut self, key: &str, default: usize) -> Result<usize, LineError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => line_err!(
                    self.line_of(key, 0),
                    "option `{key}` = {} must be a positive integer",
                    shown(key, &v)
                ),
            },
        }
    }

    /// All options whose key starts with `prefix`, with the prefix removed
    /// (for pass-through settings such as `properties.*`).
    pub fn with_prefix(&mut self, prefix: &str) -> BTreeMap<String, String> {
        let keys: Vec<String> = self
            .entries
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.into_iter()
            .map(|k| {
                let v = self.get(&k).unwrap_or_default();
                (k[prefix.len()..].to_string(), v)
            })
            .collect()
    }

    /// Fails on the first key no connector read.
    pub fn reject_unknown(&self, connector: &str) -> Result<(), LineError> {
        if let Some((key, (_, line))) = self.entries.iter().find(|(k, _)| !self.read.contains(*k)) {
            let known: Vec<&str> = self.read.iter().map(String::as_str).collect();
            line_err!(
                *line,
                "unknown option `{key}` for connector '{connector}' (known: {})",
                known.join(", ")
            );
        }
        Ok(())
    }
}

/// A value quoted for an error message, or `'***'` when its key may hold a secret.
fn shown(key: &str, value: &str) -> String {
    if may_be_secret(key) {
        "'***'".into()
    } else {
        format!("'{value}'")
    }
}

/// `'a', 'b', 'c'`: allowed values, as error messages list them.
pub fn quote_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The longest duration an option or flag takes: longer ones are typos, and
/// near `u64::MAX` seconds they overflow every clock they are added to.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// Parses `250ms`, `30s`, `5min`, `2m`, `1h`, `1d`; a bare number is seconds.
/// `None` for anything else, and for durations over [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim().to_ascii_lowercase().as_str() {
        "ms" => n / 1000.0,
        "" | "s" | "sec" | "second" | "seconds" => n,
        "m" | "min" | "minute" | "minutes" => n * 60.0,
        "h" | "hour" | "hours" => n * 3600.0,
        "d" | "day" | "days" => n * 86400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| *d <= MAX_DURATION)
}

/// Parses `128MB`, `128MiB`, `64k`, `1048576` into bytes (`MB` = `MiB`, as
/// Kafka and Parquet users mean).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult).filter(|b| *b > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5min"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("5 parsecs"), None);
        // Overflowing or absurd durations are refused, never a panic.
        assert_eq!(parse_duration("99999999999999999999"), None);
        assert_eq!(parse_duration("1e400s"), None);
        assert_eq!(parse_duration("366d"), None);
        assert_eq!(parse_duration("365d"), Some(MAX_DURATION));
        assert_eq!(parse_bytes("128MB"), Some(128 << 20));
        assert_eq!(parse_bytes("0"), None);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_line() {
        let mut o = Options::default();
        o.insert("topic".into(), "t".into(), 3).unwrap();
        o.insert("topik".into(), "t".into(), 4).unwrap();
        assert_eq!(o.get("topic").as_deref(), Some("t"));
        let (line, msg) = o.reject_unknown("kafka").unwrap_err();
        assert_eq!(line, 4);
        assert!(
            msg.contains("unknown option `topik`") && msg.contains("known: topic"),
            "{msg}"
        );
    }
}
