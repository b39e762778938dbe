//! `CREATE TABLE name (columns..., WATERMARK FOR col AS expr) WITH (options)`.
//!
//! The grammar follows Flink SQL and Arroyo. sqlparser's own `CREATE TABLE`
//! knows neither `WATERMARK FOR` nor `METADATA FROM`, so we drive its parser
//! token by token and reuse its expression and data-type parsers.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::sql::sqlparser::{
    ast::Ident,
    dialect::GenericDialect,
    keywords::Keyword,
    parser::{Parser, ParserError},
    tokenizer::Token,
};

use crate::error::{line_err, parser_error, LineError};
use crate::options::Options;

/// The time zone every engine timestamp carries: Athena and Kafka speak UTC.
pub const UTC: &str = "UTC";

/// The Arrow type of a `TIMESTAMP` column: milliseconds, UTC (what Athena
/// reads as INT64 TIMESTAMP(MILLIS, UTC), and the trade contract's unit).
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into()))
}

/// A Kafka record attribute exposed as a column (`col BIGINT METADATA FROM 'offset'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataField {
    /// The Kafka partition (INT).
    Partition,
    /// The record offset (BIGINT).
    Offset,
    /// The record timestamp (TIMESTAMP).
    Timestamp,
    /// The record key as text (TEXT).
    Key,
    /// The topic name (TEXT).
    Topic,
}

impl MetadataField {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "partition" => Self::Partition,
            "offset" => Self::Offset,
            "timestamp" => Self::Timestamp,
            "key" => Self::Key,
            "topic" => Self::Topic,
            _ => return None,
        })
    }

    /// The Arrow type the column must be declared with.
    pub fn data_type(self) -> DataType {
        match self {
            Self::Partition => DataType::Int32,
            Self::Offset => DataType::Int64,
            Self::Timestamp => timestamp_type(),
            Self::Key | Self::Topic => DataType::Utf8,
        }
    }
}

/// One declared column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    /// Normalized name (unquoted identifiers are lower-cased, as in DataFusion).
    pub name: String,
    /// Its Arrow type.
    pub data_type: DataType,
    /// `NOT NULL`: a record without this field is a bad record (dead-letter queue).
    pub not_null: bool,
    /// Set when the column is a Kafka record attribute rather than a JSON field.
    pub metadata: Option<MetadataField>,
}

/// `WATERMARK FOR column AS expression`.
#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkDef {
    /// The event-time column.
    pub column: String,
    /// The watermark expression as SQL text, e.g. `ts - INTERVAL '2' SECOND`.
    pub expr: String,
}

/// `CHECK (expression)`, on a column or the table, optionally named with
/// `CONSTRAINT name`: a source record whose row makes it false is a bad record
/// (dead-lettered with the constraint as the reason). As in SQL, a row for
/// which it is NULL passes.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckDef {
    /// The constraint's name, if it has one.
    pub name: Option<String>,
    /// The boolean expression as SQL text, e.g. `price > 0`.
    pub expr: String,
    /// The line it is written on.
    pub line: usize,
}

impl CheckDef {
    /// How the constraint is named in errors and dead letters: `positive_price`
    /// or `CHECK (price > 0)`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("CHECK `{name}` ({})", self.expr),
            None => format!("CHECK ({})", self.expr),
        }
    }
}

/// One `CREATE TABLE` statement.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    /// Normalized table name.
    pub name: String,
    /// Line of the statement.
    pub line: usize,
    /// Declared columns, in order.
    pub columns: Vec<ColumnDef>,
    /// The event-time declaration, for sources.
    pub watermark: Option<WatermarkDef>,
    /// `CHECK` constraints of the table and its columns, in file order.
    pub checks: Vec<CheckDef>,
    /// `connector` option (`kafka`, `lake`, `filesystem`).
    pub connector: String,
    /// The other `WITH` options, read by the connector's typed config.
    pub options: Options,
}

impl TableDef {
    /// The declared columns as an Arrow schema. The event-time column is
    /// never null: a record without it cannot be placed in time.
    pub fn schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(&c.name, c.data_type.clone(), !self.is_required(c)))
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// True for `NOT NULL` columns and the event-time column.
    pub fn is_required(&self, column: &ColumnDef) -> bool {
        column.not_null
            || self
                .watermark
                .as_ref()
                .is_some_and(|w| w.column == column.name)
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }
}

fn normalize(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_lowercase(),
    }
}

