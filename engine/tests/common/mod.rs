//! Test support, one concern a module: the independent oracle, the broker,
//! processes, the lake as DuckDB reads it, and ready-made scenarios.
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

mod browser;
mod kafka;
mod lake;
mod oracle;
mod process;
mod scenarios;
mod secure;
mod ws;

pub use browser::*;
pub use kafka::*;
pub use lake::*;
pub use oracle::*;
pub use process::*;
pub use scenarios::*;
pub use secure::*;
pub use ws::*;
