//! Splits a DataFusion physical plan into the pieces a streaming operator runs.
//!
//! ```text
//!   ProjectionExec (vwap = sum(pv) / sum(v))                     ┐ final part: run once
//!     AggregateExec mode=Final                                   ┘ per closed window
//!       AggregateExec mode=Partial                               ┐ partial part: run on
//!         FilterExec (WHERE)                                     │ every input batch,
//!           DataSourceExec (one in-memory batch)                 ┘ giving keyed state
//! ```
//!
//! The partial part turns each input batch into accumulator *state* rows
//! (DataFusion's `Accumulator::state` / `GroupsAccumulator::state`), keyed by
//! the group columns including `window_start`/`window_end`. The operator keeps
//! those rows per window, may fold them together with a `PartialReduce`
//! aggregate, and runs the final part when the watermark closes the window.
//! Every aggregate DataFusion has works, because DataFusion runs it.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::{internal_err, plan_err, Result};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::{displayable, ExecutionPlan};

/// A statement's physical plan, ready to be run piece by piece on a stream.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    root: Arc<dyn ExecutionPlan>,
    leaf: Arc<dyn ExecutionPlan>,
    leaf_projection: Option<Vec<usize>>,
    input_schema: SchemaRef,
    aggregate: Option<AggregateSplit>,
}

#[derive(Debug, Clone)]
struct AggregateSplit {
    /// The `Partial` aggregate and everything under it.
    partial: Arc<dyn ExecutionPlan>,
    /// The `Final` aggregate (its parameters build the `PartialReduce` step).
    final_agg: Arc<dyn ExecutionPlan>,
}

impl StreamPlan {
    /// Wraps a physical plan whose only leaf scans an in-memory table of
    /// `input_schema`. Fails on shapes a stream cannot run (joins, several
    /// aggregates, sorts over the whole stream).
    pub fn try_new(root: Arc<dyn ExecutionPlan>, input_schema: SchemaRef) -> Result<Self> {
        let mut leaves = Vec::new();
        collect_leaves(&root, &mut leaves);
        let [leaf] = leaves.as_slice() else {
            return plan_err!("a streaming statement must read exactly one source table (joins are not supported yet)");
        };
        let Some(memory) = leaf
            .downcast_ref::<DataSourceExec>()
            .and_then(|d| d.data_source().downcast_ref::<MemorySourceConfig>())
        else {
            return internal_err!("unexpected leaf {} in a streaming plan", leaf.name());
        };
        let leaf_projection = memory.projection().clone();

        let mut aggregates = Vec::new();
        collect_aggregates(&root, &mut aggregates);
        let aggregate = match aggregates.as_slice() {
            [] => None,
            [final_agg, partial] if mode(final_agg) == Some(AggregateMode::Final) && mode(partial) == Some(AggregateMode::Partial) => {
                Some(AggregateSplit { partial: Arc::clone(partial), final_agg: Arc::clone(final_agg) })
            }
            _ => return plan_err!("a streaming statement may have one windowed GROUP BY; this plan has another shape:\n{}", displayable(root.as_ref()).indent(true)),
        };
        if let Some(name) = first_unsupported(&root) {
            let why = match name.as_str() {
                "SortExec"
                | "SortPreservingMergeExec"
                | "GlobalLimitExec"
                | "LocalLimitExec"
                | "WindowAggExec"
                | "BoundedWindowAggExec" => "(ORDER BY, LIMIT or OVER over the whole stream) ",
                _ => "",
            };
            return plan_err!(
                "{name} {why}is not supported in a streaming statement (it runs {})",
                SUPPORTED.join(", ")
            );
        }
        Ok(Self {
            root,
            leaf: Arc::clone(leaf),
            leaf_projection,
            input_schema,
            aggregate,
        })
    }

    /// The whole plan, for `engine check` and logs.
    pub fn root(&self) -> &Arc<dyn ExecutionPlan> {
        &self.root
    }

    /// Schema of the batches the statement consumes.
    pub fn input_schema(&self) -> &SchemaRef {
        &self.input_schema
    }

    /// Schema of the rows the statement produces (the query's columns).
    pub fn output_schema(&self) -> SchemaRef {
        self.root.schema()
    }

    /// True when the statement aggregates (and so keeps state between batches).
    pub fn is_aggregate(&self) -> bool {
        self.aggregate.is_some()
    }

    /// The input columns the aggregate groups by as they are (a `GROUP BY
    /// symbol`, not `GROUP BY upper(symbol)`); empty without an aggregate.
    pub fn group_columns(&self) -> Vec<String> {
        use datafusion::physical_expr::expressions::Column;
        let Some(agg) = self.aggregate.as_ref() else {
            return Vec::new();
        };
        let Some(partial) = agg.partial.downcast_ref::<AggregateExec>() else {
            return Vec::new();
        };
        partial
            .group_expr()
            .expr()
            .iter()
            .filter_map(|(e, _)| e.downcast_ref::<Column>().map(|c| c.name().to_string()))
            .collect()
    }

