//! A node running as a child process: start it, learn its ports, call its API, stop it
//! with SIGTERM (or SIGKILL to test crash recovery). Used by the demo and the tests.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::run::{LISTENING_FILE, Listening};

pub struct NodeProcess {
    child: Child,
    pub dir: PathBuf,
    pub listening: Listening,
    pub token: String,
    pub log: PathBuf,
    http: reqwest::Client,
}

impl NodeProcess {
    /// Starts `exe node --config DIR/node.toml` and waits until it listens.
    /// Its log goes to `DIR/node.log`.
    pub async fn start(exe: &Path, dir: &Path) -> Result<Self> {
        Self::start_with_env(exe, dir, &[]).await
    }

    /// As [`NodeProcess::start`], with extra environment variables for the node.
    pub async fn start_with_env(exe: &Path, dir: &Path, env: &[(&str, &str)]) -> Result<Self> {
        let cfg = crate::config::NodeConfig::load(&dir.join("node.toml"))?;
        let data_dir = cfg.data_dir();
        let listening_path = data_dir.join(LISTENING_FILE);
        // A node killed with -9 leaves its file behind; never read a stale one.
        let _ = std::fs::remove_file(&listening_path);
        let log = dir.join("node.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let mut child = Command::new(exe)
            .arg("node")
            .arg("--config")
            .arg(dir.join("node.toml"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("node exited at once"))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let listening = loop {
            if let Some(status) = child.try_wait()? {
                bail!("node exited with {status} before listening; log:\n{}", tail(&log));
            }
            if let Ok(bytes) = std::fs::read(&listening_path)
                && let Ok(l) = serde_json::from_slice::<Listening>(&bytes)
                && l.pid == pid
            {
                break l;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("node did not listen within 60 s; log:\n{}", tail(&log));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let token = crate::keys::load_token(&cfg.token_file())?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            child,
            dir: dir.to_path_buf(),
            listening,
            token,
            log,
            http,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listening.api)
    }

    /// A request to the node's API with the operator token.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(&self.token)
    }

    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        let r = self.api(reqwest::Method::GET, path).send().await?;
        let status = r.status();
        let body = r.text().await?;
        if !status.is_success() {
            bail!("GET {path}: {status}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> Result<serde_json::Value> {
        let r = self.api(reqwest::Method::POST, path).json(body).send().await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("POST {path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> Result<String> {
        Ok(self
            .http
            .get(self.url("/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// Stops the node with SIGTERM and waits for it to exit.
    pub async fn stop(mut self) -> Result<ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                let _ = self.child.kill().await;
                bail!("node ignored SIGTERM for 30 s; log:\n{}", tail(&self.log))
            }
        }
    }

    /// Waits up to `within` for the node to exit by itself.
    pub async fn exited(mut self, within: Duration) -> Result<ExitStatus> {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                let _ = self.child.kill().await;
                bail!("node still running after {within:?}; log:\n{}", tail(&self.log))
            }
        }
    }

    /// Kills the node with SIGKILL, as a crash would.
    pub async fn kill9(mut self) -> Result<()> {
        self.signal(Signal::SIGKILL)?;
        self.child.wait().await?;
        Ok(())
    }

    fn signal(&self, s: Signal) -> Result<()> {
        let pid = self.child.id().ok_or_else(|| anyhow!("node already exited"))?;
        let pid = i32::try_from(pid).context("pid out of range")?;
        kill(Pid::from_raw(pid), s).with_context(|| format!("cannot send {s} to {pid}"))
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The value of an unlabelled metric, or of one labelled series (`name{label="v"}`).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_series() {
        let t = "# HELP x y\nentente_a_total 3\nentente_b_total{reason=\"too_short\"} 7\n";
        assert_eq!(super::metric(t, "entente_a_total"), Some(3.0));
        assert_eq!(
            super::metric(t, "entente_b_total{reason=\"too_short\"}"),
            Some(7.0)
        );
        assert_eq!(super::metric(t, "entente_c_total"), None);
    }
}
