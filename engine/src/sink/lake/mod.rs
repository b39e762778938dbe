//! The lake sink: Hive-partitioned Parquet (`table/dt=YYYY-MM-DD/part-....parquet`)
//! on any object store, written the way Athena reads it.

mod config;
mod partition;
mod sink;
pub mod staging;
pub mod store;

pub use config::{Compression, LakeSinkConfig, PartitionScheme};
pub use sink::LakeSink;