/// Parses one `CREATE TABLE` statement; `text` is padded so parser positions
/// are file positions, and `line` is where the statement starts.
pub fn parse_create_table(text: &str, line: usize) -> Result<TableDef, LineError> {
    let parse = || -> Result<TableDef, ParserError> {
        let dialect = GenericDialect {};
        let mut p = Parser::new(&dialect).try_with_sql(text)?;
        p.expect_keyword(Keyword::CREATE)?;
        p.expect_keyword(Keyword::TABLE)?;
        let name = p.parse_identifier()?;
        p.expect_token(&Token::LParen)?;
        let mut columns = Vec::new();
        let mut watermark = None;
        let mut checks = Vec::new();
        loop {
            if let Some(check) = parse_check(&mut p)? {
                checks.push(check);
            } else if word_is(&p.peek_token().token, "WATERMARK") {
                p.next_token();
                p.expect_keyword(Keyword::FOR)?;
                let column = normalize(&p.parse_identifier()?);
                p.expect_keyword(Keyword::AS)?;
                let expr = p.parse_expr()?.to_string();
                watermark = Some(WatermarkDef { column, expr });
            } else {
                columns.push(parse_column(&mut p, &mut checks)?);
            }
            if p.consume_token(&Token::RParen) {
                break;
            }
            p.expect_token(&Token::Comma)?;
        }
        let mut options = Options::default();
        let mut connector = String::new();
        if p.parse_keyword(Keyword::WITH) {
            p.expect_token(&Token::LParen)?;
            loop {
                let key_line = p.peek_token().span.start.line as usize;
                let mut key = p.parse_identifier()?.value;
                while p.consume_token(&Token::Period) {
                    key = format!("{key}.{}", p.parse_identifier()?.value);
                }
                p.expect_token(&Token::Eq)?;
                let value = match p.next_token().token {
                    Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s,
                    Token::Number(n, _) => n,
                    Token::Word(w) => w.value,
                    other => {
                        return Err(ParserError::ParserError(format!(
                        "expected a value for option `{key}`, found {other} at Line: {key_line}"
                    )))
                    }
                };
                if key == "connector" {
                    connector = value;
                } else {
                    options.insert(key, value, key_line).map_err(|(_, m)| {
                        ParserError::ParserError(format!("{m} at Line: {key_line}"))
                    })?;
                }
                if p.consume_token(&Token::RParen) {
                    break;
                }
                p.expect_token(&Token::Comma)?;
            }
        }
        if p.peek_token().token != Token::EOF {
            return p.expected("end of statement", p.peek_token());
        }
        Ok(TableDef {
            name: normalize(&name),
            line,
            columns,
            watermark,
            checks,
            connector,
            options,
        })
    };
    let table = parse().map_err(|e| parser_error(line, e))?;
    validate(&table)?;
    Ok(table)
}

