//! Event-time windows in `GROUP BY`: `TUMBLE(ts, size)`, `HOP(ts, slide, size)`,
//! `CUMULATE(ts, step, max)` and `SESSION(ts, gap[, max_length])`.
//!
//! The planner rewrites `GROUP BY key, TUMBLE(ts, INTERVAL '1' MINUTE)` into
//! `GROUP BY key, window_start, window_end` over the source extended with
//! those two columns; the engine's window operator fills them in (one row
//! per window a record falls in), so DataFusion plans an ordinary aggregate.

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, Query, SetExpr,
};
use serde::{Deserialize, Serialize};

mod cumulate;
mod fixed;
mod session;

pub use cumulate::{CumulateSpec, MAX_CUMULATE_STEPS};
pub use fixed::WindowSpec;
pub use session::{SessionSpec, DEFAULT_SESSION_MAX_MS};

/// Name of the added column holding a window's inclusive start.
pub const WINDOW_START: &str = "window_start";
/// Name of the added column holding a window's exclusive end.
pub const WINDOW_END: &str = "window_end";
/// Pseudo-column: whether a row is its window's final one (`true` from the
/// watermark's pass on, corrections included), or a provisional one.
pub const WINDOW_FINAL: &str = "window_final";
/// Pseudo-column: the row's revision of its window, 0, 1, 2, ...
pub const WINDOW_REVISION: &str = "window_revision";

/// The longest window size or slide: 366 days. Longer intervals are typos
/// (`'1e30' DAY`), and window arithmetic must not overflow.
pub const MAX_WINDOW_MS: i64 = 366 * 86_400_000;

/// The most windows a HOP may put one row into (size / slide): each row is
/// copied into every window it falls in, so a 1 ms slide over a day would
/// make 86.4 million copies of every trade.
pub const MAX_WINDOWS_PER_ROW: i64 = 1000;

/// `schema` followed by the two window columns (never null), and the two
/// revision pseudo-columns when the query selects them, as the window
/// operator produces and a windowed statement's plan reads.
pub fn with_window_columns(schema: &Schema, revision_columns: bool) -> Schema {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    for name in [WINDOW_START, WINDOW_END] {
        fields.push(Field::new(name, crate::ddl::timestamp_type(), false));
    }
    if revision_columns {
        fields.push(Field::new(WINDOW_FINAL, DataType::Boolean, false));
        fields.push(Field::new(WINDOW_REVISION, DataType::Int64, false));
    }
    Schema::new(fields)
}

/// An event-time window over a source's time column, by kind.
///
/// A new kind is a module here (its call's parsing and its arithmetic),
/// one arm in [`parse_call`], and its operator in the engine's
/// `operator::window` registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowKind {
    /// `TUMBLE` and `HOP`: fixed-length windows at fixed starts.
    Fixed(WindowSpec),
    /// `CUMULATE`: windows from a period's start, ending every step.
    Cumulate(CumulateSpec),
    /// `SESSION`: per group key, rows less than a gap apart.
    Session(SessionSpec),
}

impl WindowKind {
    /// The window as a job file would write it, over `time_column`.
    pub fn describe(&self, time_column: &str) -> String {
        match self {
            WindowKind::Fixed(w) if w.size_ms == w.slide_ms => {
                format!("TUMBLE({time_column}, {} ms)", w.size_ms)
            }
            WindowKind::Fixed(w) => format!(
                "HOP({time_column}, slide {} ms, size {} ms)",
                w.slide_ms, w.size_ms
            ),
            WindowKind::Cumulate(c) => format!(
                "CUMULATE({time_column}, step {} ms, max {} ms)",
                c.step_ms, c.max_ms
            ),
            WindowKind::Session(s) => format!(
                "SESSION({time_column}, gap {} ms, max length {} ms)",
                s.gap_ms, s.max_length_ms
            ),
        }
    }

    /// How long after the end of a time span of `span_ms` (a lake partition,
    /// aligned to the epoch) a window whose `window_start` is inside it can
    /// still be emitted: a span is complete only that long after its end.
    pub fn start_lag_ms(&self, span_ms: i64) -> i64 {
        // Window starts are multiples of `align`; the latest start inside a
        // span is gcd(span, align) before its end at the earliest.
        let latest_start_gap = |align: i64| gcd(span_ms, align);
        match self {
            WindowKind::Fixed(w) => w.size_ms - latest_start_gap(w.slide_ms),
            WindowKind::Cumulate(c) => c.max_ms - latest_start_gap(c.max_ms),
            // A session's rows lie in one span of `max_length` (aligned like
            // the partitions), so it ends at most `gap` after that span's end.
            WindowKind::Session(s) => {
                s.max_length_ms - latest_start_gap(s.max_length_ms) + s.gap_ms
            }
        }
    }