    /// How many leading columns of the state rows are the `GROUP BY`'s
    /// (window columns included); 0 without an aggregate.
    pub fn group_count(&self) -> usize {
        self.aggregate
            .as_ref()
            .and_then(|a| a.partial.downcast_ref::<AggregateExec>())
            .map_or(0, |p| p.group_expr().expr().len())
    }

    /// Schema of the aggregate state rows, for a statement that aggregates.
    pub fn state_schema(&self) -> Option<SchemaRef> {
        self.aggregate.as_ref().map(|a| a.partial.schema())
    }

    /// The whole statement over one batch (for statements without aggregates).
    pub fn stateless_over(&self, batch: RecordBatch) -> Result<Arc<dyn ExecutionPlan>> {
        let input = memory_input(
            vec![batch],
            self.leaf_projection.clone(),
            Arc::clone(&self.input_schema),
        )?;
        replace(&self.root, &self.leaf, &input)
    }

    /// The partial aggregate over one input batch: its output is state rows.
    pub fn partial_over(&self, batch: RecordBatch) -> Result<Arc<dyn ExecutionPlan>> {
        let split = self.split()?;
        let input = memory_input(
            vec![batch],
            self.leaf_projection.clone(),
            Arc::clone(&self.input_schema),
        )?;
        replace(&split.partial, &self.leaf, &input)
    }

    /// Folds several state batches into one (`PartialReduce`), to bound the
    /// number of batches a long window keeps.
    pub fn reduce_over(&self, states: Vec<RecordBatch>) -> Result<Arc<dyn ExecutionPlan>> {
        let split = self.split()?;
        let Some(final_agg) = split.final_agg.downcast_ref::<AggregateExec>() else {
            return internal_err!("final aggregate is not an AggregateExec");
        };
        let input = memory_input(states, None, split.partial.schema())?;
        let reduce = AggregateExec::try_new(
            AggregateMode::PartialReduce,
            Arc::new(final_agg.group_expr().clone()),
            final_agg.aggr_expr().to_vec(),
            final_agg.filter_expr().to_vec(),
            input,
            final_agg.input_schema(),
        )?;
        Ok(Arc::new(reduce))
    }

    /// The final aggregate and everything above it over a closed window's state rows.
    pub fn final_over(&self, states: Vec<RecordBatch>) -> Result<Arc<dyn ExecutionPlan>> {
        let split = self.split()?;
        let input = memory_input(states, None, split.partial.schema())?;
        replace(&self.root, &split.partial, &input)
    }

    fn split(&self) -> Result<&AggregateSplit> {
        match &self.aggregate {
            Some(split) => Ok(split),
            None => internal_err!("statement has no aggregate"),
        }
    }
}

/// A one-partition in-memory input of `batches`.
fn memory_input(
    batches: Vec<RecordBatch>,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(MemorySourceConfig::try_new_exec(
        &[batches],
        schema,
        projection,
    )?)
}

fn mode(plan: &Arc<dyn ExecutionPlan>) -> Option<AggregateMode> {
    plan.downcast_ref::<AggregateExec>().map(|a| *a.mode())
}

fn collect_leaves(plan: &Arc<dyn ExecutionPlan>, out: &mut Vec<Arc<dyn ExecutionPlan>>) {
    let children = plan.children();
    if children.is_empty() {
        out.push(Arc::clone(plan));
    }
    for child in children {
        collect_leaves(child, out);
    }
}

fn collect_aggregates(plan: &Arc<dyn ExecutionPlan>, out: &mut Vec<Arc<dyn ExecutionPlan>>) {
    if mode(plan).is_some() {
        out.push(Arc::clone(plan));
    }
    for child in plan.children() {
        collect_aggregates(child, out);
    }
}

/// The physical operators the streaming split runs: a statement's plan is
/// cut into per-batch pieces, which is only sound for operators that work
/// row by row or inside the windowed aggregate. Anything else (sorts and
/// limits over the whole stream, joins, window functions, operators a
/// DataFusion upgrade adds) is refused rather than run wrongly.
const SUPPORTED: &[&str] = &[
    "DataSourceExec",
    "ProjectionExec",
    "FilterExec",
    "AggregateExec",
    "CoalesceBatchesExec",
    "CoalescePartitionsExec",
    "RepartitionExec",
    "CooperativeExec",
];

/// The first operator of `plan` (top down) that [`SUPPORTED`] does not list.
fn first_unsupported(plan: &Arc<dyn ExecutionPlan>) -> Option<String> {
    if !SUPPORTED.contains(&plan.name()) {
        return Some(plan.name().to_string());
    }
    plan.children().into_iter().find_map(first_unsupported)
}

fn same(a: &Arc<dyn ExecutionPlan>, b: &Arc<dyn ExecutionPlan>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

/// `plan` with the node `target` (by identity) swapped for `with`.
fn replace(
    plan: &Arc<dyn ExecutionPlan>,
    target: &Arc<dyn ExecutionPlan>,
    with: &Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    if same(plan, target) {
        return Ok(Arc::clone(with));
    }
    let children = plan.children();
    if children.is_empty() {
        return Ok(Arc::clone(plan));
    }
    let new_children = children
        .into_iter()
        .map(|c| replace(c, target, with))
        .collect::<Result<Vec<_>>>()?;
    replace_children_if_necessary(Arc::clone(plan), new_children)
}
