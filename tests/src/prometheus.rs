//! A real Prometheus server for the prometheus-probe tests: started on 127.0.0.1 with a free
//! port, a temporary storage directory and a configuration that scrapes itself every second;
//! killed and its directory removed on drop, even when the test panics.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Debian package's binary.
pub const BINARY: &str = "/usr/bin/prometheus";

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    _dir: tempfile::TempDir,
}

/// GETs `path` from `addr` (HTTP/1.0, the server closes); the body, or `None` on any failure.
pub fn get(addr: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

impl Prometheus {
    /// Starts Prometheus and waits (up to 60 s) until its `up` series has a sample; `None`
    /// (after recording the skip) when the binary is not installed.
    pub fn start(test: &str) -> Option<Prometheus> {
        Prometheus::start_with(test, "")
    }

    /// [`Prometheus::start`] with more scrape jobs: `jobs` is YAML appended to its
    /// `scrape_configs` list (each item indented by two spaces, `  - job_name: ...`).
    pub fn start_with(test: &str, jobs: &str) -> Option<Prometheus> {
        if !std::path::Path::new(BINARY).exists() {
            crate::skip(test, "prometheus (Debian package `prometheus`)");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = crate::free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['{addr}']\n{jobs}"
            ),
        )
        .expect("write prometheus.yml");
        let child = Command::new(BINARY)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        let start = Instant::now();
        loop {
            let ready = get(&p.addr, "/api/v1/query?query=up")
                .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
                .is_some_and(|v| {
                    v["data"]["result"]
                        .as_array()
                        .is_some_and(|r| !r.is_empty())
                });
            if ready {
                eprintln!(
                    "prometheus on {} had its first `up` sample after {:?}",
                    p.addr,
                    start.elapsed()
                );
                return Some(p);
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "prometheus on {} had no `up` sample within 60 s",
                p.addr
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
