//! An application server for each member: counts what its node delivers.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use serde_json::Value;

pub(super) struct Inbox {
    pub(super) url: String,
    posts: Arc<Mutex<Vec<Value>>>,
    _stop: tokio_util::sync::DropGuard,
}

impl Inbox {
    /// Listens on a free loopback port; `url` is where the node pushes.
    pub(super) async fn start() -> Result<Inbox> {
        let posts: Arc<Mutex<Vec<Value>>> = Arc::default();
        let p = posts.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let p = p.clone();
                async move {
                    p.lock().unwrap_or_else(|e| e.into_inner()).push(v);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", l.local_addr()?);
        let stop = tokio_util::sync::CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(l, app)
                .with_graceful_shutdown(s.cancelled_owned())
                .await;
        });
        Ok(Inbox {
            url,
            posts,
            _stop: stop.drop_guard(),
        })
    }

    pub(super) fn count(&self) -> usize {
        self.posts.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
