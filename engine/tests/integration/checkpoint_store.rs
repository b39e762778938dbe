//! The checkpoint store on the real S3 API: a manifest is written with a
//! conditional put, so a second writer of the same epoch fails (the fence
//! between two runs on one state dir).

use crate::common;

use common::unique;
use engine::checkpoint::{CheckpointStore, Manifest};

#[tokio::test]
async fn on_s3_a_second_writer_of_an_epoch_loses() {
    let store = CheckpointStore::open(&format!("s3://lake/{}", unique("state"))).unwrap();
    let manifest = Manifest {
        epoch: 1,
        ..Default::default()
    };
    store.commit(&manifest).await.unwrap();
    let err = store.commit(&manifest).await.unwrap_err().to_string();
    assert!(
        err.contains("checkpoint 1 was already written by another process"),
        "{err}"
    );
    assert_eq!(store.latest().await.unwrap().map(|m| m.epoch), Some(1));
}
