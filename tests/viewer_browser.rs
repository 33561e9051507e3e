//! The browser viewer in real headless Chromium (tests/support/viewer_browser.py, Selenium)
//! against a real `samstream serve --viewer --auth-token-file` reading a real RTSP camera: the
//! page refuses to work without the token and works with it, draws the camera's frames, turns
//! clicks, shift-clicks and drags into prompts whose masks it draws, deletes objects, shows the
//! server's stages and its own click-to-mask time, shows the field the server names when it
//! refuses a point (and forgets that point), and reconnects with its prompts replayed when the
//! server is killed and started again. Screenshots are kept under the target directory.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::process::ServerProcess;
use common::rtsp::RtspCamera;

const TOKEN: &str = "viewer-test-token";
/// Clicks on one object, which is also the server's limit of points per object: one more is refused.
const CLICKS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_segments_a_live_camera_in_chromium() {
    let camera = RtspCamera::start(&["cam"]);
    let dir = tempfile::tempdir().unwrap();
    let sources = dir.path().join("sources.toml");
    std::fs::write(&sources, format!("[[source]]\nname = \"cam\"\nkind = \"rtsp\"\nurl = {:?}\n", camera.url("cam"))).unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{TOKEN}\n")).unwrap();
    let port = common::stream::free_port();
    let args: Vec<String> = [
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--viewer",
        "--sources",
        &sources.display().to_string(),
        "--auth-token-file",
        &tokens.display().to_string(),
        "--max-points-per-object",
        &CLICKS.to_string(),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let mut server = ServerProcess::spawn(&args, &[]);
    server.serving(Duration::from_secs(120)).await;

    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("viewer");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/viewer_browser.py");
    let mut browser = Command::new(common::browser_python())
        .arg(script)
        .args([
            "--url",
            &format!("http://127.0.0.1:{port}/"),
            "--token",
            TOKEN,
            "--source",
            "cam",
            "--clicks",
            &CLICKS.to_string(),
            "--out",
        ])
        .arg(&screenshots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the browser venv's python runs the Selenium script");
    let mut to_browser = browser.stdin.take().unwrap();
    let mut summary = String::new();
    for line in BufReader::new(browser.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "restart" {
            // Killed as in a crash, then the same server on the same port.
            server.kill();
            server = ServerProcess::spawn(&args, &[]);
            server.serving(Duration::from_secs(120)).await;
            writeln!(to_browser, "restarted").unwrap();
        } else {
            summary = line;
        }
    }
    let status = browser.wait().unwrap();
    assert!(status.success(), "the browser checks failed ({status}); server log:\n{}", server.output());
    eprintln!("viewer: {summary}");
    eprintln!("screenshots in {}", screenshots.display());
    let summary: serde_json::Value = serde_json::from_str(&summary).expect("the script's JSON summary");
    assert_eq!(summary["reconnected_session"], true);
}
