//! deploy/ checked against the code by tests/support/check_deploy.py: manifests, Prometheus
//! config, Grafana dashboard, Dockerfiles and compose file parse and name only metrics,
//! environment variables and files that exist; Envoy, the headless Service and the replicas'
//! peer settings agree; the Kubernetes objects pass the API schemas
//! (kubernetes-validate, strict) and the compose file Docker Compose's own `config`. No cluster
//! here, so the manifests are validated, not deployed; the images are built and run in
//! tests/images.rs.

mod common;

use std::path::Path;
use std::process::Command;

fn check(deploy: &Path) -> (bool, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new(common::python())
        .arg(Path::new(root).join("tests/support/check_deploy.py"))
        .arg(root)
        .arg("--deploy")
        .arg(deploy)
        .output()
        .expect("running check_deploy.py");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn deploy_files_agree_with_the_server() {
    let (ok, report) = check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy"));
    assert!(ok, "{report}");
    assert!(report.contains("0 problems"), "{report}");
}

#[test]
fn the_check_catches_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("deploy");
    let status = Command::new("cp").arg("-r").arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")).arg(&copy).status().unwrap();
    assert!(status.success());
    let edit = |file: &str, from: &str, to: &str| {
        let path = copy.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} no longer contains {from}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    };
    edit("k8s/hpa.yaml", "name: samstream_active_streams", "name: samstream_open_streams");
    edit("grafana/samstream-dashboard.json", "samstream_frames_dropped_total", "samstream_frames_lost_total");
    edit("k8s/deployment.yaml", "port: 50051", "port: 50052");
    edit("k8s/deployment.yaml", "SAMSTREAM_MAX_STREAMS", "SAMSTREAM_STREAM_LIMIT");
    edit("k8s/deployment.yaml", "replicas: 2", "replicas: two");
    edit("docker/compose.yaml", "stop_grace_period: 30s", "stop_grace_periods: 30s");
    edit("envoy/envoy.yaml", "header_name: x-samstream-source", "header_name: x-camera");
    edit("docker/compose.yaml", "SAMSTREAM_ADVERTISE_ADDR: 172.28.0.12:50051", "SAMSTREAM_ADVERTISE_ADDR: 172.28.0.11:50051");
    std::fs::write(copy.join("k8s/pdb.yaml"), "kind: [unclosed").unwrap();
    let (ok, report) = check(&copy);
    assert!(!ok, "{report}");
    for expected in [
        "samstream_open_streams",
        "samstream_frames_lost_total",
        "startupProbe must be a gRPC health probe",
        "SAMSTREAM_STREAM_LIMIT",
        "pdb.yaml",
        "Deployment/samstream is invalid for Kubernetes 1.27.0: 'two' is not of type 'integer'",
        "docker compose config (v2.40.3) refuses compose.yaml",
        "envoy.yaml hashes on x-camera, the server's affinity header is x-samstream-source",
        "k8s/envoy.yaml's ConfigMap differs from deploy/envoy/envoy.yaml",
        "compose samstream-2 advertises another address than its own",
    ] {
        assert!(report.contains(expected), "no problem about {expected}:\n{report}");
    }
}
