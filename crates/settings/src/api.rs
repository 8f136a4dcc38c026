//! The API's HTTP deadlines. Their defaults are those of node.toml's `[api]`, which is
//! read here, so they live here and `entente_api` re-exports them: the section parses
//! without the HTTP server.

use std::time::Duration;

/// How long a client may take, per connection and per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// From a connection's opening, or the end of its last response, to the end of the
    /// next request's headers; then the connection is closed.
    pub header_read_timeout: Duration,
    /// From a request's headers to its response, the body read included: 408 after it.
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
        }
    }
}
