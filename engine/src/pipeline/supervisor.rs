//! The tasks of one run, started and joined together: a [`JoinSet`] and a
//! cancellation token. The first task to fail cancels the rest (sources
//! stop reading, so every statement and sink drains and ends); every task
//! is joined, none outlives the run; the first error is the run's.

use std::future::Future;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::{Chain, EngineError, Result};

/// The running tasks of a job, each ending with a `T`.
pub(super) struct Supervisor<T> {
    tasks: JoinSet<(String, Result<T>)>,
    cancel: CancellationToken,
}

impl<T: Send + 'static> Supervisor<T> {
    /// Tasks that stop when `cancel` is cancelled (by the caller, or by a failing task).
    pub fn new(cancel: CancellationToken) -> Self {
        Self {
            tasks: JoinSet::new(),
            cancel,
        }
    }

    /// Starts task `name`.
    pub fn spawn(&mut self, name: String, task: impl Future<Output = Result<T>> + Send + 'static) {
        self.tasks.spawn(async move { (name, task.await) });
    }

    /// Starts blocking task `name` on a thread of its own (it must watch the token).
    pub fn spawn_blocking(
        &mut self,
        name: String,
        task: impl FnOnce() -> Result<T> + Send + 'static,
    ) {
        self.tasks.spawn_blocking(move || (name, task()));
    }

    /// Joins every task. The first failure cancels the others; its error is
    /// returned beside what the tasks that succeeded gave.
    pub async fn join_all(mut self) -> (Vec<T>, Option<EngineError>) {
        let (mut done, mut first_error) = (Vec::new(), None);
        while let Some(joined) = self.tasks.join_next().await {
            let failed = match joined {
                Ok((_, Ok(value))) => {
                    done.push(value);
                    continue;
                }
                Ok((name, Err(e))) => {
                    tracing::debug!(task = %name, error = %Chain(&e), "task failed; stopping the job");
                    e
                }
                Err(e) => EngineError::Internal(format!("a task panicked or was cancelled: {e}")),
            };
            self.cancel.cancel();
            first_error.get_or_insert(failed);
        }
        (done, first_error)
    }
}
