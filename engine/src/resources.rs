//! What connectors share within one run of a job, by key: e.g. the Kafka
//! transaction that the Kafka source's offsets and every `exactly_once`
//! Kafka sink's records go into together. The runtime only carries it.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Shared objects of one run, by key (each connector names its own).
#[derive(Default)]
pub struct Resources(Mutex<BTreeMap<String, Arc<dyn Any + Send + Sync>>>);

impl Resources {
    /// No resources.
    pub fn new() -> Self {
        Self::default()
    }

    /// The object under `key`, if one of type `T` is there.
    pub fn get<T: Any + Send + Sync>(&self, key: &str) -> Option<Arc<T>> {
        let map = self.0.lock().expect("no panics while locked");
        map.get(key).cloned()?.downcast::<T>().ok()
    }

    /// Puts `value` under `key` (replacing what was there).
    pub fn insert<T: Any + Send + Sync>(&self, key: &str, value: Arc<T>) {
        let mut map = self.0.lock().expect("no panics while locked");
        map.insert(key.to_string(), value);
    }
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let map = self.0.lock().expect("no panics while locked");
        f.debug_set().entries(map.keys()).finish()
    }
}
