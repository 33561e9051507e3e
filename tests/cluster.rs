//! Replicas behind Envoy, for real: three `samstream serve` processes on 127.0.0.1, Envoy 1.40
//! running deploy/envoy/envoy.yaml (ring hash on x-samstream-source, gRPC health checks), three
//! RTSP cameras served by GStreamer on loopback and nine viewers, three per camera, connecting
//! through Envoy and reconnecting whenever their stream ends, as clients should.
//!
//! It checks that every camera is opened and encoded by one replica for all its viewers, then
//! kills a replica (its viewers get an error, reconnect and land together on the survivor the
//! ring predicts; nobody else notices), restarts it (its cameras are handed back: SOURCE_MOVED
//! on the survivor, viewers follow) and adds a fourth (one camera moves to it). Every viewer's
//! every connection answers or counts as dropped each frame after its first. The failover
//! timings and the encoder-runs-per-frame figure are printed (the machine is shared; nothing
//! is timed as an assertion).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::envoy::{Envoy, http_get};
use common::process::ServerProcess;
use common::rtsp::RtspCamera;
use common::stream::{self as s, free_port};
use common::viewer::{Connection, Viewer};
use samstream::cluster::ring::{DEFAULT_MIN_RING_SIZE, Ring};
use samstream::proto::{self, EventKind};

const SETTLE: Duration = Duration::from_secs(90);
const VIEWERS_PER_CAMERA: usize = 3;

/// A replica: its gRPC and metrics ports stay the same across restarts.
struct Replica {
    addr: String,
    metrics: u16,
    args: Vec<String>,
    process: Option<ServerProcess>,
}

impl Replica {
    fn new(peers: &[String], index: usize, sources: &std::path::Path) -> Self {
        let addr = peers[index].clone();
        let metrics = free_port();
        let args = [
            "--listen",
            &addr,
            "--metrics-listen",
            &format!("127.0.0.1:{metrics}"),
            "--sources",
            &sources.display().to_string(),
            "--source-grace-secs",
            "1",
            "--peer",
            &peers.join(","),
            "--peer-check-ms",
            "500",
            "--handover-grace-secs",
            "2",
            "--shutdown-grace-secs",
            "0.5",
        ]
        .map(String::from)
        .to_vec();
        Self { addr, metrics, args, process: None }
    }

    async fn start(&mut self) {
        let process = ServerProcess::spawn(&self.args, &[]);
        assert_eq!(process.addr, self.addr);
        process.serving(SETTLE).await;
        self.process = Some(process);
    }

    fn kill(&mut self) {
        self.process.take().expect("running").kill();
    }

    /// The value of one series (`name{labels}` exactly) on this replica's /metrics; 0 while it
    /// does not exist yet or the replica is down.
    fn metric(&self, series: &str) -> f64 {
        let body = http_get(&format!("127.0.0.1:{}", self.metrics), "/metrics").unwrap_or_default();
        body.lines().filter_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse::<f64>().ok()).sum()
    }

    fn encoder_runs(&self, source: &str) -> f64 {
        self.metric(&format!("samstream_encoder_runs_total{{origin=\"{source}\"}}"))
    }

    /// The configured sources this replica has open now.
    async fn open_sources(&self) -> BTreeSet<String> {
        let Ok(mut client) = proto::segmenter_client::SegmenterClient::connect(format!("http://{}", self.addr)).await else {
            return BTreeSet::new();
        };
        let listed = client.list_sources(proto::ListSourcesRequest {}).await.unwrap().into_inner().sources;
        let open = [proto::SourceStatus::Connecting, proto::SourceStatus::Connected, proto::SourceStatus::Reconnecting].map(|s| s as i32);
        listed.into_iter().filter(|s| open.contains(&s.status)).map(|s| s.name).collect()
    }
}

