//! The container images, built from the repository's Dockerfiles unchanged by
//! deploy/docker/build-images.sh (buildah, chroot isolation, on the local stand-in bases of
//! deploy/docker/local-bases.sh: no registry is reachable here) and then used as a user would:
//! samstream:cpu runs its entrypoint on the host network, bound to loopback, goes SERVING,
//! answers grpcurl and a tonic client, runs as the image's non-root user and carries no compiler
//! and no torch; samstream:cuda's CUDA provider resolves every library it needs inside the
//! image, with the image's own environment (there is no GPU here to run it on).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use samstream::proto;
use serde_json::Value;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn buildah(args: &[&str]) -> Output {
    Command::new("buildah").args(args).env("BUILDAH_ISOLATION", "chroot").output().expect("buildah runs (scripts/setup.sh installs it)")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Builds `samstream:<target>` once per test binary (one build at a time: they share the bases
/// and the layer cache), printing the build's own timings and the image's size.
fn image(target: &str) -> String {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|t| t == target) {
        let started = Instant::now();
        let output = Command::new("bash").arg(root().join("deploy/docker/build-images.sh")).arg(target).output().unwrap();
        eprintln!("{}build-images.sh {target} took {:.0?}", String::from_utf8_lossy(&output.stderr), started.elapsed());
        assert!(output.status.success(), "samstream:{target} does not build:\n{}", text(&output));
        built.push(target.to_string());
    }
    format!("samstream:{target}")
}

fn image_config(image: &str) -> Value {
    let output = buildah(&["inspect", "--type", "image", image]);
    assert!(output.status.success(), "{}", text(&output));
    serde_json::from_slice::<Value>(&output.stdout).unwrap()["OCIv1"]["config"].clone()
}

fn image_size(image: &str) -> String {
    String::from_utf8(buildah(&["images", "--noheading", "--format", "{{.Size}}", image]).stdout).unwrap().trim().to_string()
}

/// A working container of an image; removed on drop.
struct Container {
    id: String,
}

impl Container {
    fn of(image: &str) -> Self {
        let output = buildah(&["from", "--pull=never", image]);
        assert!(output.status.success(), "{}", text(&output));
        Self { id: String::from_utf8(output.stdout).unwrap().trim().to_string() }
    }

    fn run_command(&self, env: &[String], command: &[&str]) -> Command {
        let mut run = Command::new("buildah");
        run.env("BUILDAH_ISOLATION", "chroot").arg("run");
        for pair in env {
            run.args(["--env", pair]);
        }
        run.arg(&self.id).arg("--").args(command);
        run
    }

    fn run(&self, command: &[&str]) -> Output {
        self.run_command(&[], command).output().unwrap()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = buildah(&["umount", &self.id]);
        let _ = buildah(&["rm", &self.id]);
    }
}

/// What must not ship in a runtime image: compilers and torch.
fn build_tools_in(container: &Container) -> Vec<String> {
    let mut found = Vec::new();
    let packages = container.run(&["dpkg-query", "-W", "-f", "${Package}\\n"]);
    assert!(packages.status.success(), "{}", text(&packages));
    for package in String::from_utf8_lossy(&packages.stdout).lines() {
        // gcc-12 is a compiler, gcc-12-base only the runtime's base files.
        let unversioned = package.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '.');
        if ["gcc", "g++", "cpp", "clang", "rustc", "cargo", "binutils"].contains(&unversioned) {
            found.push(format!("package {package}"));
        }
    }
    let files = container.run(&[
        "sh",
        "-c",
        "for tool in cc gcc c++ g++ clang rustc cargo ld; do command -v $tool; done; \
         find / -xdev -type d -name torch -path '*-packages/*' 2>/dev/null",
    ]);
    found.extend(String::from_utf8_lossy(&files.stdout).lines().map(|l| format!("file {l}")));
    found
}

/// The pid of the image's server process: chrooted, so its root is not the host's.
fn server_pid(port: u16) -> Option<u32> {
    let listen = format!("127.0.0.1:{port}");
    std::fs::read_dir("/proc").ok()?.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).find(|pid| {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        exe.ends_with("usr/local/bin/samstream") && String::from_utf8_lossy(&environ).contains(&format!("SAMSTREAM_LISTEN={listen}"))
    })
}

fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap() // the effective uid
}

