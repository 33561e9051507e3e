//! The real `samstream serve` binary as a child process, its output kept in a file, for tests
//! that read the logs or kill a server.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use samstream::proto::segmenter_client::SegmenterClient;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

pub struct ServerProcess {
    child: Option<Child>,
    pub addr: String,
    /// Where stdout (after the listening line) and stderr are kept.
    logs: tempfile::TempDir,
}

impl ServerProcess {
    /// `samstream serve` with the test model, one ORT thread, `args` and `env` added; waits for
    /// the listening line (not for SERVING: see `serving`).
    pub fn spawn(args: &[String], env: &[(&str, &str)]) -> Self {
        let logs = tempfile::tempdir().unwrap();
        let err = std::fs::File::create(logs.path().join("stderr.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_samstream"))
            .arg("serve")
            .arg("--model-dir")
            .arg(super::model_dir())
            .args(["--intra-threads", "1"])
            .args(args)
            .env("ORT_DYLIB_PATH", super::ort_lib())
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("samstream listening on ").unwrap_or_else(|| panic!("first line: {line:?}")).to_string();
        let out_path = logs.path().join("stdout.log");
        std::thread::spawn(move || {
            let mut out = std::fs::File::create(out_path).unwrap();
            let _ = std::io::copy(&mut stdout, &mut out);
        });
        Self { child: Some(child), addr, logs }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Connects and waits until health says SERVING.
    pub async fn serving(&self, within: Duration) -> SegmenterClient<Channel> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr)).unwrap().connect().await {
                let status = HealthClient::new(channel.clone()).check(HealthCheckRequest { service: String::new() }).await;
                if status.is_ok_and(|s| s.into_inner().status == ServingStatus::Serving as i32) {
                    return SegmenterClient::new(channel);
                }
            }
            assert!(Instant::now() < deadline, "{} not SERVING within {within:?}", self.addr);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: the process vanishes as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }

    /// Everything the process has written so far.
    pub fn output(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.logs.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stdout.log"), read("stderr.log"))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
