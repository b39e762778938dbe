//! Object stores: where lake tables and state directories live (`s3://`,
//! `file://` or a local directory), and references to the objects in them.

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use bytes::Bytes;

use crate::error::{EngineError, Result};

/// An object, with its size (a shorter one is corrupt).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileRef {
    /// Path in its store.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// An object store and the prefix of a table inside it.
#[derive(Debug, Clone)]
pub struct Location {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// The table's prefix inside the store.
    pub prefix: Path,
    /// The URL it was opened from, for messages.
    pub url: String,
}

impl Location {
    /// Uploads one whole object (a single PUT: it appears complete or not at
    /// all) and returns its reference.
    pub async fn put(&self, path: &Path, bytes: Vec<u8>) -> Result<FileRef> {
        let size = bytes.len() as u64;
        self.store
            .put(path, PutPayload::from(Bytes::from(bytes)))
            .await
            .map_err(|e| EngineError::store(format!("writing `{path}` under {}", self.url), e))?;
        Ok(FileRef {
            path: path.to_string(),
            size,
        })
    }
}

/// Opens `path`: `s3://bucket/prefix` (endpoint, region and credentials from
/// the standard AWS environment variables such as `AWS_ENDPOINT_URL`,
/// `AWS_ALLOW_HTTP`, `AWS_ACCESS_KEY_ID`), `file:///abs/dir`, or a local directory
/// (created if missing).
pub fn open(path: &str) -> Result<Location> {
    if let Some(rest) = path.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(EngineError::store_msg(format!(
                "`{path}` names no bucket (expected s3://bucket/prefix)"
            )));
        }
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| EngineError::store(format!("opening `{path}`"), e))?;
        return Ok(Location {
            store: Arc::new(store),
            prefix: Path::from(prefix.trim_matches('/')),
            url: path.to_string(),
        });
    }
    let dir = path.strip_prefix("file://").unwrap_or(path);
    if dir.contains("://") {
        return Err(EngineError::store_msg(format!(
            "`{path}`: unsupported scheme (use s3://, file:// or a local directory)"
        )));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| EngineError::store(format!("creating directory `{dir}`"), e))?;
    let store = LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| EngineError::store(format!("opening `{dir}`"), e))?;
    Ok(Location {
        store: Arc::new(store),
        prefix: Path::default(),
        url: path.to_string(),
    })
}
