//! The set-up's checkpoint resolver (models/fetch_checkpoint.py) against a real HTTP server on
//! 127.0.0.1 that serves checkpoints this test makes from seeded weights: fallbacks between
//! URLs, refusals that cache nothing, timeouts, the content-keyed cache, offline mode, and the
//! whole road from a download through the export to a served model whose masks match the
//! official predictor on that checkpoint.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::parity::{MAX_SIGN_DISAGREEMENT, load_cases_in, read_logits_in, sign_disagreement};
use samstream::config::ServeConfig;
use samstream::proto::{self, image::Kind, mask::Data};
use serde_json::Value;

fn support(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support").join(file)
}

/// good.pt, html.pt, truncated.pt and other.pt, made once per test binary.
fn checkpoints() -> &'static Path {
    static FOLDER: OnceLock<tempfile::TempDir> = OnceLock::new();
    FOLDER
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let output = Command::new(common::python()).arg(support("make_checkpoints.py")).arg(dir.path()).arg("7").output().unwrap();
            assert!(output.status.success(), "make_checkpoints.py: {}", String::from_utf8_lossy(&output.stderr));
            dir
        })
        .path()
}

fn sha256(path: &Path) -> String {
    let output = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(output.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// tests/support/checkpoint_server.py on 127.0.0.1, with its own request log.
struct Host {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Host {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.log");
        let mut child = Command::new(common::python())
            .arg(support("checkpoint_server.py"))
            .arg(checkpoints())
            .arg(&log)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("checkpoint server printed {line:?}"));
        Self { child, port, log, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().map(str::to_string).collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Resolved {
    json: Value,
    log: String,
    took: Duration,
}

impl Resolved {
    fn reasons(&self) -> String {
        self.json["reasons"].as_array().map(|r| r.iter().map(|v| v.as_str().unwrap()).collect::<Vec<_>>().join("; ")).unwrap_or_default()
    }
}

/// Runs the resolver as scripts/setup.sh does, with `urls` in SAMSTREAM_CHECKPOINT_URL.
fn resolve(cache: &Path, urls: &[String], env: &[(&str, &str)], args: &[&str]) -> Resolved {
    let started = Instant::now();
    let output = Command::new(common::python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fetch_checkpoint.py"))
        .arg("--cache")
        .arg(cache)
        .args(args)
        .env("SAMSTREAM_CHECKPOINT_URL", urls.join(" "))
        .env_remove("SAMSTREAM_CHECKPOINT")
        .env_remove("SAMSTREAM_OFFLINE")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let took = started.elapsed();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "fetch_checkpoint.py failed: {log}");
    let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    eprintln!("{}resolved in {took:.1?}: {json}", log);
    Resolved { json, log, took }
}

/// Every file in the cache folder, hidden ones (partial downloads) included.
fn cache_files(cache: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(cache) else { return Vec::new() };
    let mut names: Vec<String> = entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn a_missing_first_url_falls_back_to_the_second_and_the_download_is_cached_by_content() {
    let host = Host::start();
    let cache = tempfile::tempdir().unwrap();
    let urls = [host.url("missing"), host.url("good.pt")];
    let resolved = resolve(cache.path(), &urls, &[], &[]);
    let digest = sha256(&checkpoints().join("good.pt"));
    assert_eq!(resolved.json["source"], "download");
    assert_eq!(resolved.json["url"], urls[1]);
    assert_eq!(resolved.json["sha256"], digest);
    assert!(resolved.log.contains("/missing: HTTP 404"), "the failure is said: {}", resolved.log);
    assert!(resolved.log.contains("% of 40.7 MB"), "progress lines in a log: {}", resolved.log);
    assert_eq!(host.requests(), ["/missing", "/good.pt"]);
    assert_eq!(cache_files(cache.path()), [format!("sha256-{digest}.pt"), "urls.json".to_string()]);
    assert_eq!(sha256(&cache.path().join(format!("sha256-{digest}.pt"))), digest);
    let index: Value = serde_json::from_str(&std::fs::read_to_string(cache.path().join("urls.json")).unwrap()).unwrap();
    assert_eq!(index[&urls[1]], digest);
}

#[test]
fn broken_downloads_are_refused_with_the_reason_and_nothing_is_cached() {
    let host = Host::start();
    for (file, reason) in [
        ("html.pt", "refused, an HTML page"),
        ("truncated.pt", "refused, not a loadable PyTorch checkpoint"),
        ("cut/good.pt", "truncated: 16279690 of 40699226 bytes"),
        ("other.pt", "refused, not a MobileSAM checkpoint: 439 of its 439 tensors missing"),
        ("missing", "HTTP 404 Not Found"),
    ] {
        let cache = tempfile::tempdir().unwrap();
        let resolved = resolve(cache.path(), &[host.url(file)], &[], &[]);
        assert_eq!(resolved.json["path"], Value::Null, "{file} must not be used");
        assert!(resolved.reasons().contains(reason), "{file}: expected {reason:?} in {:?}", resolved.reasons());
        assert!(resolved.reasons().contains(&host.url(file)), "the reason names the URL");
        assert_eq!(cache_files(cache.path()), Vec::<String>::new(), "{file}: nothing cached, no partial file left");
    }
}

#[test]
fn a_server_that_never_answers_falls_back_within_the_timeout() {
    let host = Host::start();
    let cache = tempfile::tempdir().unwrap();
    // The default timeout (6 s), as an offline set-up meets it.
    let resolved = resolve(cache.path(), &[host.url("hang"), host.url("good.pt")], &[], &[]);
    assert_eq!(resolved.json["url"], host.url("good.pt"));
    assert!(resolved.log.contains("/hang: timed out after 6."), "the hang is said: {}", resolved.log);
    assert!(resolved.took < Duration::from_secs(30), "took {:?}", resolved.took);

    let both_hang = resolve(tempfile::tempdir().unwrap().path(), &[host.url("hang"), host.url("hang")], &[], &["--timeout", "2"]);
    assert_eq!(both_hang.json["path"], Value::Null);
    assert_eq!(both_hang.reasons().matches("timed out after 2.").count(), 2, "{}", both_hang.reasons());
    assert!(both_hang.took < Duration::from_secs(15), "two hanging URLs at 2 s each took {:?}", both_hang.took);
}

#[test]
fn a_cache_hit_makes_no_request_even_offline() {
    let host = Host::start();
    let cache = tempfile::tempdir().unwrap();
    let urls = [host.url("good.pt")];
    assert_eq!(resolve(cache.path(), &urls, &[], &[]).json["source"], "download");
    assert_eq!(host.requests().len(), 1);
    let again = resolve(cache.path(), &urls, &[], &[]);
    assert_eq!(again.json["source"], "cache");
    assert_eq!(again.json["sha256"], sha256(&checkpoints().join("good.pt")));
    let offline = resolve(cache.path(), &urls, &[("SAMSTREAM_OFFLINE", "1")], &[]);
    assert_eq!(offline.json["source"], "cache");
    assert_eq!(host.requests().len(), 1, "cache hits make no request: {:?}", host.requests());
}

#[test]
fn offline_skips_the_network_and_an_unreachable_host_fails_at_once() {
    let host = Host::start();
    let offline = resolve(tempfile::tempdir().unwrap().path(), &[host.url("good.pt")], &[("SAMSTREAM_OFFLINE", "1")], &[]);
    assert_eq!(offline.json["path"], Value::Null);
    assert!(offline.reasons().contains("offline (SAMSTREAM_OFFLINE=1)"), "{}", offline.reasons());
    assert_eq!(host.requests(), Vec::<String>::new());

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let refused = resolve(tempfile::tempdir().unwrap().path(), &[format!("http://127.0.0.1:{closed}/mobile_sam.pt")], &[], &[]);
    assert_eq!(refused.json["path"], Value::Null);
    assert!(refused.reasons().contains("Connection refused"), "{}", refused.reasons());
    assert!(refused.took < Duration::from_secs(15), "took {:?}", refused.took);
}

#[test]
fn a_local_checkpoint_that_is_not_mobilesam_stops_the_set_up() {
    // A file the user named is never silently replaced by random weights.
    let output = Command::new(common::python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fetch_checkpoint.py"))
        .args(["--cache", "/nonexistent", "--offline"])
        .env("SAMSTREAM_CHECKPOINT", checkpoints().join("other.pt"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("other.pt: not a MobileSAM checkpoint"), "{stderr}");
}

/// The reference prompt of a parity case on the wire.
fn wire_prompt(case: &common::parity::Case) -> proto::ObjectPrompt {
    let prompt = common::parity::prompt(case);
    proto::ObjectPrompt {
        object_id: 1,
        points: prompt
            .points
            .iter()
            .map(|p| proto::Point {
                x: p.x,
                y: p.y,
                label: if p.label == samstream::model::PromptLabel::Positive {
                    proto::PointLabel::Positive
                } else {
                    proto::PointLabel::Negative
                } as i32,
            })
            .collect(),
        r#box: prompt.bbox.map(|b| proto::Box { x0: b.x0, y0: b.y0, x1: b.x1, y1: b.y1 }),
    }
}

fn png_inside(png: &[u8]) -> Vec<bool> {
    use opencv::prelude::*;
    let mat = opencv::imgcodecs::imdecode(&opencv::core::Vector::<u8>::from_slice(png), opencv::imgcodecs::IMREAD_GRAYSCALE).unwrap();
    mat.data_bytes().unwrap().iter().map(|&v| v != 0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downloaded_checkpoint_is_exported_and_served_like_the_official_predictor() {
    let host = Host::start();
    let cache = tempfile::tempdir().unwrap();
    let url = host.url("good.pt");
    let resolved = resolve(cache.path(), std::slice::from_ref(&url), &[], &[]);
    let checkpoint = resolved.json["path"].as_str().expect("downloaded").to_string();
    let digest = sha256(&checkpoints().join("good.pt"));

    let model = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let export = Command::new(common::python())
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("models"))
        .args(["export.py", "--checkpoint", &checkpoint, "--checkpoint-url", &url, "--parity-fixtures", "--out"])
        .arg(model.path())
        .output()
        .unwrap();
    assert!(export.status.success(), "export: {}", String::from_utf8_lossy(&export.stderr));
    eprintln!("exported in {:.0?}", started.elapsed());

    let mut config = ServeConfig::new(model.path().to_path_buf(), common::ort_lib());
    config.runtime.intra_threads = 1;
    let server = common::start_server(config).await;
    let mut client = common::client(&server).await;
    let info = client.get_model_info(proto::GetModelInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.provenance, "official_checkpoint");
    assert!(info.meaningful_masks);
    assert_eq!(info.checkpoint_sha256, digest);
    assert_eq!(info.checkpoint_url, url);

    // The served masks against the official SamPredictor's logits on this checkpoint.
    let parity = model.path().join("parity");
    let (mut worst, mut cases) = (0f64, 0);
    for case in load_cases_in(&parity) {
        let image = std::fs::read(parity.join(&case.image)).unwrap();
        let request = proto::SegmentRequest {
            image: Some(proto::Image { kind: Some(Kind::Encoded(image)) }),
            objects: vec![wire_prompt(&case)],
            mask_options: Some(proto::MaskOptions { format: proto::MaskFormat::Png as i32, multimask_output: case.multimask }),
        };
        let object = client.segment(request).await.unwrap().into_inner().objects.remove(0);
        let reference = read_logits_in(&parity, &case);
        let plane = case.width * case.height;
        // The served mask is the reference's best token: its first for single-mask output.
        let best =
            if case.multimask { (0..case.scores.len()).max_by(|&a, &b| case.scores[a].total_cmp(&case.scores[b])).unwrap() } else { 0 };
        let Some(Data::Png(png)) = object.mask.and_then(|m| m.data) else { panic!("{}: a PNG mask", case.name) };
        let inside = png_inside(&png);
        let area = inside.iter().filter(|&&v| v).count();
        assert!(area > 0 && area < plane, "{}: a mask with structure (area {area} of {plane})", case.name);
        let disagreement = sign_disagreement(inside.into_iter(), &reference[best * plane..][..plane]);
        eprintln!("served {:<32} sign disagreement {:.5}%", case.name, 100.0 * disagreement);
        assert!(disagreement <= MAX_SIGN_DISAGREEMENT, "{}: {:.4}% of confident pixels differ", case.name, 100.0 * disagreement);
        worst = worst.max(disagreement);
        cases += 1;
    }
    assert!(cases >= 16, "{cases} parity cases");
    eprintln!("{cases} cases served from the downloaded checkpoint; max sign disagreement {:.5}%", 100.0 * worst);
    server.shutdown().await.unwrap();
}
