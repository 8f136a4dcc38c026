//! The node as a service manager sees it: a pipeline task that dies takes the node down
//! with a non-zero exit and the task named in the log; SIGTERM stops a federated node in
//! order and closes its database.

mod support;

use std::path::Path;
use std::time::Duration;

use entente::process::NodeProcess;
use entente::tasks::FAULT_ENV;
use support::EXE;
use support::federation::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_task_that_panics_stops_the_node_with_its_name() {
    let f = federation_with(false, false).await;
    let mut nodes = f.nodes.into_iter();
    let tours = nodes.next().unwrap();
    let dir = f.dirs[0].path().to_path_buf();
    tours.stop().await.unwrap();
    let node = NodeProcess::start_with_env(Path::new(EXE), &dir, &[(FAULT_ENV, "lns")])
        .await
        .unwrap();
    let status = node.exited(Duration::from_secs(20)).await.unwrap();
    let log = std::fs::read_to_string(dir.join("node.log")).unwrap();
    assert!(!status.success(), "{status}: {log}");
    assert!(log.contains("pipeline task lns panicked"), "{log}");
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_federated_node_in_order_and_closes_its_database() {
    let f = federation_with(true, false).await;
    let mut nodes = f.nodes.into_iter();
    let tours = nodes.next().unwrap();
    let status = tours.stop().await.unwrap();
    let log = std::fs::read_to_string(f.dirs[0].path().join("node.log")).unwrap();
    assert!(status.success(), "{status}: {log}");
    assert!(!log.contains("still referenced"), "{log}");
    assert!(log.contains("stopped cleanly"), "{log}");
    for n in nodes {
        n.stop().await.unwrap();
    }
}
