//! Segment everything against the official `SamAutomaticMaskGenerator`, on the same weights:
//! `models/export.py --parity-fixtures` ran the generator on the parity images
//! (`models/everything_fixtures.py`: crop layers 0 and 1, min_mask_region_area 0 and > 0,
//! thresholds that keep at least 10 masks clear of every score), and SegmentEverything must
//! return the same masks, matched one to one (pixel disagreement <= 0.01% of the image,
//! predicted IoU and stability within 1e-4, the same boxes, points and crops) on both data
//! paths. A broken stability offset must fail. The parts random weights cannot exercise (NMS
//! on overlapping boxes, small-region removal, crops, grids, scores, boxes) are compared with
//! the reference's own functions (tests/support/everything_parts.py).

mod common;

use std::collections::BTreeSet;

use opencv::prelude::*;
use samstream::model::everything::crops::{crop_boxes, point_grid, points_per_side};
use samstream::model::everything::filter::{inclusive_box, stability_score};
use samstream::model::everything::nms::nms;
use samstream::model::everything::regions::{Regions, remove_small_regions};
use samstream::model::{CandidateFilter, DataPath};
use samstream::proto::{self, mask::Data};
use serde::Deserialize;
use tonic::Code;

const MAX_PIXEL_DISAGREEMENT: f64 = 1e-4;
const MAX_SCORE_DIFFERENCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    image: String,
    width: usize,
    height: usize,
    options: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Reference {
    masks: Vec<ReferenceMask>,
}

#[derive(Deserialize)]
struct ReferenceMask {
    counts: String,
    area: u64,
    /// XYWH with an inclusive box: w = x1 - x0 for the last pixel x1.
    bbox: [u32; 4],
    predicted_iou: f32,
    stability_score: f32,
    point: [f64; 2],
    crop_box: [u32; 4],
}

fn everything_dir() -> std::path::PathBuf {
    common::parity_dir().join("everything")
}

fn cases() -> Vec<Case> {
    let text =
        std::fs::read_to_string(everything_dir().join("cases.json")).expect("parity/everything from models/export.py --parity-fixtures");
    serde_json::from_str::<Cases>(&text).unwrap().cases
}

fn options(case: &Case) -> proto::AutoMaskOptions {
    let o = &case.options;
    let real = |k: &str| o.get(k).and_then(serde_json::Value::as_f64);
    let count = |k: &str| o.get(k).and_then(serde_json::Value::as_u64).map(|v| v as u32);
    proto::AutoMaskOptions {
        points_per_side: count("points_per_side"),
        points_per_batch: count("points_per_batch"),
        pred_iou_thresh: real("pred_iou_thresh"),
        stability_score_thresh: real("stability_score_thresh"),
        stability_score_offset: real("stability_score_offset"),
        box_nms_thresh: real("box_nms_thresh"),
        crop_n_layers: count("crop_n_layers"),
        crop_nms_thresh: real("crop_nms_thresh"),
        crop_overlap_ratio: real("crop_overlap_ratio"),
        crop_n_points_downscale_factor: count("crop_n_points_downscale_factor"),
        min_mask_region_area: count("min_mask_region_area"),
    }
}

/// pycocotools' `rleFrString`: a compressed counts string back into runs.
fn runs_from_string(counts: &str) -> Vec<u32> {
    let bytes = counts.as_bytes();
    let mut runs: Vec<u32> = Vec::new();
    let mut p = 0;
    while p < bytes.len() {
        let (mut x, mut k, mut more) = (0i64, 0, true);
        while more {
            let c = i64::from(bytes[p]) - 48;
            x |= (c & 0x1f) << (5 * k);
            more = c & 0x20 != 0;
            p += 1;
            k += 1;
            if !more && c & 0x10 != 0 {
                x |= -1i64 << (5 * k);
            }
        }
        if runs.len() > 2 {
            x += i64::from(runs[runs.len() - 2]);
        }
        runs.push(x as u32);
    }
    runs
}

/// Column-major runs to a row-major bitmap.
fn bitmap(runs: &[u32], width: usize, height: usize) -> Vec<bool> {
    let mut columns = Vec::with_capacity(width * height);
    for (i, &run) in runs.iter().enumerate() {
        columns.extend(std::iter::repeat_n(i % 2 == 1, run as usize));
    }
    assert_eq!(columns.len(), width * height, "runs cover the image");
    let mut rows = vec![false; width * height];
    for x in 0..width {
        for y in 0..height {
            rows[y * width + x] = columns[x * height + y];
        }
    }
    rows
}

