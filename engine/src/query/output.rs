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

/// Writes `batches` to `out` in `format`.
pub fn write_results(
    batches: &[RecordBatch],
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<()> {
    let io = |e: std::io::Error| EngineError::Execution(format!("writing results: {e}"));
    match format {
        OutputFormat::Table => writeln!(
            out,
            "{}",
            arrow::util::pretty::pretty_format_batches(batches)?
        )
        .map_err(io),
        OutputFormat::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(out);
            for b in batches {
                writer.write(b)?;
            }
            writer.finish()?;
            Ok(())
        }
        OutputFormat::Csv => {
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
