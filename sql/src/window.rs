//! Event-time windows in `GROUP BY`: `TUMBLE(ts, size)` and `HOP(ts, slide, size)`.
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

/// An event-time window over a source's time column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    /// Window length in milliseconds.
    pub size_ms: i64,
    /// Distance between window starts; equal to `size_ms` for TUMBLE.
    pub slide_ms: i64,
}

impl WindowSpec {
    /// Start of the earliest window containing `ts`.
    pub fn first_start(&self, ts: i64) -> i64 {
        // The latest start <= ts, then step back while the window still contains ts.
        let last = ts.div_euclid(self.slide_ms) * self.slide_ms;
        last - (self.windows_per_record() - 1) * self.slide_ms
    }

    /// How many windows each record belongs to (1 for TUMBLE).
    pub fn windows_per_record(&self) -> i64 {
        self.size_ms / self.slide_ms
    }
}

/// A window found in a query, with the column it is computed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundWindow {
    /// The event-time column named as the window function's first argument.
    pub time_column: String,
    /// The window's shape.
    pub spec: WindowSpec,
    /// The query selects `window_final` / `window_revision`: they are grouped
    /// by like the window's bounds, and the operator fills them in per row.
    pub revision_columns: bool,
}

/// Finds a TUMBLE/HOP call in the top-level `GROUP BY` of `query` and
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
                    return Err("only one TUMBLE or HOP window is allowed per GROUP BY".into());
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

fn window_call(expr: &Expr) -> Result<Option<FoundWindow>, String> {
    let Expr::Function(f) = expr else {
        return Ok(None);
    };
    let name = f.name.to_string().to_ascii_lowercase();
    if name != "tumble" && name != "hop" {
        return Ok(None);
    }
    let FunctionArguments::List(list) = &f.args else {
        return Err(format!("{} needs arguments", name.to_uppercase()));
    };
    let args: Vec<&Expr> = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            other => Err(format!(
                "unsupported argument `{other}` to {}",
                name.to_uppercase()
            )),
        })
        .collect::<Result<_, _>>()?;
    let usage = if name == "tumble" {
        "TUMBLE(ts, INTERVAL '1' MINUTE)"
    } else {
        "HOP(ts, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)"
    };
    let expected = if name == "tumble" { 2 } else { 3 };
    if args.len() != expected {
        return Err(format!(
            "{} takes {expected} arguments: {usage}",
            name.to_uppercase()
        ));
    }
    let time_column = match args[0] {
        Expr::Identifier(id) => normalize(id),
        Expr::CompoundIdentifier(ids) => {
            normalize(ids.last().expect("compound identifiers are never empty"))
        }
        other => {
            return Err(format!(
                "the first argument of {} must be a column, found `{other}`",
                name.to_uppercase()
            ))
        }
    };
    let interval = |e: &Expr| {
        interval_ms(&e.to_string()).ok_or_else(|| {
            format!("`{e}` is not a positive interval of whole milliseconds, at most 366 days (e.g. INTERVAL '1' MINUTE)")
        })
    };
    let spec = if name == "tumble" {
        let size = interval(args[1])?;
        WindowSpec {
            size_ms: size,
            slide_ms: size,
        }
    } else {
        let (slide, size) = (interval(args[1])?, interval(args[2])?);
        if size % slide != 0 {
            return Err(format!(
                "HOP size ({size} ms) must be a multiple of its slide ({slide} ms)"
            ));
        }
        if size / slide > MAX_WINDOWS_PER_ROW {
            return Err(format!(
                "HOP size ({size} ms) over its slide ({slide} ms) puts every row into {} windows; \
                 at most {MAX_WINDOWS_PER_ROW} are allowed (use a longer slide)",
                size / slide
            ));
        }
        WindowSpec {
            size_ms: size,
            slide_ms: slide,
        }
    };
    Ok(Some(FoundWindow {
        time_column,
        spec,
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
            w.spec,
            WindowSpec {
                size_ms: 60_000,
                slide_ms: 60_000
            }
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
            w.spec,
            WindowSpec {
                size_ms: 300_000,
                slide_ms: 60_000
            }
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
    fn window_assignment_bounds() {
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
