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
    let c = pick(connectors(), |c| c.names, "sink", file, table)?;
    (c.spec)(file, table)
}

/// The connector of `connectors` that table `table` names; an unknown name
/// is an error at the table's line listing the known ones.
pub fn pick<'c, C>(
    connectors: &'c [C],
    names: impl Fn(&C) -> &'static [&'static str],
    kind: &str,
    file: &str,
    table: &TableDef,
) -> Result<&'c C> {
    if let Some(c) = connectors
        .iter()
        .find(|c| names(c).contains(&table.connector.as_str()))
    {
        return Ok(c);
    }
    let known: Vec<String> = connectors
        .iter()
        .flat_map(|c| names(c).iter().map(|n| format!("'{n}'")))
        .collect();
    let message = format!(
        "unknown {kind} connector '{}' (known: {})",
        table.connector,
        known.join(", ")
    );
    Err(super::option_error(file, table, (table.line, message)))
}