fn word_is(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// `[CONSTRAINT name] CHECK (expr)` if it comes next.
fn parse_check(p: &mut Parser) -> Result<Option<CheckDef>, ParserError> {
    let line = p.peek_token().span.start.line as usize;
    let name = if p.parse_keyword(Keyword::CONSTRAINT) {
        Some(normalize(&p.parse_identifier()?))
    } else {
        None
    };
    if !p.parse_keyword(Keyword::CHECK) {
        if name.is_some() {
            return p.expected("CHECK after CONSTRAINT name", p.peek_token());
        }
        return Ok(None);
    }
    p.expect_token(&Token::LParen)?;
    let expr = p.parse_expr()?.to_string();
    p.expect_token(&Token::RParen)?;
    Ok(Some(CheckDef { name, expr, line }))
}

fn parse_column(p: &mut Parser, checks: &mut Vec<CheckDef>) -> Result<ColumnDef, ParserError> {
    let name = normalize(&p.parse_identifier()?);
    let type_token = p.peek_token();
    let sql_type = p.parse_data_type()?;
    let data_type = arrow_type(&sql_type.to_string()).ok_or_else(|| {
        ParserError::ParserError(format!(
            "column `{name}`: unsupported type {sql_type} (use TEXT, DOUBLE, FLOAT, BIGINT, INT, SMALLINT, BOOLEAN, TIMESTAMP, DATE or DECIMAL(p,s)) at Line: {}, Column: {}",
            type_token.span.start.line, type_token.span.start.column
        ))
    })?;
    let mut column = ColumnDef {
        name,
        data_type,
        not_null: false,
        metadata: None,
    };
    loop {
        if p.parse_keywords(&[Keyword::NOT, Keyword::NULL]) {
            column.not_null = true;
        } else if p.parse_keyword(Keyword::NULL) {
            column.not_null = false;
        } else if let Some(check) = parse_check(p)? {
            checks.push(check);
        } else if p.parse_keyword(Keyword::METADATA) {
            p.expect_keyword(Keyword::FROM)?;
            let at = p.peek_token();
            let key = p.parse_literal_string()?;
            column.metadata = Some(MetadataField::parse(&key).ok_or_else(|| {
                ParserError::ParserError(format!(
                    "column `{}`: unknown metadata '{key}' (known: 'partition', 'offset', 'timestamp', 'key', 'topic') at Line: {}",
                    column.name, at.span.start.line
                ))
            })?);
        } else {
            return Ok(column);
        }
    }
}

/// Maps a SQL type name to the Arrow type the engine uses for it.
pub fn arrow_type(sql: &str) -> Option<DataType> {
    let upper = sql.to_ascii_uppercase();
    let base = upper.split('(').next().unwrap_or("").trim();
    Some(match base {
        "TEXT" | "VARCHAR" | "STRING" | "CHAR" | "CHARACTER VARYING" => DataType::Utf8,
        "DOUBLE" | "DOUBLE PRECISION" | "FLOAT8" | "FLOAT64" => DataType::Float64,
        "FLOAT" | "REAL" | "FLOAT4" | "FLOAT32" => DataType::Float32,
        "BIGINT" | "INT8" | "INT64" => DataType::Int64,
        "INT" | "INTEGER" | "INT4" | "INT32" => DataType::Int32,
        "SMALLINT" | "INT2" | "INT16" => DataType::Int16,
        "BOOLEAN" | "BOOL" => DataType::Boolean,
        "DATE" => DataType::Date32,
        b if b.starts_with("TIMESTAMP") => timestamp_type(),
        "DECIMAL" | "NUMERIC" => {
            let args = upper.split_once('(')?.1.trim_end_matches(')').to_string();
            let mut parts = args.split(',').map(|s| s.trim().parse::<u8>());
            let precision = parts.next()?.ok()?;
            let scale = parts.next().map(|s| s.ok()).unwrap_or(Some(0))?;
            if precision == 0 || precision > 38 || scale > precision {
                return None;
            }
            DataType::Decimal128(precision, scale as i8)
        }
        _ => return None,
    })
}

fn validate(t: &TableDef) -> Result<(), LineError> {
    if t.connector.is_empty() {
        line_err!(
            t.line,
            "table `{}` needs a `connector` option ('kafka', 'lake' or 'filesystem')",
            t.name
        );
    }
    if t.columns.is_empty() {
        line_err!(t.line, "table `{}` declares no columns", t.name);
    }
    for (i, c) in t.columns.iter().enumerate() {
        if t.columns[..i].iter().any(|d| d.name == c.name) {
            line_err!(
                t.line,
                "table `{}`: column `{}` is declared twice",
                t.name,
                c.name
            );
        }
        if let Some(m) = c.metadata {
            if c.data_type != m.data_type() {
                line_err!(
                    t.line,
                    "table `{}`: metadata column `{}` must have type {}",
                    t.name,
                    c.name,
                    m.data_type()
                );
            }
        }
    }
    if let Some(w) = &t.watermark {
        match t.column(&w.column) {
            None => line_err!(
                t.line,
                "table `{}`: WATERMARK FOR `{}`: no such column",
                t.name,
                w.column
            ),
            Some(c) if !matches!(c.data_type, DataType::Timestamp(..)) => {
                line_err!(
                    t.line,
                    "table `{}`: WATERMARK FOR `{}`: the column must be a TIMESTAMP",
                    t.name,
                    w.column
                )
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_columns_watermark_metadata_and_options() {
        let sql = "CREATE TABLE Trades (symbol TEXT NOT NULL, price DOUBLE, size DOUBLE, ts TIMESTAMP NOT NULL,
            part INT METADATA FROM 'partition',
            WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
          WITH (connector = 'kafka', topic = 'trades', format = 'json', properties.fetch.min.bytes = 1)";
        let t = parse_create_table(sql, 1).unwrap();
        assert_eq!(t.name, "trades");
        assert_eq!(t.connector, "kafka");
        assert_eq!(t.columns.len(), 5);
        assert!(t.columns[0].not_null && !t.columns[1].not_null);
        assert_eq!(t.columns[3].data_type, timestamp_type());
        assert_eq!(t.columns[4].metadata, Some(MetadataField::Partition));
        let w = t.watermark.as_ref().unwrap();
        assert_eq!(
            (w.column.as_str(), w.expr.as_str()),
            ("ts", "ts - INTERVAL '2' SECOND")
        );
        let mut o = t.options.clone();
        assert_eq!(o.get("properties.fetch.min.bytes").as_deref(), Some("1"));
        assert_eq!(o.line_of("topic", 0), 4);
    }

    #[test]
    fn errors_name_the_line() {
        let sql = "\n\nCREATE TABLE t (a TEXT,\n b BLOB) WITH (connector = 'kafka')";
        let (line, msg) = parse_create_table(sql, 3).unwrap_err();
        assert_eq!(line, 4, "the line of the bad type, not of the statement");
        assert!(
            msg.contains("unsupported type") && msg.contains("(column 4)"),
            "{msg}"
        );

        let (_, msg) = parse_create_table(
            "CREATE TABLE t (a TEXT, WATERMARK FOR b AS b) WITH (connector='kafka')",
            1,
        )
        .unwrap_err();
        assert!(msg.contains("no such column"), "{msg}");
        let (_, msg) = parse_create_table("CREATE TABLE t (a TEXT)", 1).unwrap_err();
        assert!(msg.contains("needs a `connector`"), "{msg}");
    }

    #[test]
    fn decimal_types() {
        assert_eq!(
            arrow_type("DECIMAL(18,4)"),
            Some(DataType::Decimal128(18, 4))
        );
        assert_eq!(arrow_type("decimal(50,2)"), None);
    }
}