    /// The fixed window, for TUMBLE and HOP.
    pub fn fixed(&self) -> Option<WindowSpec> {
        match self {
            WindowKind::Fixed(w) => Some(*w),
            _ => None,
        }
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    match b {
        0 => a.abs(),
        _ => gcd(b, a % b),
    }
}

/// A window found in a query, with the column it is computed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundWindow {
    /// The event-time column named as the window function's first argument.
    pub time_column: String,
    /// The window's kind and shape.
    pub kind: WindowKind,
    /// The query selects `window_final` / `window_revision`: they are grouped
    /// by like the window's bounds, and the operator fills them in per row.
    pub revision_columns: bool,
}

/// Finds a window call in the top-level `GROUP BY` of `query` and
/// replaces it by `window_start, window_end`. Returns `None` for a query
/// without a window.
pub fn rewrite_window(query: &mut Query) -> Result<Option<FoundWindow>, String> {
    let mut found = None;
    let revision_columns = mentions(&query.to_string(), &[WINDOW_FINAL, WINDOW_REVISION]);
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Ok(None);
    };
    let GroupByExpr::Expressions(exprs, _) = &mut select.group_by else {
        return Ok(None);
    };
    let mut rewritten = Vec::with_capacity(exprs.len() + 3);
    for expr in exprs.drain(..) {
        match window_call(&expr)? {
            Some(mut w) => {
                w.revision_columns = revision_columns;
                if found.replace(w).is_some() {
                    return Err("only one window (TUMBLE, HOP, CUMULATE or SESSION) is allowed per GROUP BY".into());
                }
                rewritten.push(Expr::Identifier(Ident::new(WINDOW_START)));
                rewritten.push(Expr::Identifier(Ident::new(WINDOW_END)));
                if revision_columns {
                    rewritten.push(Expr::Identifier(Ident::new(WINDOW_FINAL)));
                    rewritten.push(Expr::Identifier(Ident::new(WINDOW_REVISION)));
                }
            }
            None => rewritten.push(expr),
        }
    }
    *exprs = rewritten;
    Ok(found)
}

/// The window kinds' calls: the kind a function name makes, parsed from its arguments.
fn parse_call(name: &str, args: &Args) -> Option<Result<WindowKind, String>> {
    Some(match name {
        "tumble" => fixed::tumble(args).map(WindowKind::Fixed),
        "hop" => fixed::hop(args).map(WindowKind::Fixed),
        "cumulate" => cumulate::cumulate(args).map(WindowKind::Cumulate),
        "session" => session::session(args).map(WindowKind::Session),
        _ => return None,
    })
}

/// A window call's name and arguments.
pub(crate) struct Args<'a> {
    name: String,
    args: Vec<&'a Expr>,
}

impl Args<'_> {
    fn len(&self) -> usize {
        self.args.len()
    }

    /// An error unless there are `n` arguments.
    fn expect(&self, n: usize, usage: &str) -> Result<(), String> {
        match self.args.len() == n {
            true => Ok(()),
            false => Err(format!("{} takes {n} arguments: {usage}", self.name)),
        }
    }

    /// Argument `i` as an interval in milliseconds.
    fn interval(&self, i: usize) -> Result<i64, String> {
        let e = self.args[i];
        interval_ms(&e.to_string()).ok_or_else(|| {
            format!("`{e}` is not a positive interval of whole milliseconds, at most 366 days (e.g. INTERVAL '1' MINUTE)")
        })
    }
}

fn window_call(expr: &Expr) -> Result<Option<FoundWindow>, String> {
    let Expr::Function(f) = expr else {
        return Ok(None);
    };
    let name = f.name.to_string().to_ascii_lowercase();
    let upper = name.to_uppercase();
    if parse_call(
        &name,
        &Args {
            name: upper.clone(),
            args: Vec::new(),
        },
    )
    .is_none()
    {
        return Ok(None);
    }
    let FunctionArguments::List(list) = &f.args else {
        return Err(format!("{upper} needs arguments"));
    };
    let args: Vec<&Expr> = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            other => Err(format!("unsupported argument `{other}` to {upper}")),
        })
        .collect::<Result<_, _>>()?;
    let Some(first) = args.first() else {
        return Err(format!(
            "{upper} needs the event-time column as its first argument"
        ));
    };
    let time_column = match first {
        Expr::Identifier(id) => normalize(id),
        Expr::CompoundIdentifier(ids) => {
            normalize(ids.last().expect("compound identifiers are never empty"))
        }
        other => {
            return Err(format!(
                "the first argument of {upper} must be a column, found `{other}`"
            ))
        }
    };
    let args = Args { name: upper, args };
    let kind = parse_call(&name, &args).expect("a window call")?;
    Ok(Some(FoundWindow {
        time_column,
        kind,
        revision_columns: false,
    }))
}

