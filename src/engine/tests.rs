//! The engine's own logic against the fake backend: no model files, no ONNX Runtime.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use opencv::core::{CV_8UC3, Mat, Scalar};

use super::*;
use crate::model::fake::FakeControl;
use crate::model::{DataPath, ImageGeometry, PointPrompt, PromptLabel};

fn options(max_batch: usize, queue_capacity: usize) -> EngineOptions {
    EngineOptions { queue_capacity, encoder_max_batch: max_batch }
}

fn start(control: &Arc<FakeControl>, options: EngineOptions) -> Engine {
    let control = control.clone();
    Engine::start(ModelLoader::new(move || control.load()), &options, Preprocessor::default())
}

fn frame() -> Arc<Mat> {
    Arc::new(Mat::new_rows_cols_with_default(48, 64, CV_8UC3, Scalar::all(90.0)).unwrap())
}

/// Starts an encode on its own task; its result comes back on the handle.
fn encode(engine: &Engine) -> tokio::task::JoinHandle<Result<Arc<EncodedFrame>, EngineError>> {
    let engine = engine.clone();
    tokio::spawn(async move { engine.encode_frame(frame(), FrameOrigin::now(), StageTimings::default()).await })
}

/// Waits (off the runtime's workers) until the gated encoder has started a run; its size.
async fn entered(gate: &crate::model::fake::GateHandle) -> usize {
    tokio::task::block_in_place(|| gate.entered.recv_timeout(Duration::from_secs(10)).expect("the encoder starts a run"))
}