#[derive(Debug, Default)]
struct Figures {
    case: String,
    ours: usize,
    reference: usize,
    /// Worst over the matched pairs.
    pixel_disagreement: f64,
    iou_difference: f32,
    stability_difference: f32,
    /// Pairs whose box, area, point or crop differ.
    mismatched_fields: Vec<String>,
}

impl Figures {
    fn passes(&self) -> bool {
        self.ours == self.reference
            && self.pixel_disagreement <= MAX_PIXEL_DISAGREEMENT
            && self.iou_difference <= MAX_SCORE_DIFFERENCE
            && self.stability_difference <= MAX_SCORE_DIFFERENCE
            && self.mismatched_fields.is_empty()
    }
}

/// Runs every case through SegmentEverything on `data_path`, optionally with another
/// stability offset than the reference used, and compares with the reference.
async fn evaluate(data_path: DataPath, stability_offset: Option<f64>) -> Vec<Figures> {
    let mut config = common::config();
    config.runtime.data_path = data_path;
    let server = common::start_server(config).await;
    let mut client = common::client(&server).await;
    let mut figures = Vec::new();
    for case in cases() {
        let mut options = options(&case);
        if let Some(offset) = stability_offset {
            options.stability_score_offset = Some(offset);
        }
        let request = proto::SegmentEverythingRequest {
            image: Some(proto::Image { kind: Some(proto::image::Kind::Encoded(common::png_bytes(&case.image))) }),
            mask_options: Some(proto::MaskOptions { format: proto::MaskFormat::CocoRle as i32, multimask_output: false }),
            options: Some(options),
        };
        let response = client.segment_everything(request).await.expect("SegmentEverything").into_inner();
        assert_eq!((response.image_width as usize, response.image_height as usize), (case.width, case.height));
        let reference: Reference =
            serde_json::from_str(&std::fs::read_to_string(everything_dir().join(format!("{}.json", case.name))).unwrap()).unwrap();
        figures.push(compare(&case, &response, &reference));
    }
    server.shutdown().await.unwrap();
    for f in &figures {
        eprintln!(
            "everything {data_path:?} offset={stability_offset:?} {:<22} masks {}/{} pixels {:.5}% iou {:.1e} stability {:.1e} fields {:?} -> {}",
            f.case,
            f.ours,
            f.reference,
            100.0 * f.pixel_disagreement,
            f.iou_difference,
            f.stability_difference,
            f.mismatched_fields,
            if f.passes() { "pass" } else { "FAIL" }
        );
    }
    figures
}

