//! Browsers on the gRPC port, spoken to by curl over HTTP/1.1 as a browser would: gRPC-Web calls
//! answered, malformed bodies refused with a status while the server goes on, CORS preflights
//! allowed only for the configured origin, and the viewer's files with --viewer.

mod common;

use std::process::Command;

use prost::Message;
use samstream::proto;

const ALLOWED: &str = "http://viewer.example:8080";

struct Answer {
    headers: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_string())
        })
    }

    /// The gRPC-Web frames of the body: (is trailers, payload).
    fn frames(&self) -> Vec<(bool, Vec<u8>)> {
        let mut frames = Vec::new();
        let mut rest = self.body.as_slice();
        while rest.len() >= 5 {
            let length = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
            frames.push((rest[0] & 0x80 != 0, rest[5..5 + length].to_vec()));
            rest = &rest[5 + length..];
        }
        frames
    }

    /// grpc-status from the headers (trailers-only answers) or the trailers frame.
    fn grpc_status(&self) -> Option<(i32, String)> {
        let trailers = self.frames().into_iter().find(|(t, _)| *t).map(|(_, p)| String::from_utf8(p).unwrap()).unwrap_or_default();
        let all = format!("{}\n{trailers}", self.headers);
        let field = |name: &str| {
            all.lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string()))
        };
        Some((field("grpc-status")?.parse().ok()?, field("grpc-message").unwrap_or_default()))
    }
}