/// Camera names for these ports: one owned by each of the three first replicas; when the
/// first dies the other two keep theirs; when the fourth joins it takes exactly the third's.
fn pick_cameras(peers: &[String]) -> [String; 3] {
    let ring = |hosts: &[&String]| Ring::new(&hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>(), DEFAULT_MIN_RING_SIZE);
    let (three, two, four) =
        (ring(&[&peers[0], &peers[1], &peers[2]]), ring(&[&peers[1], &peers[2]]), ring(&peers.iter().collect::<Vec<_>>()));
    let fits = |name: &str, owner: usize, after_kill: Option<usize>, after_join: usize| {
        three.owner(name) == Some(&peers[owner])
            && after_kill.is_none_or(|k| two.owner(name) == Some(&peers[k]))
            && four.owner(name) == Some(&peers[after_join])
    };
    let find = |test: &dyn Fn(&str) -> bool| (0..100_000).map(|i| format!("cam-{i}")).find(|n| test(n)).expect("a name fits");
    [find(&|n| fits(n, 0, None, 0)), find(&|n| fits(n, 1, Some(1), 1)), find(&|n| fits(n, 2, Some(2), 3))]
}

/// Waits until every viewer of `camera` is on `replica` with at least `results` results there.
async fn settle_on(viewers: &[Viewer], camera: &str, replica: &str, results: usize) {
    let deadline = Instant::now() + SETTLE;
    for viewer in viewers.iter().filter(|v| v.source == camera) {
        loop {
            if viewer.current().is_some_and(|c| c.replica.as_deref() == Some(replica) && c.results.len() >= results) {
                break;
            }
            assert!(Instant::now() < deadline, "{camera}: viewer not settled on {replica}: {:#?}", summary(&viewer.connections()));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Every camera is open on exactly one replica (waiting out a source's grace period after its
/// last viewer left).
async fn assert_open_once(replicas: &[Replica], cameras: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut expected = cameras.to_vec();
    expected.sort();
    loop {
        let mut open = Vec::new();
        for replica in replicas.iter().filter(|r| r.process.is_some()) {
            open.extend(replica.open_sources().await);
        }
        open.sort();
        if open == expected {
            return;
        }
        assert!(Instant::now() < deadline, "cameras open across the replicas: {open:?}, expected each of {cameras:?} once");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn summary(connections: &[Connection]) -> Vec<String> {
    connections
        .iter()
        .map(|c| {
            format!(
                "{:?}: {} results, events {:?}, end {:?}",
                c.replica,
                c.results.len(),
                c.events.iter().map(|e| e.0).collect::<Vec<_>>(),
                c.end.as_ref().map(|e| (e.0, e.1.clone()))
            )
        })
        .collect()
}

fn millis(from: Instant, to: Instant) -> u128 {
    to.saturating_duration_since(from).as_millis()
}

/// For the viewers of `camera`: how their connections open at `event` ended, and how long
/// after `event` each got its first result on the connection that settled.
fn failover_report(viewers: &[Viewer], camera: &str, event: Instant, what: &str) -> Vec<tonic::Code> {
    let mut codes = Vec::new();
    for viewer in viewers.iter().filter(|v| v.source == camera) {
        let connections = viewer.connections();
        let ended =
            connections.iter().find(|c| c.opened < event && c.end.as_ref().is_some_and(|e| e.2 >= event)).expect("a connection ended");
        let (code, message, at) = ended.end.clone().unwrap();
        let settled = connections.last().unwrap();
        let attempts = connections.iter().filter(|c| c.opened >= event).count();
        eprintln!(
            "{what}: {camera} viewer: {code:?} ({message}) after {} ms; {attempts} connection attempt(s); first result on {} after {} ms",
            millis(event, at),
            settled.replica.as_deref().unwrap_or("?"),
            millis(event, settled.first_result.unwrap())
        );
        codes.push(code);
    }
    codes
}

/// Viewers of other cameras were not disturbed: still on their first connection, which went
/// on delivering results after `since`.
fn assert_undisturbed(viewers: &[Viewer], cameras: &[&String], since: Instant) {
    for viewer in viewers.iter().filter(|v| cameras.contains(&&v.source)) {
        let connections = viewer.connections();
        assert_eq!(connections.len(), 1, "{}: {:#?}", viewer.source, summary(&connections));
        assert!(connections[0].end.is_none());
        let (first, last) = (connections[0].first_result.unwrap(), connections[0].last_result.unwrap());
        assert!(first < since && last > since, "{}: results before and after the event on one stream", viewer.source);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cameras_stay_on_one_replica_through_a_failure_a_return_and_a_join() {
    let peers: Vec<String> = (0..4).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let cameras = pick_cameras(&peers);
    let [a, b, c] = [&cameras[0], &cameras[1], &cameras[2]];
    let camera_server = RtspCamera::start(&cameras.iter().map(String::as_str).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let toml: String = cameras
        .iter()
        .map(|name| format!("[[source]]\nname = \"{name}\"\nkind = \"rtsp\"\nurl = \"{}\"\n", camera_server.url(name)))
        .collect();
    let sources = s::write_sources(dir.path(), &toml);
    let mut replicas: Vec<Replica> = (0..4).map(|i| Replica::new(&peers, i, &sources)).collect();
    for replica in &mut replicas[..3] {
        replica.start().await;
    }
    let envoy = Envoy::start(&peers, &[]);
    envoy.wait_healthy(&peers[..3], SETTLE).await;
    eprintln!("replicas {:?}; cameras {a} -> replica 1, {b} -> replica 2, {c} -> replica 3 (then replica 4)", &peers[..3]);

    // Nine viewers: each camera's three land on the replica the ring gives it.
    let viewers: Vec<Viewer> = cameras.iter().flat_map(|cam| (0..VIEWERS_PER_CAMERA).map(|_| Viewer::start(&envoy.url(), cam))).collect();
    // And `samstream client`, whose reconnects are checked from its output.
    let client_log = dir.path().join("client.log");
    let mut client = std::process::Command::new(env!("CARGO_BIN_EXE_samstream"))
        .args(["client", "source", a, "--quiet", "--server", &envoy.url(), "--point", "160,120", "--seconds", "600"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&client_log).unwrap())
        .spawn()
        .unwrap();
    for (camera, owner) in [(a, 0), (b, 1), (c, 2)] {
        settle_on(&viewers, camera, &peers[owner], 5).await;
    }
    for (index, replica) in replicas[..3].iter().enumerate() {
        let open = replica.open_sources().await;
        assert_eq!(open, BTreeSet::from([cameras[index].clone()]), "replica {} has exactly its own camera open", index + 1);
    }
    // One encoder run per frame for all three viewers: delivered frames (the union of the
    // viewers' frame ids) against encoder runs summed over every replica's metrics.
    for camera in &cameras {
        let delivered = |viewers: &[Viewer]| -> (usize, usize) {
            let connections: Vec<Connection> = viewers.iter().filter(|v| v.source == *camera).map(|v| v.connections()[0].clone()).collect();
            let frames: BTreeSet<u64> = connections.iter().flat_map(|c| c.results.iter().map(|r| r.frame_id)).collect();
            (frames.len(), connections.iter().map(|c| c.results.len()).sum())
        };
        let (before, _) = delivered(&viewers);
        let runs: f64 = replicas.iter().map(|r| r.encoder_runs(camera)).sum();
        let (after, results) = delivered(&viewers);
        eprintln!(
            "{camera}: {runs} encoder runs across the cluster for {after} distinct frames delivered ({results} results to {VIEWERS_PER_CAMERA} viewers): {:.2} runs per frame",
            runs / after as f64
        );
        assert!(before as f64 <= runs && runs <= after as f64 + 2.0, "{camera}: {runs} runs, {before}..{after} frames delivered");
    }

    // Replica 1 dies: its viewers get an error, reconnect through Envoy and land on the ring's
    // next owner together; the others carry on.
    let survivor = Ring::new(&peers[1..3], DEFAULT_MIN_RING_SIZE).owner(a).unwrap().to_string();
    let killed = Instant::now();
    replicas[0].kill();
    settle_on(&viewers, a, &survivor, 3).await;
    let codes = failover_report(&viewers, a, killed, "replica 1 killed");
    assert!(codes.iter().all(|code| *code != tonic::Code::Ok), "an error status, not a clean end: {codes:?}");
    assert_undisturbed(&viewers, &[b, c], killed);
    let survivor_index = peers.iter().position(|p| *p == survivor).unwrap();
    assert!(replicas[survivor_index].open_sources().await.contains(a));

    // Replica 1 returns: the survivor hands the camera back; its viewers follow.
    let restarted = Instant::now();
    replicas[0].start().await;
    eprintln!("replica 1 restarted: SERVING after {} ms (the times below count from then)", restarted.elapsed().as_millis());
    let restarted = Instant::now();
    settle_on(&viewers, a, &peers[0], 3).await;
    let codes = failover_report(&viewers, a, restarted, "replica 1 back");
    assert!(codes.iter().all(|code| *code == tonic::Code::Unavailable), "{codes:?}");
    for viewer in viewers.iter().filter(|v| v.source == *a) {
        let connections = viewer.connections();
        let handed_back = connections.iter().rev().find(|c| c.replica.as_deref() == Some(survivor.as_str())).unwrap();
        assert!(handed_back.saw(EventKind::SourceMoved), "{:#?}", summary(&connections));
    }
    assert_undisturbed(&viewers, &[b, c], killed);
    assert_open_once(&replicas, &cameras).await;

    // A fourth replica joins: the ring gives it the third camera, which moves there.
    let joined = Instant::now();
    replicas[3].start().await;
    eprintln!("replica 4 started: SERVING after {} ms (the times below count from then)", joined.elapsed().as_millis());
    let joined = Instant::now();
    settle_on(&viewers, c, &peers[3], 3).await;
    failover_report(&viewers, c, joined, "replica 4 joined");
    assert_undisturbed(&viewers, &[b], killed);
    assert_open_once(&replicas, &cameras).await;
    assert!(!replicas[2].open_sources().await.contains(c), "replica 3 closed the camera replica 4 took");

    // The client followed the camera through the failure and the hand-back, and runs on.
    assert!(client.try_wait().unwrap().is_none(), "samstream client still watching");
    let _ = client.kill();
    let _ = client.wait();
    let output = std::fs::read_to_string(&client_log).unwrap();
    let reconnects: Vec<&str> = output.lines().filter(|l| l.starts_with("[reconnect]")).collect();
    eprintln!("samstream client: {reconnects:#?}");
    assert!(reconnects.iter().any(|l| l.contains("Internal") || l.contains("Cancelled")), "the proxy's reset was retried:\n{output}");
    assert!(
        output.contains("EVENT_KIND_SOURCE_MOVED") && reconnects.iter().any(|l| l.contains("Unavailable")),
        "the hand-back was followed:\n{output}"
    );
    let last_start = output.lines().rfind(|l| l.contains("EVENT_KIND_STARTED")).unwrap_or_default();
    assert!(last_start.ends_with(&format!("on replica {}", peers[0])), "the client is back on replica 1: {last_start}");

    // Nothing lost: on every connection every frame after the first is answered or counted.
    for viewer in viewers {
        let source = viewer.source.clone();
        for connection in viewer.stop().await.iter().filter(|c| !c.results.is_empty()) {
            s::check_results(&connection.results);
            assert!(connection.replica.is_some(), "{source}: STARTED names the replica");
        }
    }
    let moved: f64 = replicas.iter().map(|r| r.metric("samstream_sources_handed_over_total")).sum();
    eprintln!("sources handed over (all replicas): {moved}");
    assert!(moved >= 2.0, "the hand-back and the join were handovers");
}