/// Whether `sql` has any of `names` as an (unquoted or quoted) identifier.
fn mentions(sql: &str, names: &[&str]) -> bool {
    use datafusion::sql::sqlparser::{
        dialect::GenericDialect, tokenizer::Token, tokenizer::Tokenizer,
    };
    Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map(|tokens| {
            tokens.iter().any(|t| {
                matches!(t, Token::Word(w) if names.iter().any(|n| w.value.eq_ignore_ascii_case(n)))
            })
        })
        .unwrap_or(false)
}

fn normalize(id: &Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_ascii_lowercase()
    }
}

/// Parses `INTERVAL '1' MINUTE`, `INTERVAL '90 seconds'`, `INTERVAL '1' HOUR`
/// into milliseconds.
pub fn interval_ms(sql: &str) -> Option<i64> {
    let rest = sql
        .trim()
        .strip_prefix("INTERVAL")
        .or_else(|| sql.trim().strip_prefix("interval"))?
        .trim();
    let rest = rest.strip_prefix('\'')?;
    let (quoted, unit) = rest.split_once('\'')?;
    let text = format!("{} {}", quoted.trim(), unit.trim());
    let mut parts = text.split_whitespace();
    let n: f64 = parts.next()?.parse().ok()?;
    let unit = parts.next()?.to_ascii_lowercase();
    if parts.next().is_some() {
        return None;
    }
    let ms = match unit.as_str() {
        "ms" | "millisecond" | "milliseconds" => n,
        "s" | "sec" | "second" | "seconds" => n * 1e3,
        "min" | "minute" | "minutes" => n * 60e3,
        "h" | "hour" | "hours" => n * 3600e3,
        "d" | "day" | "days" => n * 86400e3,
        _ => return None,
    };
    (ms >= 1.0 && ms.fract() == 0.0 && ms <= MAX_WINDOW_MS as f64).then_some(ms as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::{dialect::GenericDialect, parser::Parser};

    fn query(sql: &str) -> Box<Query> {
        Parser::new(&GenericDialect {})
            .try_with_sql(sql)
            .unwrap()
            .parse_query()
            .unwrap()
    }

    #[test]
    fn tumble_becomes_window_columns() {
        let mut q = query(
            "SELECT symbol, count(*) FROM trades GROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE)",
        );
        let w = rewrite_window(&mut q).unwrap().unwrap();
        assert_eq!(w.time_column, "ts");
        assert_eq!(
            w.kind,
            WindowKind::Fixed(WindowSpec {
                size_ms: 60_000,
                slide_ms: 60_000
            })
        );
        assert!(
            q.to_string()
                .ends_with("GROUP BY symbol, window_start, window_end"),
            "{q}"
        );
    }

    #[test]
    fn hop_checks_its_shape() {
        let mut q =
            query("SELECT 1 FROM t GROUP BY hop(t.ts, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)");
        let w = rewrite_window(&mut q).unwrap().unwrap();
        assert_eq!(
            w.kind,
            WindowKind::Fixed(WindowSpec {
                size_ms: 300_000,
                slide_ms: 60_000
            })
        );
        let mut q =
            query("SELECT 1 FROM t GROUP BY HOP(ts, INTERVAL '2' MINUTE, INTERVAL '5' MINUTE)");
        assert!(rewrite_window(&mut q)
            .unwrap_err()
            .contains("multiple of its slide"));
        let mut q =
            query("SELECT 1 FROM t GROUP BY HOP(ts, INTERVAL '1' MILLISECOND, INTERVAL '1' DAY)");
        let err = rewrite_window(&mut q).unwrap_err();
        assert!(err.contains("into 86400000 windows"), "{err}");
        let mut q = query("SELECT 1 FROM t GROUP BY TUMBLE(ts, INTERVAL '1e30' DAY)");
        assert!(rewrite_window(&mut q)
            .unwrap_err()
            .contains("at most 366 days"));
        let mut q = query("SELECT 1 FROM t GROUP BY TUMBLE(ts)");
        assert!(rewrite_window(&mut q)
            .unwrap_err()
            .contains("takes 2 arguments"));
    }

    #[test]
    fn cumulate_and_session_check_their_shape() {
        let mut q = query(
            "SELECT 1 FROM t GROUP BY s, CUMULATE(ts, INTERVAL '1' MINUTE, INTERVAL '1' DAY)",
        );
        let w = rewrite_window(&mut q).unwrap().unwrap();
        let c = CumulateSpec {
            step_ms: 60_000,
            max_ms: 86_400_000,
        };
        assert_eq!(w.kind, WindowKind::Cumulate(c));
        assert_eq!(c.period_start(86_400_000 + 5), 86_400_000);
        assert_eq!(c.first_end(86_400_000 + 5), 86_400_000 + 60_000);
        assert_eq!(c.first_end(59_999), 60_000);
        assert_eq!(c.first_end(-1), 0);
        let mut q =
            query("SELECT 1 FROM t GROUP BY CUMULATE(ts, INTERVAL '7' MINUTE, INTERVAL '1' HOUR)");
        let err = rewrite_window(&mut q).unwrap_err();
        assert!(err.contains("multiple of its step"), "{err}");
        let mut q =
            query("SELECT 1 FROM t GROUP BY CUMULATE(ts, INTERVAL '1' SECOND, INTERVAL '1' DAY)");
        let err = rewrite_window(&mut q).unwrap_err();
        assert!(err.contains("86400 windows per period"), "{err}");

        let mut q = query("SELECT 1 FROM t GROUP BY s, session(ts, INTERVAL '30' SECOND)");
        let w = rewrite_window(&mut q).unwrap().unwrap();
        let s = SessionSpec {
            gap_ms: 30_000,
            max_length_ms: DEFAULT_SESSION_MAX_MS,
        };
        assert_eq!(w.kind, WindowKind::Session(s));
        assert_eq!(s.span_of(86_399_999), 0);
        assert_eq!(s.span_of(86_400_000), 1);
        let mut q =
            query("SELECT 1 FROM t GROUP BY SESSION(ts, INTERVAL '30' SECOND, INTERVAL '1' HOUR)");
        let w = rewrite_window(&mut q).unwrap().unwrap();
        assert!(matches!(w.kind, WindowKind::Session(s) if s.max_length_ms == 3_600_000));
        let mut q =
            query("SELECT 1 FROM t GROUP BY SESSION(ts, INTERVAL '2' HOUR, INTERVAL '1' HOUR)");
        let err = rewrite_window(&mut q).unwrap_err();
        assert!(err.contains("longer than its maximum length"), "{err}");
        let mut q = query("SELECT 1 FROM t GROUP BY SESSION(ts)");
        let err = rewrite_window(&mut q).unwrap_err();
        assert!(err.contains("SESSION takes 2 arguments"), "{err}");
        let mut q = query("SELECT 1 FROM t GROUP BY SESSION()");
        let err = rewrite_window(&mut q).unwrap_err();
        assert!(err.contains("first argument"), "{err}");
    }

    #[test]
    fn partitions_wait_for_windows_starting_in_them() {
        let day = 86_400_000;
        let hour = 3_600_000;
        let tumble = WindowKind::Fixed(WindowSpec {
            size_ms: 60_000,
            slide_ms: 60_000,
        });
        assert_eq!(tumble.start_lag_ms(day), 0);
        let hop = WindowKind::Fixed(WindowSpec {
            size_ms: 300_000,
            slide_ms: 60_000,
        });
        assert_eq!(hop.start_lag_ms(day), 240_000);
        // A 7-minute slide: the last start in an hour can be 1 minute before its end.
        let odd = WindowKind::Fixed(WindowSpec {
            size_ms: 14 * 60_000,
            slide_ms: 7 * 60_000,
        });
        assert_eq!(odd.start_lag_ms(hour), 13 * 60_000);
        let daily = WindowKind::Cumulate(CumulateSpec {
            step_ms: 60_000,
            max_ms: day,
        });
        assert_eq!(daily.start_lag_ms(day), 0);
        assert_eq!(daily.start_lag_ms(hour), day - hour);
        let session = WindowKind::Session(SessionSpec {
            gap_ms: 30_000,
            max_length_ms: day,
        });
        assert_eq!(session.start_lag_ms(day), 30_000);
        assert_eq!(session.start_lag_ms(hour), day - hour + 30_000);
    }

    #[test]
    fn intervals() {
        assert_eq!(interval_ms("INTERVAL '1' MINUTE"), Some(60_000));
        assert_eq!(interval_ms("INTERVAL '90 seconds'"), Some(90_000));
        assert_eq!(interval_ms("INTERVAL '250' MILLISECOND"), Some(250));
        assert_eq!(interval_ms("INTERVAL '0' SECOND"), None);
        assert_eq!(interval_ms("5"), None);
        assert_eq!(interval_ms("INTERVAL '1e30' DAY"), None);
        assert_eq!(interval_ms("INTERVAL '366' DAY"), Some(MAX_WINDOW_MS));
        assert_eq!(interval_ms("INTERVAL '367' DAY"), None);
    }

    #[test]
    fn fixed_window_bounds() {
        let hop = WindowSpec {
            size_ms: 300,
            slide_ms: 100,
        };
        assert_eq!(hop.windows_per_record(), 3);
        assert_eq!(hop.first_start(250), 0); // windows [0,300), [100,400), [200,500)
        assert_eq!(hop.first_start(-1), -300);
        let tumble = WindowSpec {
            size_ms: 60,
            slide_ms: 60,
        };
        assert_eq!(tumble.first_start(119), 60);
    }
}
