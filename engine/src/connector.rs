//! What source and sink connectors share: a registry entry keyed by
//! `connector = '...'`, its lookup, and how an option error names its place.
//!
//! Each of `source/registry.rs` and `sink/registry.rs` lists its connectors
//! as [`Connector`]s; adding one is a folder beside the others and one line there.

use engine_sql::{LineError, TableDef};

use crate::error::{EngineError, Result};

/// A kind of source or sink (`Spec` is `dyn SourceSpec` or `dyn SinkSpec`):
/// the names tables give it, and how a table's options are checked.
pub struct Connector<Spec: ?Sized> {
    /// `connector = '<name>'` values that pick it.
    pub names: &'static [&'static str],
    /// Checks a table's options (unknown ones are errors naming file and line).
    pub spec: fn(file: &str, table: &TableDef) -> Result<Box<Spec>>,
}

/// The checked options of `table` (declared in job file `file`), by the
/// connector of `connectors` it names; an unknown name is an error at the
/// table's line listing the known ones. `kind`: "source" or "sink".
pub fn spec<Spec: ?Sized>(
    connectors: &[Connector<Spec>],
    kind: &str,
    file: &str,
    table: &TableDef,
) -> Result<Box<Spec>> {
    let name = table.connector.as_str();
    if let Some(c) = connectors.iter().find(|c| c.names.contains(&name)) {
        return (c.spec)(file, table);
    }
    let known: Vec<String> = (connectors.iter())
        .flat_map(|c| c.names.iter().map(|n| format!("'{n}'")))
        .collect();
    let message = format!(
        "unknown {kind} connector '{name}' (known: {})",
        known.join(", ")
    );
    Err(option_error(file, table, (table.line, message)))
}

/// An error in the options of `table`, at the line it names in job file `file`.
pub fn option_error(file: &str, table: &TableDef, (line, message): LineError) -> EngineError {
    EngineError::Config(engine_sql::SqlError {
        file: file.to_string(),
        line,
        message: format!("table `{}`: {message}", table.name),
    })
}
