//! The node's long-lived tasks, started in order and stopped in reverse, each with its own
//! stop token. While the node runs, a task that ends or panics is a failure of the whole
//! node: it is logged with the task's name and the node exits non-zero, so a service
//! manager restarts it instead of letting it run half-dead (UDP acking frames that no
//! pipeline reads).

use std::future::Future;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Set (in debug builds only) to a task's name to make that task panic shortly after the
/// node started: the end-to-end tests use it to show that the node exits non-zero.
pub const FAULT_ENV: &str = "ENTENTE_FAULT_INJECT_TASK";

/// How a task ended while the node was running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskFailure {
    #[error("pipeline task {0} ended while the node was running")]
    Ended(&'static str),
    #[error("pipeline task {0} panicked: {1}")]
    Panicked(&'static str, String),
}

struct Started {
    name: &'static str,
    stop: CancellationToken,
}

/// The tasks in the order they were started.
pub struct Tasks {
    started: Vec<Started>,
    running: JoinSet<&'static str>,
    /// Names of running tasks by tokio task id, to name a task that panicked.
    names: std::collections::HashMap<tokio::task::Id, &'static str>,
    /// Tasks that ended on their own (the failure `supervise` reported), not awaited again.
    ended: Vec<&'static str>,
    fault: Option<String>,
}

impl Default for Tasks {
    fn default() -> Self {
        Tasks {
            started: Vec::new(),
            running: JoinSet::new(),
            names: Default::default(),
            ended: Vec::new(),
            fault: cfg!(debug_assertions)
                .then(|| std::env::var(FAULT_ENV).ok())
                .flatten(),
        }
    }
}

impl Tasks {
    /// Starts `name`: `task` gets the token that stops it and runs until then.
    pub fn start<F, Fut>(&mut self, name: &'static str, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let fut = task(stop.clone());
        let inject = self.fault.as_deref() == Some(name);
        let handle = self.running.spawn(async move {
            if inject {
                tokio::select! {
                    _ = fut => {}
                    _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {
                        panic!("fault injected into {name} ({FAULT_ENV})")
                    }
                }
            } else {
                fut.await;
            }
            name
        });
        self.names.insert(handle.id(), name);
        self.started.push(Started { name, stop });
    }

    /// Waits for `signal`; or, if a task ends first, reports which and how.
    pub async fn supervise(&mut self, signal: impl Future<Output = ()>) -> Result<(), TaskFailure> {
        let failure = tokio::select! {
            _ = signal => return Ok(()),
            Some(ended) = self.running.join_next_with_id() => match ended {
                Ok((_, name)) => TaskFailure::Ended(name),
                Err(e) => {
                    let name = self.names.get(&e.id()).copied().unwrap_or("unknown");
                    TaskFailure::Panicked(name, panic_message(e))
                }
            },
        };
        let (TaskFailure::Ended(name) | TaskFailure::Panicked(name, _)) = &failure;
        self.ended.push(name);
        Err(failure)
    }

    /// Stops the tasks in reverse order of start, each awaited before the next is asked.
    pub async fn stop(mut self) {
        while let Some(t) = self.started.pop() {
            t.stop.cancel();
            if self.ended.contains(&t.name) {
                continue;
            }
            // The task that just got its token is awaited here, unless it already ended.
            loop {
                match self.running.join_next_with_id().await {
                    Some(Ok((_, name))) if name == t.name => break,
                    Some(Err(e)) if self.names.get(&e.id()) == Some(&t.name) => {
                        error!(task = t.name, "panicked while stopping: {}", panic_message(e));
                        break;
                    }
                    Some(_) => continue, // one that had already ended
                    None => break,
                }
            }
            info!(task = t.name, "stopped");
        }
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-text panic".into()),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn tasks_stop_in_reverse_order() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Tasks::default();
        for name in ["first", "second", "third"] {
            let o = order.clone();
            tasks.start(name, move |stop| async move {
                stop.cancelled().await;
                o.lock().unwrap().push(name);
            });
        }
        let r = tasks.supervise(async {}).await;
        assert_eq!(r, Ok(()));
        tasks.stop().await;
        assert_eq!(*order.lock().unwrap(), ["third", "second", "first"]);
    }

    #[tokio::test]
    async fn a_task_that_ends_or_panics_is_named() {
        let mut tasks = Tasks::default();
        tasks.start("steady", |stop| async move { stop.cancelled().await });
        tasks.start("quitter", |_| async {});
        let r = tasks.supervise(std::future::pending()).await;
        assert_eq!(r, Err(TaskFailure::Ended("quitter")));
        tasks.stop().await;

        let mut tasks = Tasks::default();
        tasks.start("steady", |stop| async move { stop.cancelled().await });
        tasks.start("crasher", |_| async { panic!("boom") });
        let r = tasks.supervise(std::future::pending()).await;
        assert_eq!(r, Err(TaskFailure::Panicked("crasher", "boom".into())));
        tasks.stop().await;
    }
}
