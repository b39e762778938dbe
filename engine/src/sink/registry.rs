//! The sink connectors, by the `connector = '...'` of a sink table.

use engine_sql::TableDef;

use super::SinkSpec;
use crate::error::Result;

/// A kind of sink: the names tables give it, and how its options are checked.
pub struct SinkConnector {
    /// `connector = '<name>'` values that pick it.
    pub names: &'static [&'static str],
    /// Checks a table's options (unknown ones are errors naming file and line).
    pub spec: fn(file: &str, table: &TableDef) -> Result<Box<dyn SinkSpec>>,
}

/// Every sink connector. Adding one: its folder under `sink/`, and a line here.
pub fn connectors() -> &'static [SinkConnector] {
    &[
        SinkConnector {
            names: &["kafka"],
            spec: super::kafka::spec,
        },
        SinkConnector {
            names: &["lake", "filesystem"],
            spec: super::lake::spec,
        },
    ]
}

/// The checked options of sink table `table` (declared in job file `file`).
pub fn spec(file: &str, table: &TableDef) -> Result<Box<dyn SinkSpec>> {
    let connectors = connectors();
    match connectors
        .iter()
        .find(|c| c.names.contains(&table.connector.as_str()))
    {
        Some(c) => (c.spec)(file, table),
        None => {
            let known: Vec<String> = connectors
                .iter()
                .flat_map(|c| c.names.iter().map(|n| format!("'{n}'")))
                .collect();
            Err(super::option_error(
                file,
                table,
                (
                    table.line,
                    format!(
                        "unknown sink connector '{}' (known: {})",
                        table.connector,
                        known.join(", ")
                    ),
                ),
            ))
        }
    }
}
