//! A bounded pool for the pipeline's CPU work (Parquet encoding, Sentinel row encoding and
//! gzip): jobs run on tokio's blocking threads, at most `workers` at a time, so they never hold
//! up the reactor and never take more cores than the machine has.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::PipelineError;

#[derive(Debug, Clone)]
pub(crate) struct Cpu(Arc<Semaphore>);

impl Cpu {
    pub(crate) fn new(workers: usize) -> Self {
        Self(Arc::new(Semaphore::new(workers.max(1))))
    }

    /// Runs `job` on a blocking worker once one of the pool's permits is free.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PipelineError> {
        let _permit = self.0.acquire().await.expect("the pool's semaphore is never closed");
        tokio::task::spawn_blocking(job).await.map_err(|e| PipelineError::Task(format!("cpu worker: {e}")))
    }
}

/// The pool size when none is configured: one worker per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
