//! Sources: where records enter the engine.

pub mod kafka;
