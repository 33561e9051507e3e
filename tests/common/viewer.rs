//! A viewer as a robust client runs one: it watches a server-side source through a proxy,
//! reconnecting after every end of its stream, and keeps a log of each connection (which
//! replica served it, its results and events, how it ended) for the test to check.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use samstream::proto::{self, segmenter_client::SegmenterClient, stream_response::Msg as Resp};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::stream as s;

/// How long a viewer waits before reconnecting.
pub const RECONNECT_AFTER: Duration = Duration::from_millis(200);

/// One StreamSegment call (or one failed attempt to open one).
#[derive(Debug, Clone)]
pub struct Connection {
    pub opened: Instant,
    /// From the STARTED event: "source NAME on replica ADDR".
    pub replica: Option<String>,
    pub results: Vec<proto::FrameResult>,
    pub first_result: Option<Instant>,
    pub last_result: Option<Instant>,
    pub events: Vec<(proto::EventKind, String, Instant)>,
    /// How it ended: the status code (Ok for a clean end) and message.
    pub end: Option<(tonic::Code, String, Instant)>,
}

impl Connection {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            replica: None,
            results: Vec::new(),
            first_result: None,
            last_result: None,
            events: Vec::new(),
            end: None,
        }
    }

    pub fn saw(&self, kind: proto::EventKind) -> bool {
        self.events.iter().any(|(k, _, _)| *k == kind)
    }
}

pub struct Viewer {
    pub source: String,
    log: Arc<Mutex<Vec<Connection>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Viewer {
    /// Starts watching `source` through `proxy_url`, with the affinity header, a point prompt
    /// in the middle of a 320x240 frame.
    pub fn start(proxy_url: &str, source: &str) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(watch_source(proxy_url.to_string(), source.to_string(), log.clone(), stopped));
        Self { source: source.to_string(), log, stop, task }
    }

    pub fn connections(&self) -> Vec<Connection> {
        self.log.lock().unwrap().clone()
    }

    /// The connection now open (the last one) if it has produced results.
    pub fn current(&self) -> Option<Connection> {
        self.connections().pop().filter(|c| c.end.is_none() && !c.results.is_empty())
    }

    pub async fn stop(self) -> Vec<Connection> {
        let _ = self.stop.send(true);
        let connections = self.log.clone();
        let _ = self.task.await;
        connections.lock().unwrap().clone()
    }
}

async fn watch_source(proxy_url: String, source: String, log: Arc<Mutex<Vec<Connection>>>, mut stopped: watch::Receiver<bool>) {
    let record = |update: &mut dyn FnMut(&mut Connection)| update(log.lock().unwrap().last_mut().expect("a connection"));
    while !*stopped.borrow() {
        log.lock().unwrap().push(Connection::new());
        let start = proto::StreamStart { source: Some(proto::stream_start::Source::SourceName(source.clone())), ..Default::default() };
        let (requests, rx) = mpsc::channel(4);
        requests.send(proto::StreamRequest { msg: Some(proto::stream_request::Msg::Start(start.clone())) }).await.unwrap();
        requests.send(s::prompts(vec![s::point_object(1, 160.0, 120.0)], 1)).await.unwrap();
        let opened = match tonic::transport::Endpoint::from_shared(proxy_url.clone()).unwrap().connect().await {
            Ok(channel) => {
                SegmenterClient::new(channel).stream_segment(samstream::cluster::with_affinity(&start, ReceiverStream::new(rx))).await
            }
            Err(error) => Err(tonic::Status::unavailable(format!("connect: {error}"))),
        };
        let mut responses = match opened {
            Ok(response) => response.into_inner(),
            Err(status) => {
                record(&mut |c| c.end = Some((status.code(), status.message().to_string(), Instant::now())));
                tokio::time::sleep(RECONNECT_AFTER).await;
                continue;
            }
        };
        loop {
            let message = tokio::select! {
                message = responses.message() => message,
                _ = stopped.changed() => return,
            };
            let now = Instant::now();
            match message {
                Ok(Some(proto::StreamResponse { msg: Some(Resp::Result(result)) })) => record(&mut |c| {
                    c.first_result.get_or_insert(now);
                    c.last_result = Some(now);
                    c.results.push(result.clone());
                }),
                Ok(Some(proto::StreamResponse { msg: Some(Resp::Event(event)) })) => {
                    let kind = proto::EventKind::try_from(event.kind).unwrap_or(proto::EventKind::Unspecified);
                    let replica = event.message.split_once(" on replica ").map(|(_, r)| r.to_string());
                    record(&mut |c| {
                        if kind == proto::EventKind::Started {
                            c.replica = replica.clone();
                        }
                        c.events.push((kind, event.message.clone(), now));
                    });
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    record(&mut |c| c.end = Some((tonic::Code::Ok, String::new(), now)));
                    break;
                }
                Err(status) => {
                    record(&mut |c| c.end = Some((status.code(), status.message().to_string(), now)));
                    break;
                }
            }
        }
        drop(requests);
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}