/// One HTTP/1.1 request with curl; `body` None for a request without one.
fn curl(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Answer {
    let dir = tempfile::tempdir().unwrap();
    let (head, out) = (dir.path().join("head"), dir.path().join("body"));
    let mut command = Command::new("curl");
    command.args(["--http1.1", "-s", "-X", method, "-D"]).arg(&head).arg("-o").arg(&out).arg(url);
    for (name, value) in headers {
        command.args(["-H", &format!("{name}: {value}")]);
    }
    if let Some(body) = body {
        let file = dir.path().join("request");
        std::fs::write(&file, body).unwrap();
        command.arg("--data-binary").arg(format!("@{}", file.display()));
    }
    let status = command.status().expect("curl runs");
    assert!(status.success(), "curl {method} {url}: {status}");
    Answer { headers: std::fs::read_to_string(head).unwrap(), body: std::fs::read(out).unwrap_or_default() }
}

fn grpc_web_frame(message: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

fn call(base: &str, method: &str, body: &[u8]) -> Answer {
    let headers = [("content-type", "application/grpc-web+proto"), ("x-grpc-web", "1"), ("origin", ALLOWED)];
    curl("POST", &format!("{base}/samstream.v1.Segmenter/{method}"), &headers, Some(body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_calls_cors_and_the_viewer_share_the_grpc_port() {
    let mut config = common::config();
    config.browser.viewer = true;
    config.browser.cors_origins = vec![ALLOWED.into()];
    let server = common::start_server(config).await;
    let base = format!("http://{}", server.addr);

    // A unary call over gRPC-Web: one data frame, then the trailers with grpc-status 0.
    let answer = call(&base, "GetModelInfo", &grpc_web_frame(&[]));
    assert!(answer.headers.starts_with("HTTP/1.1 200"), "{}", answer.headers);
    assert!(answer.header("content-type").unwrap_or_default().starts_with("application/grpc-web"), "{}", answer.headers);
    assert_eq!(answer.header("access-control-allow-origin").as_deref(), Some(ALLOWED));
    let frames = answer.frames();
    let info = proto::ModelInfo::decode(frames[0].1.as_slice()).expect("a ModelInfo");
    assert_eq!(info.input_size, 1024);
    assert_eq!(answer.grpc_status().map(|s| s.0), Some(0));

    // Segment with a real image, as the browser sends it.
    let request = proto::SegmentRequest {
        image: Some(proto::Image { kind: Some(proto::image::Kind::Encoded(common::png_bytes("small.png"))) }),
        objects: vec![common::stream::point_object(1, 10.0, 10.0)],
        mask_options: None,
    };
    let answer = call(&base, "Segment", &grpc_web_frame(&request.encode_to_vec()));
    assert_eq!(answer.grpc_status().map(|s| s.0), Some(0), "{}", answer.headers);
    let segmented = proto::SegmentResponse::decode(answer.frames()[0].1.as_slice()).unwrap();
    assert_eq!(segmented.objects.len(), 1);

    // Malformed bodies: a status that says what is wrong, and the server goes on.
    let truncated = [0u8, 0, 0, 0, 100, 1, 2, 3];
    let (code, message) = call(&base, "GetModelInfo", &truncated).grpc_status().expect("a status for a truncated frame");
    assert_ne!(code, 0, "{message}");
    let garbage = grpc_web_frame(&[0x0a, 0xff, 0xff, 0xff]);
    let (code, message) = call(&base, "Segment", &garbage).grpc_status().expect("a status for an undecodable message");
    assert_ne!(code, 0);
    assert!(message.contains("SegmentRequest.image"), "the status names the field: {message}");
    assert_eq!(call(&base, "GetModelInfo", &grpc_web_frame(&[])).grpc_status().map(|s| s.0), Some(0));

    // Preflights: the configured origin may call, any other gets no CORS grant.
    let preflight = |origin: &str| {
        let headers = [
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type,x-grpc-web,authorization,x-samstream-source"),
        ];
        curl("OPTIONS", &format!("{base}/samstream.v1.Segmenter/OpenSession"), &headers, None)
    };
    let allowed = preflight(ALLOWED);
    assert!(allowed.headers.starts_with("HTTP/1.1 200"), "{}", allowed.headers);
    assert_eq!(allowed.header("access-control-allow-origin").as_deref(), Some(ALLOWED));
    assert!(allowed.header("access-control-allow-headers").unwrap_or_default().contains("x-samstream-source"), "{}", allowed.headers);
    let other = preflight("http://elsewhere.example");
    assert_eq!(other.header("access-control-allow-origin"), None, "{}", other.headers);

    // The viewer's page and script.
    let page = curl("GET", &format!("{base}/"), &[], None);
    assert!(page.headers.starts_with("HTTP/1.1 200"), "{}", page.headers);
    assert!(String::from_utf8_lossy(&page.body).contains("<title>samstream viewer</title>"));
    let script = curl("GET", &format!("{base}/viewer.js"), &[], None);
    assert_eq!(script.header("content-type").as_deref(), Some("text/javascript; charset=utf-8"));
    assert!(script.body.len() > 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_flags_no_origin_is_granted_and_no_page_is_served() {
    let server = common::start_server(common::config()).await;
    let base = format!("http://{}", server.addr);
    let headers = [("origin", ALLOWED), ("access-control-request-method", "POST")];
    let preflight = curl("OPTIONS", &format!("{base}/samstream.v1.Segmenter/GetModelInfo"), &headers, None);
    assert_eq!(preflight.header("access-control-allow-origin"), None, "{}", preflight.headers);
    let page = curl("GET", &format!("{base}/"), &[], None);
    assert!(!String::from_utf8_lossy(&page.body).contains("samstream viewer"));
    // gRPC-Web itself still works, for pages of the same origin and for tools.
    let answer = call(&base, "GetModelInfo", &grpc_web_frame(&[]));
    assert_eq!(answer.grpc_status().map(|s| s.0), Some(0), "{}", answer.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_and_grpc_web_pass_through_envoy() {
    let mut config = common::config();
    config.browser.viewer = true;
    let server = common::start_server(config).await;
    let envoy = tokio::task::spawn_blocking({
        let replica = server.addr.to_string();
        move || common::envoy::Envoy::start(&[replica], &[])
    })
    .await
    .unwrap();
    let base = envoy.url();
    // deploy/envoy/envoy.yaml as it is: the page and its gRPC-Web calls (with the affinity
    // header the page sends) reach the replica over the same listener as native gRPC.
    let page = curl("GET", &format!("{base}/"), &[], None);
    assert!(page.headers.starts_with("HTTP/1.1 200"), "{}\n{}", page.headers, envoy.log());
    assert!(String::from_utf8_lossy(&page.body).contains("<title>samstream viewer</title>"));
    let headers = [("content-type", "application/grpc-web+proto"), ("x-grpc-web", "1"), ("x-samstream-source", "lobby")];
    let answer = curl("POST", &format!("{base}/samstream.v1.Segmenter/GetModelInfo"), &headers, Some(&grpc_web_frame(&[])));
    assert_eq!(answer.grpc_status().map(|s| s.0), Some(0), "{}\n{}", answer.headers, envoy.log());
    assert_eq!(proto::ModelInfo::decode(answer.frames()[0].1.as_slice()).unwrap().input_size, 1024);
}
