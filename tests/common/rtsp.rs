//! RTSP cameras on loopback (tests/support/rtsp_camera.py: GStreamer's RTSP server with
//! Debian's python3-gi) and the time stamps they draw into every frame.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use opencv::core::Mat;
use opencv::prelude::*;

/// One camera server process with one or more mounts; killed when dropped.
pub struct RtspCamera {
    child: Option<Child>,
    pub port: u16,
    mounts: Vec<String>,
    credentials: Option<(String, String)>,
}

impl RtspCamera {
    pub fn start(mounts: &[&str]) -> Self {
        Self::serve(0, mounts.iter().map(|m| m.to_string()).collect(), None)
    }

    pub fn with_credentials(mounts: &[&str], user: &str, password: &str) -> Self {
        Self::serve(0, mounts.iter().map(|m| m.to_string()).collect(), Some((user.into(), password.into())))
    }

    fn serve(port: u16, mounts: Vec<String>, credentials: Option<(String, String)>) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/rtsp_camera.py");
        let mut command = Command::new("/usr/bin/python3");
        command.arg(script).args(["--port", &port.to_string()]);
        for mount in &mounts {
            command.args(["--mount", mount]);
        }
        if let Some((user, password)) = &credentials {
            command.args(["--user", user, "--password", password]);
        }
        let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("python3-gi runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("rtsp_camera.py printed {line:?}"));
        Self { child: Some(child), port, mounts, credentials }
    }

    /// rtsp://[user:password@]127.0.0.1:PORT/MOUNT
    pub fn url(&self, mount: &str) -> String {
        let userinfo = self.credentials.as_ref().map(|(u, p)| format!("{u}:{p}@")).unwrap_or_default();
        format!("rtsp://{userinfo}127.0.0.1:{}/{mount}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The same cameras again on the same port (after `stop`).
    pub fn restart(&mut self) {
        self.stop();
        let again = Self::serve(self.port, self.mounts.clone(), self.credentials.clone());
        *self = again;
    }
}

impl Drop for RtspCamera {
    fn drop(&mut self) {
        self.stop();
    }
}

const BLOCK: i32 = 16;
const BITS: i32 = 40;

/// The send time (low 32 bits of Unix milliseconds) rtsp_camera.py drew into an RGB frame, if
/// its checksum holds.
pub fn stamp_of(rgb: &Mat) -> Option<u32> {
    let per_row = rgb.cols() / BLOCK;
    let mut word = 0u64;
    for i in 0..BITS {
        let (row, col) = (i / per_row, i % per_row);
        let pixel = rgb.at_2d::<opencv::core::Vec3b>(row * BLOCK + BLOCK / 2, col * BLOCK + BLOCK / 2).ok()?;
        let luma = (u32::from(pixel[0]) + u32::from(pixel[1]) + u32::from(pixel[2])) / 3;
        word = (word << 1) | u64::from(luma > 128);
    }
    let (value, checksum) = ((word >> 8) as u32, (word & 0xFF) as u32);
    ((value ^ (value >> 8) ^ (value >> 16) ^ (value >> 24)) & 0xFF == checksum).then_some(value)
}

/// How old a frame stamped `stamp` was at `unix_us`, in milliseconds.
pub fn age_ms(stamp: u32, unix_us: i64) -> f64 {
    let now = (unix_us / 1000) as u64 as u32;
    f64::from(now.wrapping_sub(stamp) as i32) + (unix_us % 1000) as f64 / 1000.0
}

/// p50 and p99 of `values` (sorted in place).
pub fn percentiles(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}
