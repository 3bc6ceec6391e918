//! A loopback HTTP/1.1 server for hub tests: serves files from memory with ETags, answers
//! `If-None-Match` with 304, and can be told to serve wrong bytes.

#![allow(clippy::expect_used)] // Test support: a broken loopback server is a failed test.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Default)]
struct State {
    files: HashMap<String, Vec<u8>>,
    wrong_bytes: HashSet<String>,
    log: Vec<(String, u16)>,
}

/// A running server on 127.0.0.1 with an ephemeral port; stops when dropped.
pub struct HubServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl HubServer {
    /// Starts a server with no files.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, state).await;
                });
            }
        });
        HubServer { addr, state, task }
    }

    /// The URL of `path` (no leading slash) on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    /// Serves `bytes` at `path`.
    pub fn put(&self, path: &str, bytes: impl Into<Vec<u8>>) {
        let mut state = self.state.lock().expect("lock");
        state.files.insert(path.to_string(), bytes.into());
    }

    /// Stops serving `path` (404).
    pub fn remove(&self, path: &str) {
        self.state.lock().expect("lock").files.remove(path);
    }

    /// Serves `path` with its first byte flipped (same length, wrong digest).
    pub fn serve_wrong_bytes(&self, path: &str) {
        let mut state = self.state.lock().expect("lock");
        state.wrong_bytes.insert(path.to_string());
    }

    /// The status codes served for `path`, in order.
    pub fn statuses(&self, path: &str) -> Vec<u16> {
        let state = self.state.lock().expect("lock");
        state
            .log
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, s)| *s)
            .collect()
    }

    /// Stops the server; connections are refused afterwards.
    pub fn shutdown(self) {
        self.task.abort();
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn etag(bytes: &[u8]) -> String {
    format!("\"{}\"", &hex::encode(Sha256::digest(bytes))[..16])
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
        if request.len() > 64 * 1024 {
            return Ok(());
        }
    }
    let text = String::from_utf8_lossy(&request);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts
        .next()
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_string();
    let if_none_match = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("if-none-match")
            .then(|| value.trim().to_string())
    });
    let (status, reason, body, tag) = {
        let mut state = state.lock().expect("lock");
        let found = state.files.get(&path).cloned().map(|mut bytes| {
            let tag = etag(&bytes);
            if state.wrong_bytes.contains(&path) && !bytes.is_empty() {
                bytes[0] ^= 0xff;
            }
            (bytes, tag)
        });
        let response = match (method.as_str(), found) {
            ("GET", Some((_, tag))) if if_none_match.as_deref() == Some(tag.as_str()) => {
                (304, "Not Modified", Vec::new(), Some(tag))
            }
            ("GET", Some((bytes, tag))) => (200, "OK", bytes, Some(tag)),
            ("GET", None) => (404, "Not Found", b"not found".to_vec(), None),
            _ => (405, "Method Not Allowed", Vec::new(), None),
        };
        state.log.push((path.clone(), response.0));
        response
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Length: {}\r\n",
        if status == 304 { 0 } else { body.len() }
    );
    if let Some(tag) = tag {
        head.push_str(&format!("ETag: {tag}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if status != 304 {
        stream.write_all(&body).await?;
    }
    stream.shutdown().await
}
