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
        SinkConnector {
            names: &["memory"],
            spec: super::memory::spec,
        },
    ]
}

/// The checked options of sink table `table` (declared in job file `file`).
pub fn spec(file: &str, table: &TableDef) -> Result<Box<dyn SinkSpec>> {
    let connectors = connectors();
    let found = connectors
        .iter()
        .find(|c| c.names.contains(&table.connector.as_str()));
    match found {
        Some(c) => (c.spec)(file, table),
        None => {
            let known = known_names(connectors.iter().map(|c| c.names));
            let message = format!(
                "unknown sink connector '{}' (known: {known})",
                table.connector
            );
            Err(super::option_error(file, table, (table.line, message)))
        }
    }
}

/// `'kafka', 'lake', ...`: the names of some connectors, for messages.
pub fn known_names<'a>(names: impl Iterator<Item = &'a [&'static str]>) -> String {
    names
        .flatten()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}