fn grpcurl(args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(common::python().parent().unwrap().join("grpcurl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), text(&out))
}

struct Serving {
    buildah: Child,
    pid: Option<u32>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        let _ = self.buildah.kill();
        let _ = self.buildah.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cpu_image_serves_on_loopback_as_its_non_root_user_and_carries_no_build_tools() {
    let image = tokio::task::spawn_blocking(|| image("cpu")).await.unwrap();
    let config = image_config(&image);
    assert_eq!(config["User"], "samstream", "the image runs as its own user: {config}");
    let entrypoint: Vec<String> = serde_json::from_value(config["Entrypoint"].clone()).unwrap();
    let cmd: Vec<String> = serde_json::from_value(config["Cmd"].clone()).unwrap();
    let command: Vec<&str> = entrypoint.iter().chain(&cmd).map(String::as_str).collect();
    let container = Container::of(&image);

    // The host network, but only loopback: the image listens on 0.0.0.0 by default.
    let (port, metrics_port) = (common::stream::free_port(), common::stream::free_port());
    let env = [
        format!("SAMSTREAM_LISTEN=127.0.0.1:{port}"),
        format!("SAMSTREAM_METRICS_LISTEN=127.0.0.1:{metrics_port}"),
        "SAMSTREAM_VIEWER=true".to_string(),
    ];
    let child = container.run_command(&env, &command).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut serving = Serving { buildah: child, pid: None };
    let started = Instant::now();
    let channel = loop {
        assert!(serving.buildah.try_wait().unwrap().is_none(), "the image's server exited");
        assert!(started.elapsed() < Duration::from_secs(240), "no SERVING within 240 s");
        if let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await {
            let status = HealthClient::new(channel.clone()).check(HealthCheckRequest { service: String::new() }).await;
            if status.is_ok_and(|s| s.into_inner().status == ServingStatus::Serving as i32) {
                break channel;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("samstream:cpu SERVING {:.1?} after start", started.elapsed());

    serving.pid = server_pid(port);
    let pid = serving.pid.expect("the server's process is found");
    assert_eq!(uid_of(pid), 10001, "the server runs as the image's non-root user");

    let info =
        proto::segmenter_client::SegmenterClient::new(channel).get_model_info(proto::GetModelInfoRequest {}).await.unwrap().into_inner();
    eprintln!("model in the image: {} ({}, {})", info.provenance, info.provenance_detail, info.precision);
    assert!(info.files.iter().any(|f| f.name == "encoder_int8.onnx"), "the CPU image's export has the int8 encoder");

    let addr = format!("127.0.0.1:{port}");
    let (ok, listing) = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || grpcurl(&["-plaintext", &addr, "list"], "")
    })
    .await
    .unwrap();
    assert!(ok && listing.lines().any(|l| l.trim() == "samstream.v1.Segmenter"), "{listing}");
    let png = base64::engine::general_purpose::STANDARD.encode(common::png_bytes("small.png"));
    let request = serde_json::json!({
        "image": {"encoded": png},
        "objects": [{"objectId": 5, "points": [{"x": 160, "y": 120, "label": "POINT_LABEL_POSITIVE"}]}],
    });
    let (ok, response) = tokio::task::spawn_blocking(move || {
        grpcurl(&["-plaintext", "-d", "@", &addr, "samstream.v1.Segmenter/Segment"], &request.to_string())
    })
    .await
    .unwrap();
    assert!(ok, "{response}");
    let response: Value = serde_json::from_str(&response).unwrap();
    assert_eq!((response["width"].clone(), response["objects"][0]["objectId"].clone()), (320.into(), 5.into()), "{response}");

    let metrics = http_get(metrics_port, "/metrics");
    assert!(metrics.contains("samstream_encoder_runs_total"), "metrics on loopback: {metrics:.300}");
    let page = http_get(port, "/");
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("<title>samstream viewer</title>"), "the viewer: {page:.300}");

    let tools = build_tools_in(&container);
    assert!(tools.is_empty(), "the runtime image carries build tools: {tools:?}");
    eprintln!("{image} is {} (build tools: none, torch: none)", image_size(&image));
}

/// GET `path` over a plain TCP socket (no HTTP client crate in the dev-dependencies).
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn the_cuda_images_provider_resolves_every_library_inside_the_image() {
    let image = image("cuda");
    let container = Container::of(&image);
    let copied =
        buildah(&["copy", &container.id, root().join("tests/support/check_cuda_image.py").to_str().unwrap(), "/tmp/check_cuda_image.py"]);
    assert!(copied.status.success(), "{}", text(&copied));
    let check = container.run(&["python3", "/tmp/check_cuda_image.py"]);
    let report = text(&check);
    eprintln!("{report}");
    assert!(check.status.success(), "the CUDA image's library closure is broken:\n{report}");
    for library in ["libonnxruntime_providers_cuda.so", "libcudnn.so.9", "libcudnn_cnn.so.9", "libcufft.so.12", "libnvrtc.so.13"] {
        assert!(report.contains(library), "{library} was checked:\n{report}");
    }

    let broken = container.run(&["python3", "/tmp/check_cuda_image.py", "--drop-path-entry", "nvidia/cu13"]);
    assert!(!broken.status.success(), "without the CUDA 13 libraries on the path the check must fail:\n{}", text(&broken));
    assert!(text(&broken).contains("libcublas.so.13 not found"), "{}", text(&broken));

    let tools = build_tools_in(&container);
    assert!(tools.is_empty(), "the runtime image carries build tools: {tools:?}");
    eprintln!("{image} is {}", image_size(&image));
}
