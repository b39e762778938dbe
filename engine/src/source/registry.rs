//! The source connectors, by the `connector = '...'` of a source table.

use engine_sql::TableDef;

use super::SourceSpec;
use crate::connector::Connector;
use crate::error::Result;

/// A kind of source: the names tables give it, and how its options are checked.
pub type SourceConnector = Connector<dyn SourceSpec>;

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
        SourceConnector {
            names: &["websocket"],
            spec: super::websocket::spec,
        },
    ]
}

/// The checked options of source table `table` (declared in job file `file`).
pub fn spec(file: &str, table: &TableDef) -> Result<Box<dyn SourceSpec>> {
    crate::connector::spec(connectors(), "source", file, table)
}
