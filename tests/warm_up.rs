//! The warm-up runs every fixed shape before health says SERVING, and the metrics show each
//! shape's runs and the padding they carried. Counters are process-wide: this binary holds one
//! test, so nothing else moves them.

mod common;

use common::stream as s;
use samstream::model::DataPath;
use samstream::proto::{self, image::Kind};

const RUNS: &str = "samstream_graph_shape_runs_total";
const PADDED: &str = "samstream_graph_padded_slots_total";

fn series(graph: &str, shape: usize) -> String {
    format!("graph=\"{graph}\",shape=\"{shape}\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shape_runs_before_serving_and_padding_is_counted() {
    let mut config = common::config();
    config.runtime.data_path = DataPath::Device;
    config.runtime.encoder_batch_buckets = "1,2,4".parse().unwrap();
    config.runtime.decoder_object_buckets = "1,2,4,8".parse().unwrap();
    config.engine.encoder_max_batch = 3;
    let server = common::start_server(config).await;
    let mut client = common::client(&server).await;

    let info = client.get_model_info(proto::GetModelInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.encoder_max_batch, 3);
    for shape in [1, 2, 4] {
        let runs = s::metric_value(RUNS, &series("encoder", shape));
        assert!(runs >= 1.0, "encoder shape {shape} ran {runs} times before SERVING");
    }
    // Batches of three (the most) run at shape 4, with one padding image.
    assert_eq!(s::metric_value(PADDED, &series("encoder", 4)), 1.0);
    assert_eq!(s::metric_value(RUNS, &series("encoder", 3)), 0.0, "no session of its own for a batch of 3");
    for shape in [1, 2, 4, 8] {
        // Untracked objects (decoder_shared.onnx) and tracked ones (decoder.onnx) each.
        let runs = s::metric_value(RUNS, &series("decoder", shape));
        assert!(runs >= 2.0, "decoder shape {shape} ran {runs} times before SERVING");
    }
    eprintln!(
        "at SERVING: encoder runs by shape 1/2/4: {}/{}/{}; decoder runs by shape 1/2/4/8: {}/{}/{}/{}",
        s::metric_value(RUNS, &series("encoder", 1)),
        s::metric_value(RUNS, &series("encoder", 2)),
        s::metric_value(RUNS, &series("encoder", 4)),
        s::metric_value(RUNS, &series("decoder", 1)),
        s::metric_value(RUNS, &series("decoder", 2)),
        s::metric_value(RUNS, &series("decoder", 4)),
        s::metric_value(RUNS, &series("decoder", 8)),
    );

    // Three objects after SERVING: one decoder call at shape 4, one padding object.
    let (runs_before, padded_before) = (s::metric_value(RUNS, &series("decoder", 4)), s::metric_value(PADDED, &series("decoder", 4)));
    let objects = (0..3).map(|i| s::point_object(i + 1, 60.0 + 90.0 * i as f32, 80.0)).collect();
    let image = proto::Image { kind: Some(Kind::Encoded(common::png_bytes("landscape.png"))) };
    let response = client.segment(proto::SegmentRequest { image: Some(image), objects, mask_options: None }).await.unwrap().into_inner();
    assert_eq!(response.objects.len(), 3);
    assert_eq!(s::metric_value(RUNS, &series("decoder", 4)), runs_before + 1.0);
    assert_eq!(s::metric_value(PADDED, &series("decoder", 4)), padded_before + 1.0);
    assert_eq!(s::metric_value(RUNS, &series("decoder", 3)), 0.0, "three objects never run at their own shape");
    server.shutdown().await.unwrap();
}