/// Matches masks one to one (greedily by mask IoU, best pairs first) and measures each pair.
fn compare(case: &Case, response: &proto::SegmentEverythingResponse, reference: &Reference) -> Figures {
    let (w, h) = (case.width, case.height);
    let ours: Vec<Vec<bool>> = response
        .masks
        .iter()
        .map(|m| {
            let Some(Data::CocoRle(rle)) = m.mask.as_ref().and_then(|m| m.data.clone()) else { panic!("COCO RLE asked for") };
            assert_eq!(rle.size, vec![h as u32, w as u32]);
            bitmap(&runs_from_string(&rle.counts), w, h)
        })
        .collect();
    let theirs: Vec<Vec<bool>> = reference.masks.iter().map(|m| bitmap(&runs_from_string(&m.counts), w, h)).collect();
    let mut pairs = Vec::new();
    for (i, a) in theirs.iter().enumerate() {
        for (j, b) in ours.iter().enumerate() {
            let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
            let union = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
            pairs.push((inter as f64 / union.max(1) as f64, i, j));
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut used_theirs, mut used_ours) = (BTreeSet::new(), BTreeSet::new());
    let mut figures = Figures { case: case.name.clone(), ours: ours.len(), reference: theirs.len(), ..Default::default() };
    for (_, i, j) in pairs {
        if used_theirs.contains(&i) || used_ours.contains(&j) {
            continue;
        }
        used_theirs.insert(i);
        used_ours.insert(j);
        let differing = theirs[i].iter().zip(&ours[j]).filter(|(a, b)| a != b).count();
        figures.pixel_disagreement = figures.pixel_disagreement.max(differing as f64 / (w * h) as f64);
        let (r, o) = (&reference.masks[i], &response.masks[j]);
        figures.iou_difference = figures.iou_difference.max((r.predicted_iou - o.predicted_iou).abs());
        figures.stability_difference = figures.stability_difference.max((r.stability_score - o.stability_score).abs());
        let b = o.bbox.unwrap_or_default();
        // The reference's XYWH box is inclusive; ours is XYXY exclusive (zeros when empty).
        let expected_box = if r.area == 0 {
            [0.0; 4]
        } else {
            [r.bbox[0] as f32, r.bbox[1] as f32, (r.bbox[0] + r.bbox[2] + 1) as f32, (r.bbox[1] + r.bbox[3] + 1) as f32]
        };
        let c = o.crop_box.unwrap_or_default();
        let crop = [c.x0 as u32, c.y0 as u32, (c.x1 - c.x0) as u32, (c.y1 - c.y0) as u32];
        let p = o.point.unwrap_or_default();
        // Areas differ exactly as much as the masks do (within the pixel tolerance above); each
        // must be its own mask's pixel count.
        let our_pixels = ours[j].iter().filter(|&&p| p).count() as u64;
        let checks = [
            ("bbox", [b.x0, b.y0, b.x1, b.y1] == expected_box),
            ("area", o.area == our_pixels && o.area.abs_diff(r.area) as usize <= differing),
            ("crop_box", crop == r.crop_box),
            ("point", (f64::from(p.x) - r.point[0]).abs() < 1e-3 && (f64::from(p.y) - r.point[1]).abs() < 1e-3),
        ];
        for (field, ok) in checks {
            if !ok {
                figures.mismatched_fields.push(format!("mask {i}: {field}"));
            }
        }
    }
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_everything_matches_the_official_generator() {
    let figures = evaluate(DataPath::Host, None).await;
    assert_eq!(figures.len(), 8, "crop layers 0 and 1, min_mask_region_area 0 and > 0, on the four images");
    assert!(figures.iter().all(|f| f.reference >= 10), "every case keeps at least 10 masks");
    let failing: Vec<&Figures> = figures.iter().filter(|f| !f.passes()).collect();
    assert!(failing.is_empty(), "segment everything differs from the official generator: {failing:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_data_path_matches_the_official_generator() {
    let figures = evaluate(DataPath::Device, None).await;
    let failing: Vec<&Figures> = figures.iter().filter(|f| !f.passes()).collect();
    assert!(failing.is_empty(), "segment everything (device data path) differs from the official generator: {failing:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stability_offset_fails_parity() {
    let figures = evaluate(DataPath::Host, Some(1.5)).await;
    let failing = figures.iter().filter(|f| !f.passes()).count();
    assert!(failing >= figures.len() / 2, "a stability offset of 1.5 instead of 1.0 must fail parity; {failing} cases failed");
}

#[derive(Deserialize)]
struct Parts {
    nms: Vec<NmsCase>,
    regions: Vec<RegionCase>,
    crops: Vec<CropCase>,
    grids: Vec<GridCase>,
    scores: Vec<ScoreCase>,
}

#[derive(Deserialize)]
struct NmsCase {
    boxes: Vec<[i64; 4]>,
    scores: Vec<f32>,
    threshold: f64,
    kept: Vec<usize>,
}

#[derive(Deserialize)]
struct RegionCase {
    mask: Vec<u8>,
    area: usize,
    mode: String,
    changed: bool,
    result: Vec<u8>,
}

#[derive(Deserialize)]
struct CropCase {
    width: usize,
    height: usize,
    layers: usize,
    ratio: f64,
    boxes: Vec<[usize; 4]>,
    layer: Vec<usize>,
}

#[derive(Deserialize)]
struct GridCase {
    per_side: usize,
    layers: usize,
    factor: usize,
    grids: Vec<Vec<[f64; 2]>>,
}

#[derive(Deserialize)]
struct ScoreCase {
    offset: f64,
    logits: Vec<f32>,
    scores: Vec<Option<f32>>,
    boxes: Vec<[u32; 4]>,
}

#[test]
fn the_parts_match_the_reference_functions() {
    let output = std::process::Command::new(common::python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/everything_parts.py"))
        .arg("7")
        .output()
        .expect("python runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let parts: Parts = serde_json::from_slice(&output.stdout).unwrap();

    for (n, case) in parts.nms.iter().enumerate() {
        let boxes: Vec<[f32; 4]> = case.boxes.iter().map(|b| b.map(|v| v as f32)).collect();
        let ours = nms(&boxes, &case.scores, case.threshold);
        if case.boxes.len() > 1000 {
            // torchvision re-sorts this many boxes with an unstable sort: the same set, another order.
            assert_eq!(ours.iter().collect::<BTreeSet<_>>(), case.kept.iter().collect::<BTreeSet<_>>(), "nms case {n}");
        } else {
            assert_eq!(ours, case.kept, "nms case {n}: {} boxes at {}", case.boxes.len(), case.threshold);
        }
    }
    for (n, case) in parts.regions.iter().enumerate() {
        let mask = opencv::core::Mat::new_rows_cols_with_data(48, 64, &case.mask).unwrap().try_clone().unwrap();
        let mode = if case.mode == "holes" { Regions::Holes } else { Regions::Islands };
        let (result, changed) = remove_small_regions(&mask, case.area, mode).unwrap();
        let ours: Vec<u8> = result.data_bytes().unwrap().iter().map(|&v| u8::from(v != 0)).collect();
        assert_eq!((changed, ours), (case.changed, case.result.clone()), "regions case {n} ({} below {})", case.mode, case.area);
    }
    for case in &parts.crops {
        let ours = crop_boxes(case.width, case.height, case.layers, case.ratio);
        let boxes: Vec<[usize; 4]> = ours.iter().map(|b| [b.x0, b.y0, b.x1, b.y1]).collect();
        let layers: Vec<usize> = ours.iter().map(|b| b.layer).collect();
        assert_eq!(
            (boxes, layers),
            (case.boxes.clone(), case.layer.clone()),
            "crops of {}x{}, {} layers, ratio {}",
            case.width,
            case.height,
            case.layers,
            case.ratio
        );
    }
    for case in &parts.grids {
        for (layer, grid) in case.grids.iter().enumerate() {
            assert_eq!(&point_grid(points_per_side(case.per_side, layer, case.factor)), grid, "grid {} layer {layer}", case.per_side);
        }
        assert_eq!(case.grids.len(), case.layers + 1);
    }
    for case in &parts.scores {
        let filter = CandidateFilter { pred_iou_thresh: None, stability_score_thresh: None, stability_score_offset: case.offset };
        let plane = 30 * 40;
        for (m, logits) in case.logits.chunks(plane).enumerate() {
            let ours = stability_score(logits, &filter);
            match case.scores[m] {
                Some(score) => assert_eq!(ours, score, "stability of mask {m} at offset {}", case.offset),
                None => assert!(ours.is_nan(), "an empty union is NaN"),
            }
            let bytes: Vec<u8> = logits.iter().map(|&v| if v > 0.0 { 255 } else { 0 }).collect();
            let mask = opencv::core::Mat::new_rows_cols_with_data(30, 40, &bytes).unwrap().try_clone().unwrap();
            assert_eq!(inclusive_box(&mask).unwrap(), case.boxes[m], "box of mask {m}");
        }
    }
    eprintln!(
        "parts: {} NMS cases, {} region cases, {} crop cases, {} grids, {} score cases match the reference",
        parts.nms.len(),
        parts.regions.len(),
        parts.crops.len(),
        parts.grids.len(),
        parts.scores.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_work_is_refused_before_any_and_bad_options_name_their_field() {
    let mut config = common::config();
    config.limits.max_everything_prompts = 5000;
    let server = common::start_server(config).await;
    let mut client = common::client(&server).await;
    let image = Some(proto::Image { kind: Some(proto::image::Kind::Encoded(common::png_bytes("small.png"))) });
    let call = |options: proto::AutoMaskOptions| proto::SegmentEverythingRequest {
        image: image.clone(),
        mask_options: None,
        options: Some(options),
    };
    let started = std::time::Instant::now();
    let too_much =
        client.segment_everything(call(proto::AutoMaskOptions { crop_n_layers: Some(1), ..Default::default() })).await.unwrap_err();
    assert_eq!(too_much.code(), Code::ResourceExhausted, "{too_much:?}");
    assert!(too_much.message().contains("5120 point prompts") && too_much.message().contains("--max-everything-prompts"), "{too_much:?}");
    assert!(started.elapsed() < std::time::Duration::from_millis(500), "refused before any work: {:?}", started.elapsed());
    let bad = client.segment_everything(call(proto::AutoMaskOptions { points_per_side: Some(0), ..Default::default() })).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("options.points_per_side:"), "{bad:?}");
    server.shutdown().await.unwrap();
}

fn frame(file: &str, id: u64) -> proto::StreamRequest {
    let image = Some(proto::Image { kind: Some(proto::image::Kind::Encoded(common::png_bytes(file))) });
    proto::StreamRequest {
        msg: Some(proto::stream_request::Msg::Frame(proto::Frame { image, frame_id: id, timestamp_us: id as i64 * 1000 })),
    }
}

/// A client-frames stream with tracking and one prompted object, `auto` on or off; the results
/// of `files`, each frame sent once the one before is answered.
async fn live(
    client: &mut samstream::proto::segmenter_client::SegmenterClient<tonic::transport::Channel>,
    auto: Option<proto::AutoMode>,
    files: &[&str],
) -> Vec<proto::FrameResult> {
    use common::stream as s;
    let start = proto::StreamStart {
        source: Some(proto::stream_start::Source::ClientFrames(proto::ClientFrames {})),
        track: true,
        auto_mode: auto,
        ..Default::default()
    };
    let first = vec![
        proto::StreamRequest { msg: Some(proto::stream_request::Msg::Start(start)) },
        s::prompts(vec![s::point_object(1, 100.0, 80.0)], 1),
    ];
    let mut stream = s::StreamClient::open(client, first).await.expect("stream opens");
    let mut results = Vec::new();
    for (i, file) in files.iter().enumerate() {
        stream.send(frame(file, i as u64 + 1)).await;
        let (mut got, _) = stream.results(1, std::time::Duration::from_secs(120)).await;
        results.append(&mut got);
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_automatic_mode_keeps_ids_and_leaves_prompted_objects_alone() {
    let server = common::start_server(common::config()).await;
    let mut client = common::client(&server).await;
    let options = proto::AutoMaskOptions {
        points_per_side: Some(4),
        pred_iou_thresh: Some(0.5),
        stability_score_thresh: Some(0.3),
        box_nms_thresh: Some(1.0),
        ..Default::default()
    };
    let every = |n| Some(proto::AutoMode { options: Some(options), every_n_frames: n });
    let files = ["small.png", "small.png", "square.png"];
    let with_auto = live(&mut client, every(1), &files).await;
    let without = live(&mut client, None, &files).await;

    let ids = |r: &proto::FrameResult| r.auto_masks.iter().map(|m| m.object_id).collect::<Vec<_>>();
    let (first, second, third) = (&with_auto[0], &with_auto[1], &with_auto[2]);
    assert!(with_auto.iter().all(|r| r.auto_ran), "every frame is segmented with every_n_frames 1");
    assert!(!first.auto_masks.is_empty(), "the automatic mode finds masks on the first frame");
    let mut first_ids = ids(first);
    assert_eq!(first_ids, (1..=first.auto_masks.len() as u32).collect::<Vec<_>>(), "new masks get new ids, from 1");
    assert_eq!(ids(second), ids(first), "an identical frame keeps every id");
    assert_eq!(
        second.auto_masks.iter().map(|m| m.mask.clone()).collect::<Vec<_>>(),
        first.auto_masks.iter().map(|m| m.mask.clone()).collect::<Vec<_>>()
    );
    assert!(second.auto_removed.is_empty());
    let max_first = *first_ids.iter().max().unwrap();
    assert!(
        !third.auto_masks.is_empty() && ids(third).iter().all(|&id| id > max_first),
        "another image's masks are new objects: {:?}",
        ids(third)
    );
    let mut removed = third.auto_removed.clone();
    removed.sort_unstable();
    first_ids.sort_unstable();
    assert_eq!(removed, first_ids, "the first image's masks are gone");
    let auto_timing = first.auto_timing.expect("the automatic mode's timing");
    assert!(auto_timing.decoder_us > 0 && auto_timing.encoder_us == 0, "crop 0 reuses the frame's embedding: {auto_timing:?}");

    for (a, b) in with_auto.iter().zip(&without) {
        assert!(!b.auto_ran && b.auto_masks.is_empty());
        assert_eq!(a.objects, b.objects, "frame {}: the prompted object is the same with or without the automatic mode", a.frame_id);
    }

    let every_other = live(&mut client, every(2), &["small.png", "small.png", "small.png"]).await;
    assert_eq!(every_other.iter().map(|r| r.auto_ran).collect::<Vec<_>>(), vec![true, false, true]);
    assert_eq!(ids(&every_other[2]), ids(&every_other[0]), "ids hold across frames the mode skipped");
    server.shutdown().await.unwrap();
}
