//! Query results as an aligned table, CSV or JSON lines.

use std::io::Write;

use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::{EngineError, Result};

/// How `engine query` prints rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// An aligned table with a header.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row.
    Json,
}

/// `text` with control characters (the ESC of terminal escape sequences,
/// newlines, C1 controls) and bidirectional overrides written as `\u{..}`:
/// a symbol named to hurt cannot move the cursor, recolour or rewrite a
/// terminal that prints it.
pub fn escape_control(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `batch` with its text columns (and column names) escaped for a terminal.
fn escaped_text(batch: &RecordBatch) -> Result<RecordBatch> {
    use arrow::array::{Array, ArrayRef, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let name = escape_control(f.name()).into_owned();
        match c.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let text = arrow::compute::cast(c, &DataType::Utf8)?;
                let text = text.as_any().downcast_ref::<StringArray>().ok_or_else(|| {
                    EngineError::Internal("a text column did not cast to Utf8".into())
                })?;
                let escaped: StringArray = text.iter().map(|v| v.map(escape_control)).collect();
                fields.push(Field::new(name, DataType::Utf8, true));
                columns.push(Arc::new(escaped));
            }
            _ => {
                fields.push(f.as_ref().clone().with_name(name));
                columns.push(Arc::clone(c));
            }
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Writes `batches` to `out` in `format`.
pub fn write_results(
    batches: &[RecordBatch],
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<()> {
    let io = |e: std::io::Error| EngineError::Execution(format!("writing results: {e}"));
    match format {
        OutputFormat::Table => {
            let shown = batches
                .iter()
                .map(escaped_text)
                .collect::<Result<Vec<_>>>()?;
            writeln!(
                out,
                "{}",
                arrow::util::pretty::pretty_format_batches(&shown)?
            )
            .map_err(io)
        }
        OutputFormat::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(out);
            for b in batches {
                writer.write(b)?;
            }
            writer.finish()?;
            Ok(())
        }
        OutputFormat::Csv => {
            // CSV fields are quoted by the writer; controls inside stay data.
            let mut writer = csv::Writer::from_writer(out);
            let csv_err = |e: csv::Error| EngineError::Execution(format!("writing CSV: {e}"));
            if let Some(first) = batches.first() {
                let names = first
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect::<Vec<_>>();
                writer.write_record(&names).map_err(csv_err)?;
            }
            // Nulls as empty fields, timestamps as RFC 3339: what spreadsheet and CSV readers expect.
            let options = FormatOptions::default().with_null("");
            for b in batches {
                let formatters = b
                    .columns()
                    .iter()
                    .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                for row in 0..b.num_rows() {
                    let fields: Vec<String> = formatters
                        .iter()
                        .map(|f| f.value(row).to_string())
                        .collect();
                    writer.write_record(&fields).map_err(csv_err)?;
                }
            }
            writer.flush().map_err(io)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn tables_escape_control_characters() {
        assert_eq!(escape_control("AAPL"), "AAPL");
        assert_eq!(escape_control("A\x1b[2J\u{202e}"), "A\\u{1b}[2J\\u{202e}");
        let schema = Schema::new(vec![Field::new("symbol", DataType::Utf8, true)]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(StringArray::from(vec![
                "EVIL\x1b]0;pwned\x07\x1b[31m",
            ]))],
        )
        .unwrap();
        let mut out = Vec::new();
        write_results(&[batch], OutputFormat::Table, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text}");
        assert!(
            text.contains("EVIL\\u{1b}]0;pwned\\u{7}\\u{1b}[31m"),
            "{text}"
        );
    }
}
