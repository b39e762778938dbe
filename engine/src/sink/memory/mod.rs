//! `connector = 'memory'`: rows into a named table in this process, for
//! tests and for programs that embed the engine. Without checkpoints rows
//! are visible as they are written; with checkpoints, only once the
//! checkpoint covering them commits, each checkpoint's rows once (also when
//! a restore commits it again), and a restore from an older checkpoint
//! removes what the lost ones made visible (as the lake does): what a
//! reader of [`Table::rows`] sees is what an exactly-once consumer would.
//!
//! ```sql
//! CREATE TABLE candles (...) WITH (connector = 'memory', table = 'candles');
//! ```

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock, Mutex};

use arrow::record_batch::RecordBatch;
use engine_sql::TableDef;

use super::{OpenedSink, Sink, SinkContext, SinkSpec, Uncommitted};
use crate::checkpoint::{CommitPoint, Committer, Snapshot};
use crate::error::Result;

static TABLES: LazyLock<Mutex<BTreeMap<String, Arc<Table>>>> = LazyLock::new(Default::default);

/// A named table of rows in this process.
#[derive(Debug, Default)]
pub struct Table {
    state: Mutex<TableState>,
}

#[derive(Debug, Default)]
struct TableState {
    /// Rows with the checkpoint that made them visible (generation, epoch;
    /// empty and 0 without checkpoints).
    rows: Vec<(String, u64, RecordBatch)>,
    /// Checkpoints whose rows are in (generation, epoch, created_at).
    committed: BTreeSet<(String, u64, String)>,
}

/// The table named `name` (created empty if new).
pub fn table(name: &str) -> Arc<Table> {
    let mut tables = TABLES.lock().expect("no panics while locked");
    Arc::clone(tables.entry(name.to_string()).or_default())
}

impl Table {
    /// The visible rows, in the order written.
    pub fn rows(&self) -> Vec<RecordBatch> {
        let state = self.state.lock().expect("no panics while locked");
        state.rows.iter().map(|(_, _, b)| b.clone()).collect()
    }

    fn append(&self, batch: RecordBatch) {
        let mut state = self.state.lock().expect("no panics while locked");
        state.rows.push((String::new(), 0, batch));
    }
}

/// A memory sink table's options.
#[derive(Debug, Clone, PartialEq)]
pub struct MemorySinkConfig {
    /// `table`: the in-process table written (default: the table's name).
    pub table: String,
    /// `sink.revisions`: every revision of a window's row (default), or the final one only.
    pub revisions: super::Revisions,
}

/// `connector = 'memory'`: checks a sink table's options.
pub fn spec(file: &str, table: &TableDef) -> Result<Box<dyn SinkSpec>> {
    let mut o = table.options.clone();
    let at = |e| super::option_error(file, table, e);
    let config = MemorySinkConfig {
        table: o.get("table").unwrap_or_else(|| table.name.clone()),
        revisions: super::Revisions::from_options(&mut o, super::Revisions::All).map_err(at)?,
    };
    o.reject_unknown("memory").map_err(at)?;
    Ok(Box::new(config))
}

#[async_trait::async_trait]
impl SinkSpec for MemorySinkConfig {
    fn describe(&self) -> String {
        format!("memory table `{}`", self.table)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn revisions(&self) -> super::Revisions {
        self.revisions
    }

    async fn open(&self, ctx: SinkContext<'_>) -> Result<OpenedSink> {
        let table = table(&self.table);
        let uncommitted = Uncommitted::default();
        let staged = ctx.checkpoints.is_some();
        let committer: Option<Arc<dyn Committer>> = staged.then(|| {
            Arc::new(MemoryCommitter {
                sink: ctx.table.name.clone(),
                table: Arc::clone(&table),
                uncommitted: uncommitted.clone(),
            }) as Arc<dyn Committer>
        });
        let sink = MemorySink {
            table,
            pending: staged.then(Vec::new),
            uncommitted,
        };
        Ok(OpenedSink {
            sink: Box::new(sink),
            committer,
        })
    }
}

struct MemorySink {
    table: Arc<Table>,
    /// With checkpoints: rows since the last barrier.
    pending: Option<Vec<RecordBatch>>,
    uncommitted: Uncommitted<RecordBatch>,
}

#[async_trait::async_trait]
impl Sink for MemorySink {
    async fn write(
        &mut self,
        batch: RecordBatch,
        _due: Option<crate::metrics::Due>,
    ) -> Result<Vec<(usize, String)>> {
        match &mut self.pending {
            Some(pending) => pending.push(batch),
            None => self.table.append(batch),
        }
        Ok(Vec::new())
    }

    async fn pre_commit(&mut self, epoch: u64) -> Result<Snapshot> {
        let Some(pending) = self.pending.as_mut() else {
            return Ok(Snapshot::default());
        };
        self.uncommitted
            .snapshot_rows(epoch, std::mem::take(pending))
    }

    async fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Makes a checkpoint's rows visible, once per checkpoint.
struct MemoryCommitter {
    /// The sink table (in errors).
    sink: String,
    table: Arc<Table>,
    uncommitted: Uncommitted<RecordBatch>,
}

impl MemoryCommitter {
    /// Makes the rows `snapshot` prepared after barrier `visible` visible, unless
    /// checkpoint `point` did so already.
    fn apply(&self, point: &CommitPoint, snapshot: &Snapshot, visible: u64) -> Result<()> {
        let rows = super::rows_after(snapshot, visible, &self.sink, point.epoch)?;
        let key = (
            point.generation.clone(),
            point.epoch,
            point.created_at.clone(),
        );
        let mut state = self.table.state.lock().expect("no panics while locked");
        if state.committed.insert(key) {
            let tag = |b| (point.generation.clone(), point.epoch, b);
            state.rows.extend(rows.into_iter().map(tag));
        }
        drop(state);
        self.uncommitted.committed(point.epoch);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Committer for MemoryCommitter {
    async fn commit(&self, point: &CommitPoint, snapshot: &Snapshot) -> Result<()> {
        self.apply(point, snapshot, self.uncommitted.committed_through())
    }

    async fn recover(
        &self,
        restored: Option<(&CommitPoint, &Snapshot)>,
        previous: Option<(&CommitPoint, &Snapshot)>,
    ) -> Result<()> {
        let Some((point, snapshot)) = restored else {
            return Ok(());
        };
        // What checkpoints after the restored one made visible is read and written again.
        let mut state = self.table.state.lock().expect("no panics while locked");
        let lost = |g: &String, e: u64| *g == point.generation && e > point.epoch;
        state.rows.retain(|(g, e, _)| !lost(g, *e));
        state.committed.retain(|(g, e, _)| !lost(g, *e));
        drop(state);
        self.apply(point, snapshot, previous.map_or(0, |(p, _)| p.epoch))
    }
}
