//! A local HTTP receiver standing in for a member's application server; the tests tell
//! it to fail (500, 404, 410, no answer) or to be slow.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const OK: u8 = 0;
pub const E500: u8 = 1;
pub const E404: u8 = 2;
pub const E410: u8 = 3;
pub const HANG: u8 = 4;

/// A local HTTP receiver standing in for a member's application server.
#[derive(Default)]
pub struct Hook {
    pub mode: AtomicU8,
    pub delay_ms: AtomicU64,
    pub hits: AtomicU64,
    /// Every POST body as it arrived, in arrival order.
    pub posts: Mutex<Vec<Value>>,
    /// Every file PUT: (path, body).
    pub puts: Mutex<Vec<(String, Vec<u8>)>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub hook: Arc<Hook>,
    stop: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let hook = Arc::new(Hook::default());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(on_post))
            .route("/files/{name}", axum::routing::put(on_put))
            .with_state(hook.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(s.cancelled_owned())
                .await
        });
        Receiver { addr, hook, stop }
    }
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    pub fn set(&self, mode: u8) {
        self.hook.mode.store(mode, Ordering::SeqCst);
    }
    pub fn hits(&self) -> u64 {
        self.hook.hits.load(Ordering::SeqCst)
    }
    pub fn posts(&self) -> Vec<Value> {
        self.hook.posts.lock().unwrap().clone()
    }
}

async fn on_post(State(h): State<Arc<Hook>>, body: Bytes) -> StatusCode {
    h.hits.fetch_add(1, Ordering::SeqCst);
    match h.mode.load(Ordering::SeqCst) {
        E500 => return StatusCode::INTERNAL_SERVER_ERROR,
        E404 => return StatusCode::NOT_FOUND,
        E410 => return StatusCode::GONE,
        HANG => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            return StatusCode::OK;
        }
        _ => {}
    }
    // Recorded on arrival: a node killed while we wait has not seen our 2xx yet.
    h.posts
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
    let delay = h.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    StatusCode::OK
}

async fn on_put(
    State(h): State<Arc<Hook>>,
    axum::extract::Path(name): axum::extract::Path<String>,
    body: Bytes,
) -> StatusCode {
    h.puts.lock().unwrap().push((name, body.to_vec()));
    StatusCode::CREATED
}
