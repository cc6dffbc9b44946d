//! Threads of one model version that run its unbatched inferences.
//!
//! Each run could go to tokio's blocking pool, but then the thread that
//! calls the engine (and, under onnxruntime, joins its intra-op work)
//! changes from run to run, and the pool may start new ones. These few
//! long-lived threads call it instead, as the batcher's thread does and as a
//! bare benchmark's loop does.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use anyhow::Context;

type Job = Box<dyn FnOnce() + Send>;

/// `threads` named threads taking jobs in turn. Dropping it stops them once
/// the jobs they hold are done, and with the jobs go the engine they borrow.
pub struct RunThreads {
    jobs: Sender<Job>,
}

impl RunThreads {
    /// The queue is unbounded: callers hold one of the version's run
    /// permits (as many as there are threads), which bounds it.
    pub fn start(name: &str, threads: usize) -> anyhow::Result<RunThreads> {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("run-{name}-{i}"))
                .spawn(move || run_jobs(&queue))
                .context("cannot start an inference thread")?;
        }
        Ok(RunThreads { jobs })
    }

    /// Runs `work` on one of the threads and returns its result.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let (reply, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // A caller that gave up has dropped its receiver.
            let _ = reply.send(work());
        });
        self.jobs
            .send(job)
            .map_err(|_| anyhow::anyhow!("the inference threads stopped"))?;
        result.await.context("an inference thread stopped mid-run")
    }
}

fn run_jobs(queue: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job.
        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
        match job {
            Ok(job) => job(),
            Err(_) => return, // the version was unloaded
        }
    }
}
