//! The source connectors, by the `connector = '...'` of a source table.

use engine_sql::TableDef;

use super::SourceSpec;
use crate::error::Result;

/// A kind of source: the names tables give it, and how its options are checked.
pub struct SourceConnector {
    /// `connector = '<name>'` values that pick it.
    pub names: &'static [&'static str],
    /// Checks a table's options (unknown ones are errors naming file and line).
    pub spec: fn(file: &str, table: &TableDef) -> Result<Box<dyn SourceSpec>>,
}

/// Every source connector. Adding one: its folder under `source/`, and a line here.
pub fn connectors() -> &'static [SourceConnector] {
    &[
        SourceConnector {
            names: &["kafka"],
            spec: super::kafka::spec,
        },
        SourceConnector {
            names: &["memory"],
            spec: super::memory::spec,
        },
    ]
}

/// The checked options of source table `table` (declared in job file `file`).
pub fn spec(file: &str, table: &TableDef) -> Result<Box<dyn SourceSpec>> {
    let c = crate::sink::registry::pick(connectors(), |c| c.names, "source", file, table)?;
    (c.spec)(file, table)
}
