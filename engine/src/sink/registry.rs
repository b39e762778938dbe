//! The sink connectors, by the `connector = '...'` of a sink table.

use engine_sql::TableDef;

use super::SinkSpec;
use crate::connector::Connector;
use crate::error::Result;

/// A kind of sink: the names tables give it, and how its options are checked.
pub type SinkConnector = Connector<dyn SinkSpec>;

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
    crate::connector::spec(connectors(), "sink", file, table)
}
