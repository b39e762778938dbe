//! Arrow batches as bytes (the IPC file format) and back: how state is stored.

use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use arrow::record_batch::RecordBatch;

use crate::error::{EngineError, Result};

/// Encodes `batches` (all of one schema) as an Arrow IPC file; `None` if there are none.
pub fn batches_to_ipc(batches: &[RecordBatch]) -> Result<Option<Vec<u8>>> {
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let mut writer = FileWriter::try_new(Vec::new(), first.schema_ref())?;
    for b in batches {
        writer.write(b)?;
    }
    writer.finish()?;
    Ok(Some(writer.into_inner()?))
}

/// Decodes an Arrow IPC file written by [`batches_to_ipc`].
pub fn batches_from_ipc(bytes: bytes::Bytes) -> Result<Vec<RecordBatch>> {
    let reader = FileReader::try_new(std::io::Cursor::new(bytes), None)?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| EngineError::Execution(format!("reading checkpointed state: {e}")))
}
