//! Running out of memory (`--memory-limit` caps ONNX Runtime's arena on the CPU provider, as
//! CUDA's `gpu_mem_limit` does on a GPU; both fail a run the same way): the call that needs too
//! much gets RESOURCE_EXHAUSTED, the server and its other streams go on, and warm-up lowers the
//! largest batch to what fits. The capped arena belongs to the process, so this binary holds
//! only this test.

mod common;

use std::time::Duration;

use common::stream::{self as s, StreamClient};
use samstream::model::DataPath;
use samstream::proto::{self, image::Kind, stream_start::Source};
use tonic::Code;

const LONG: Duration = Duration::from_secs(60);

/// Enough for one image through the encoder and a few objects through the decoder, not for a
/// batch of two images nor for dozens of objects (measured with onnxruntime 1.31.1 here).
const LIMIT: usize = 400_000_000;

fn segment(objects: u32) -> proto::SegmentRequest {
    let objects = (0..objects).map(|i| s::point_object(i + 1, 100.0 + 50.0 * (i % 30) as f32, 100.0 + 25.0 * (i / 30) as f32)).collect();
    proto::SegmentRequest {
        image: Some(proto::Image { kind: Some(Kind::Encoded(common::png_bytes("landscape.png"))) }),
        objects,
        mask_options: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_memory_fails_that_call_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let video = s::make_video(dir.path(), "loop.mp4", 1.0, 10);
    let mut config = common::config();
    config.runtime.memory_limit = LIMIT;
    config.engine.encoder_max_batch = 2;
    config.runtime.data_path = DataPath::Device;
    config.video.sources =
        Some(s::write_sources(dir.path(), &format!("[[source]]\nname = \"loop\"\nkind = \"file\"\npath = {video:?}\nloop = true\n")));
    let server = common::start_server(config).await;
    let mut client = common::client(&server).await;

    let info = client.get_model_info(proto::GetModelInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.encoder_max_batch, 1, "a batch of two did not fit at warm-up, so the server batches at most one");

    let mut stream =
        StreamClient::open(&mut client, s::start(Source::SourceName("loop".into()), false, vec![s::point_object(1, 160.0, 120.0)]))
            .await
            .unwrap();
    let (before, _) = stream.results(2, LONG).await;
    assert_eq!(before.len(), 2, "the stream runs");

    let status = client.segment(segment(48)).await.expect_err("48 objects need more than the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("out of device memory"), "{}", status.message());

    let response = client.segment(segment(1)).await.expect("one object still fits").into_inner();
    assert_eq!(response.objects.len(), 1);
    let (after, _) = stream.results(2, LONG).await;
    assert_eq!(after.len(), 2, "the stream went on");
    assert!(after[0].frame_id > before[1].frame_id, "later frames: {} after {}", after[0].frame_id, before[1].frame_id);
    drop(stream);
    server.shutdown().await.unwrap();
}