/// Lets the jobs reach the engine's queue (they preprocess on the blocking pool first).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_frames_are_encoded_as_one_batch_up_to_the_maximum() {
    let control = FakeControl::new();
    let engine = start(&control, options(3, 16));
    assert_eq!(engine.ready().await.unwrap().max_batch, 3);
    assert_eq!(control.take_batches(), vec![1, 2, 3], "warm-up runs every batch size once");
    let gate = control.gate();
    let first = encode(&engine);
    assert_eq!(entered(&gate).await, 1);
    let queued: Vec<_> = (0..4).map(|_| encode(&engine)).collect();
    settle().await;
    for _ in 0..3 {
        gate.release.send(()).unwrap();
    }
    first.await.unwrap().unwrap();
    assert_eq!(entered(&gate).await, 3, "three of the four queued frames share the next run");
    assert_eq!(entered(&gate).await, 1, "the fourth runs next");
    for handle in queued {
        let frame = handle.await.unwrap().unwrap();
        assert!(frame.timings.encoder > Duration::ZERO && frame.timings.preprocess > Duration::ZERO);
        assert_eq!(frame.geometry, ImageGeometry::new(64, 48));
    }
    assert_eq!(control.take_batches(), vec![1, 3, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_finds_the_largest_batch_that_fits() {
    let control = FakeControl::new();
    control.oom_above.store(2, Ordering::SeqCst);
    let engine = start(&control, options(4, 16));
    assert_eq!(engine.ready().await.unwrap().max_batch, 2, "a batch of three ran out of memory during warm-up");
    assert_eq!(control.take_batches(), vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_out_of_memory_is_retried_image_by_image() {
    let control = FakeControl::new();
    let engine = start(&control, options(3, 16));
    engine.ready().await.unwrap();
    control.take_batches();
    control.oom_above.store(1, Ordering::SeqCst);
    let gate = control.gate();
    let first = encode(&engine);
    entered(&gate).await;
    let queued: Vec<_> = (0..3).map(|_| encode(&engine)).collect();
    settle().await;
    for _ in 0..5 {
        gate.release.send(()).unwrap();
    }
    first.await.unwrap().unwrap();
    for handle in queued {
        assert!(handle.await.unwrap().is_ok(), "every image fits on its own");
    }
    assert_eq!(control.take_batches(), vec![1, 3, 1, 1, 1], "the batch of three failed, then each image ran alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_left_get_no_work_done() {
    let control = FakeControl::new();
    let engine = start(&control, options(1, 16));
    engine.ready().await.unwrap();
    control.take_batches();
    let gate = control.gate();
    let first = encode(&engine);
    entered(&gate).await;
    let abandoned = encode(&engine);
    let kept = encode(&engine);
    settle().await;
    abandoned.abort();
    let _ = abandoned.await;
    gate.release.send(()).unwrap();
    gate.release.send(()).unwrap();
    first.await.unwrap().unwrap();
    kept.await.unwrap().unwrap();
    assert_eq!(control.take_batches(), vec![1, 1], "the abandoned frame was skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_at_once() {
    let control = FakeControl::new();
    let engine = start(&control, options(1, 2));
    engine.ready().await.unwrap();
    let gate = control.gate();
    let first = encode(&engine);
    entered(&gate).await;
    let queued: Vec<_> = (0..2).map(|_| encode(&engine)).collect();
    settle().await;
    let refused = engine.encode_frame(frame(), FrameOrigin::now(), StageTimings::default()).await;
    assert!(matches!(refused, Err(EngineError::QueueFull("encoder", 2))), "{:?}", refused.err());
    for _ in 0..3 {
        gate.release.send(()).unwrap();
    }
    first.await.unwrap().unwrap();
    for handle in queued {
        handle.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_decoded_in_calls_by_token_count_and_answered_in_request_order() {
    let control = FakeControl::new();
    let engine = start(&control, options(1, 16));
    engine.ready().await.unwrap();
    control.take_decodes();
    let frame = engine.encode_frame(frame(), FrameOrigin::now(), StageTimings::default()).await.unwrap();
    let point = |x: f32| PointPrompt { x, y: 10.0, label: PromptLabel::Positive };
    let prompt = |points: Vec<PointPrompt>| crate::model::ObjectPrompt { object_id: 1, points, bbox: None, mask_input: None };
    let prompts = [prompt(vec![point(1.0)]), prompt(vec![point(2.0), point(5.0)]), prompt(vec![point(3.0)])];
    let tokens = prompts.iter().map(|p| PromptTokens::new(p, &frame.geometry)).collect();
    let request = MaskRequest::objects(frame.geometry, false, false);
    let decoded = engine.decode(frame.clone(), tokens, request).await.unwrap();
    assert_eq!(control.take_decodes(), vec![2, 1], "two objects of two tokens, then one of three");
    let widths: Vec<usize> = (0..3)
        .map(|i| {
            let mask = crate::model::postprocess::binary_mask(&decoded, i, 0, &frame.geometry).unwrap();
            mask.bytes().unwrap()[..64].iter().filter(|&&v| v != 0).count()
        })
        .collect();
    // The fake's mask width is the first point's x in the encoder's frame (64 px -> 1024: x16).
    assert_eq!(widths, vec![16, 32, 48]);
    assert!(decoded.iou[[1, 0]] > decoded.iou[[0, 0]], "object 1 has a token more: {:?}", decoded.iou);
    assert!(decoded.timings.decoder > Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_fails_to_load_is_reported_and_refuses_work() {
    let options = options(1, 4);
    let broken = ModelLoader::new(|| Err(ModelError::Manifest { path: "m".into(), reason: "broken".into() }));
    let engine = Engine::start(broken, &options, Preprocessor::default());
    assert!(matches!(engine.ready().await, Err(EngineError::LoadFailed(_))));
    let refused = engine.encode_frame(frame(), FrameOrigin::now(), StageTimings::default()).await;
    assert!(matches!(refused, Err(EngineError::LoadFailed(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_data_path_that_fails_its_warm_up_gives_way_to_the_host_one() {
    let failing = FakeControl::new();
    failing.fail_decodes.store(true, Ordering::SeqCst);
    let host = FakeControl::new();
    let (device_model, host_model) = (failing.clone(), host.clone());
    let loader = ModelLoader::new(move || device_model.load_as(DataPath::Device)).with_host_fallback(move || host_model.load());
    let engine = Engine::start(loader, &options(2, 4), Preprocessor::default());
    let runtime = engine.ready().await.expect("served on the host data path");
    assert_eq!(runtime.backend.data_path, DataPath::Host);
    assert!(!failing.take_decodes().is_empty(), "the device model was tried first");
    assert_eq!(host.take_batches(), vec![1, 2], "the host model was warmed up in its place");
    encode(&engine).await.unwrap().expect("and it serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_fallback_a_failed_warm_up_is_a_failed_load() {
    let failing = FakeControl::new();
    failing.fail_decodes.store(true, Ordering::SeqCst);
    let engine = Engine::start(ModelLoader::new(move || failing.load_as(DataPath::Device)), &options(1, 4), Preprocessor::default());
    assert!(matches!(engine.ready().await, Err(EngineError::LoadFailed(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_data_path_that_fails_is_not_loaded_again() {
    let failing = FakeControl::new();
    failing.fail_decodes.store(true, Ordering::SeqCst);
    let fallback = FakeControl::new();
    let (first, second) = (failing.clone(), fallback.clone());
    let loader = ModelLoader::new(move || first.load()).with_host_fallback(move || second.load());
    let engine = Engine::start(loader, &options(1, 4), Preprocessor::default());
    assert!(matches!(engine.ready().await, Err(EngineError::LoadFailed(_))));
    assert!(fallback.take_batches().is_empty(), "the fallback is for the device data path only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_encoder_runs_at_the_lower_priority_the_model_asks_for_and_the_decoder_does_not() {
    let control = FakeControl::new();
    control.encoder_nice.store(3, Ordering::SeqCst);
    let engine = start(&control, options(1, 16));
    engine.ready().await.unwrap();
    control.run_nice.lock().unwrap().clear();
    let frame = engine.encode_frame(frame(), FrameOrigin::now(), StageTimings::default()).await.unwrap();
    let point = PointPrompt { x: 4.0, y: 4.0, label: PromptLabel::Positive };
    let prompt = crate::model::ObjectPrompt { object_id: 1, points: vec![point], bbox: None, mask_input: None };
    let tokens = vec![PromptTokens::new(&prompt, &frame.geometry)];
    engine.decode(frame.clone(), tokens, MaskRequest::objects(frame.geometry, false, false)).await.unwrap();
    let ours = crate::model::priority::nice_of_this_thread().unwrap();
    let runs = control.run_nice.lock().unwrap().clone();
    assert_eq!(runs, vec![("encoder", (ours + 3).min(19)), ("decoder", ours)]);
}
