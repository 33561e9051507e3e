//! `samstream client` and the Python example client against a real server: overlay video
//! (frame count, size, tint where the masks are), per-frame PNG masks identical to a direct
//! Segment of the same frame, a timed prompt script, an image overlay.

mod common;

use std::path::Path;
use std::process::Command;

use opencv::core::{Mat, Vec3b, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, videoio};
use samstream::client::overlay::{TINT_ALPHA, colour};
use samstream::proto::{self, segmenter_client::SegmenterClient};

use common::stream as s;

/// `samstream client ARGS` (stdout + stderr), waited for off the runtime's workers (the
/// server under test runs on them).
async fn run_client(args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_samstream")).arg("client").args(&args).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "client failed:\n{text}");
        text
    })
    .await
    .unwrap()
}

fn frames(path: &Path) -> Vec<Mat> {
    let mut capture = videoio::VideoCapture::from_file(path.to_str().unwrap(), videoio::CAP_ANY).unwrap();
    let mut frames = Vec::new();
    loop {
        let mut frame = Mat::default();
        if !capture.read(&mut frame).unwrap() || frame.empty() {
            return frames;
        }
        frames.push(frame);
    }
}

fn mask(path: &Path) -> Mat {
    let mask = imgcodecs::imread(path.to_str().unwrap(), imgcodecs::IMREAD_UNCHANGED).unwrap();
    assert!(!mask.empty(), "{} is not a PNG", path.display());
    mask
}

/// Side of the blocks compared: mp4v smears the fine texture of random-weight masks, so the
/// video is checked on block means, not pixel by pixel.
const BLOCK: i32 = 8;

/// Mean absolute difference per channel between `overlay` and `original` tinted by `masks`
/// (in drawing order), and between `overlay` and the untinted original, over `block`-sized
/// block means; plus the masks' share of the frame. Pixels near a mask's bounding box (where
/// the client draws the box and the id label) are left out.
fn tint_errors(original: &Mat, overlay: &Mat, masks: &[(u32, Mat)], block: i32) -> (f64, f64, f64) {
    let (rows, cols) = (original.rows(), original.cols());
    let boxes: Vec<opencv::core::Rect> = masks
        .iter()
        .map(|(_, m)| {
            let mut points = Mat::default();
            opencv::core::find_non_zero(m, &mut points).unwrap();
            opencv::imgproc::bounding_rect(&points).unwrap_or_default()
        })
        .collect();
    let near_drawing = |x: i32, y: i32| {
        boxes.iter().any(|b| {
            let on_edge =
                (x - b.x).abs() <= 3 || (x - (b.x + b.width)).abs() <= 3 || (y - b.y).abs() <= 3 || (y - (b.y + b.height)).abs() <= 3;
            let in_label = y < b.y.max(16) + 4 && y >= b.y - 20 && x >= b.x && x < b.x + 90;
            (on_edge && x >= b.x - 3 && x <= b.x + b.width + 3 && y >= b.y - 3 && y <= b.y + b.height + 3) || in_label
        })
    };
    let (mut to_expected, mut to_original, mut blocks, mut masked) = (0.0, 0.0, 0usize, 0usize);
    for by in (0..rows - block + 1).step_by(block as usize) {
        for bx in (0..cols - block + 1).step_by(block as usize) {
            let (mut sum_v, mut sum_e, mut sum_o, mut n) = ([0.0; 3], [0.0; 3], [0.0; 3], 0.0);
            for y in by..by + block {
                for x in bx..bx + block {
                    if near_drawing(x, y) {
                        continue;
                    }
                    let o = original.at_2d::<Vec3b>(y, x).unwrap();
                    let mut expected = [f64::from(o[0]), f64::from(o[1]), f64::from(o[2])];
                    let mut inside = false;
                    for (id, m) in masks {
                        if *m.at_2d::<u8>(y, x).unwrap() > 0 {
                            inside = true;
                            let c = colour(*id);
                            for ch in 0..3 {
                                expected[ch] = (expected[ch] * (1.0 - TINT_ALPHA) + c[ch] * TINT_ALPHA).round();
                            }
                        }
                    }
                    masked += usize::from(inside);
                    let v = overlay.at_2d::<Vec3b>(y, x).unwrap();
                    for ch in 0..3 {
                        sum_v[ch] += f64::from(v[ch]);
                        sum_e[ch] += expected[ch];
                        sum_o[ch] += f64::from(o[ch]);
                    }
                    n += 1.0;
                }
            }
            if n == 0.0 {
                continue;
            }
            blocks += 1;
            for ch in 0..3 {
                to_expected += (sum_v[ch] - sum_e[ch]).abs() / n / 3.0;
                to_original += (sum_v[ch] - sum_o[ch]).abs() / n / 3.0;
            }
        }
    }
    (to_expected / blocks as f64, to_original / blocks as f64, masked as f64 / f64::from(rows * cols))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_writes_an_overlay_video_and_png_masks_that_match_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let video = s::make_video(dir.path(), "clip.mp4", 2.0, 5);
    let server = common::start_server(common::config()).await;
    let url = format!("http://{}", server.addr);
    let overlay = dir.path().join("overlay.mp4");
    let masks_dir = dir.path().join("masks");
    // Object 2 leaves at 1.0 s of video time: frames 6..10 (5 fps) carry object 1 only.
    let script = dir.path().join("script.json");
    std::fs::write(&script, r#"{"updates": [{"at": 1.0, "remove": [2]}]}"#).unwrap();
    let out = run_client(&[
        "video",
        video.to_str().unwrap(),
        "--server",
        &url,
        "--point",
        "100,80",
        "--point",
        "2:200,150",
        "--box",
        "2:150,100,300,220",
        "--script",
        script.to_str().unwrap(),
        "--overlay",
        overlay.to_str().unwrap(),
        "--out-masks",
        masks_dir.to_str().unwrap(),
    ])
    .await;
    assert!(out.contains("overlay: 10 frames written"), "{out}");
    assert!(out.contains("results 10 | dropped 0 |") && out.contains("encoder"), "no live/summary line:\n{out}");

    let originals = frames(&video);
    let overlaid = frames(&overlay);
    assert_eq!(originals.len(), 10);
    assert_eq!(overlaid.len(), 10, "overlay frame count");
    let mut tinted_frames = 0;
    for (i, (original, frame)) in originals.iter().zip(&overlaid).enumerate() {
        assert_eq!((frame.cols(), frame.rows()), (320, 240), "overlay size");
        let id = i + 1;
        let mut masks = vec![(1, mask(&masks_dir.join(format!("frame_{id:06}_object_1.png"))))];
        let second = masks_dir.join(format!("frame_{id:06}_object_2.png"));
        assert_eq!(second.exists(), id <= 5, "object 2 mask of frame {id} (removed at 1.0 s)");
        if second.exists() {
            masks.push((2, mask(&second)));
        }
        for (_, m) in &masks {
            assert_eq!((m.cols(), m.rows(), m.typ()), (320, 240, opencv::core::CV_8UC1));
        }
        let (to_expected, to_original, coverage) = tint_errors(original, frame, &masks, BLOCK);
        eprintln!("frame {id}: block error to tinted {to_expected:.2}, to plain {to_original:.2}, coverage {coverage:.2}");
        // mp4v is lossy and boxes/labels are drawn on top: the overlay must be far closer to
        // the tinted original than to the plain one wherever masks cover a real share.
        assert!(to_expected < 6.0, "frame {id}: overlay differs from the tinted original by {to_expected:.1} per channel");
        if coverage > 0.05 {
            tinted_frames += 1;
            assert!(
                to_original > 2.0 * to_expected,
                "frame {id}: no visible tint ({to_original:.1} vs {to_expected:.1}, coverage {coverage:.2})"
            );
        }
    }
    assert!(tinted_frames > 0, "no frame had masks covering 5% of it");

    // The PNG masks are the server's: a direct Segment of the same decoded frame (sent as a
    // lossless PNG) with the same prompts gives identical masks.
    let mut client = SegmenterClient::connect(url).await.unwrap();
    for id in [1usize, 10] {
        let mut png = Vector::<u8>::new();
        imgcodecs::imencode(".png", &originals[id - 1], &mut png, &Vector::new()).unwrap();
        let mut objects = vec![s::point_object(1, 100.0, 80.0)];
        if id <= 5 {
            let mut second = s::point_object(2, 200.0, 150.0);
            second.r#box = Some(proto::Box { x0: 150.0, y0: 100.0, x1: 300.0, y1: 220.0 });
            objects.push(second);
        }
        let response = client
            .segment(proto::SegmentRequest {
                image: Some(proto::Image { kind: Some(proto::image::Kind::Encoded(png.to_vec())) }),
                objects,
                mask_options: Some(proto::MaskOptions { format: proto::MaskFormat::Png as i32, multimask_output: false }),
            })
            .await
            .unwrap()
            .into_inner();
        for object in response.objects {
            let Some(proto::mask::Data::Png(bytes)) = object.mask.and_then(|m| m.data) else { panic!("no PNG") };
            let expected = imgcodecs::imdecode(&Vector::<u8>::from_slice(&bytes), imgcodecs::IMREAD_UNCHANGED).unwrap();
            let written = mask(&masks_dir.join(format!("frame_{id:06}_object_{}.png", object.object_id)));
            let mut diff = Mat::default();
            opencv::core::absdiff(&expected, &written, &mut diff).unwrap();
            assert_eq!(
                opencv::core::count_non_zero(&diff).unwrap(),
                0,
                "frame {id} object {}: mask differs from Segment",
                object.object_id
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_overlays_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start_server(common::config()).await;
    let image = common::parity_dir().join("small.png");
    let overlay = dir.path().join("overlay.png");
    let masks = dir.path().join("masks");
    let url = format!("http://{}", server.addr);
    let out = run_client(&[
        "image",
        image.to_str().unwrap(),
        "--server",
        &url,
        "--point",
        "100,80",
        "--box",
        "3:20,20,200,150",
        "--overlay",
        overlay.to_str().unwrap(),
        "--out-masks",
        masks.to_str().unwrap(),
    ])
    .await;
    assert!(out.contains("object 1:") && out.contains("object 3:"), "{out}");
    let original = imgcodecs::imread(common::parity_dir().join("small.png").to_str().unwrap(), imgcodecs::IMREAD_COLOR).unwrap();
    let drawn = imgcodecs::imread(overlay.to_str().unwrap(), imgcodecs::IMREAD_COLOR).unwrap();
    let masks = vec![(1, mask(&masks.join("object_1.png"))), (3, mask(&masks.join("object_3.png")))];
    let (to_expected, to_original, _) = tint_errors(&original, &drawn, &masks, 1);
    eprintln!("image: error to tinted {to_expected:.2}, to plain {to_original:.2}");
    // Lossless: only the box outlines and labels differ from the exact tint.
    assert!(to_expected < 1.0 && to_original > 5.0 * to_expected, "{to_expected:.2} vs {to_original:.2}");
}

/// Runs examples/python/samstream_client.py with `args` (and `--out-masks`), off the runtime;
/// returns its JSON result lines, failing on a non-zero exit.
async fn python_example(args: &[&str], out_masks: Option<&Path>) -> Vec<serde_json::Value> {
    let mut command = Command::new(common::python());
    command.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python/samstream_client.py")).args(args);
    if let Some(dir) = out_masks {
        command.arg("--out-masks").arg(dir);
    }
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "python client failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_client_streams_a_video_and_writes_masks() {
    let dir = tempfile::tempdir().unwrap();
    let video = s::make_video(dir.path(), "clip.mp4", 1.0, 4);
    let server = common::start_server(common::config()).await;
    let masks = dir.path().join("masks");
    let addr = server.addr.to_string();
    let args = ["--server", &addr, "--video", video.to_str().unwrap(), "--point", "100,80", "--box", "2:150,100,300,220"];
    let results = python_example(&args, Some(&masks)).await;
    assert_eq!(results.len(), 4, "{results:?}");
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["frame_id"], i as u64 + 1);
        assert_eq!(result["size"], serde_json::json!([320, 240]));
        assert_eq!(result["prompt_revision"], 1);
        assert!(result["timing_ms"]["encoder"].as_f64().unwrap() > 0.0, "{result}");
        let objects = result["objects"].as_array().unwrap();
        assert_eq!(objects.iter().map(|o| o["id"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2]);
        for object in objects {
            let png = mask(&masks.join(format!("frame_{:06}_object_{}.png", i + 1, object["id"])));
            assert_eq!((png.cols(), png.rows()), (320, 240));
            let area = opencv::core::count_non_zero(&png).unwrap() as u64;
            assert_eq!(area, object["area"].as_u64().unwrap(), "PNG mask area vs the reported area");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_server_side_source_get_its_frames() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config();
    config.video.sources = Some(s::looping_source(dir.path()));
    let server = common::start_server(config).await;
    let url = format!("http://{}", server.addr);

    // The overlay is drawn on the source's frames (ffmpeg's colourful test pattern), not on a
    // neutral canvas: away from the masks it is far from a uniform grey.
    let overlay = dir.path().join("overlay.mp4");
    let masks = dir.path().join("masks");
    let args = ["source", "loop", "--server", &url, "--point", "100,80", "--max-frames", "3", "--overlay"];
    run_client(&[&args[..], &[overlay.to_str().unwrap(), "--out-masks", masks.to_str().unwrap()]].concat()).await;
    let drawn = frames(&overlay);
    assert_eq!(drawn.len(), 3, "overlay frame count");
    for frame in &drawn {
        let (mut spread, mut counted) = (0.0, 0);
        for y in (0..frame.rows()).step_by(4) {
            for x in (0..frame.cols()).step_by(4) {
                let pixel = frame.at_2d::<Vec3b>(y, x).unwrap();
                spread += (0..3).map(|c| (f64::from(pixel[c]) - 96.0).abs()).sum::<f64>() / 3.0;
                counted += 1;
            }
        }
        let spread = spread / f64::from(counted);
        assert!(spread > 30.0, "the overlay's pixels are {spread:.1} from the neutral grey on average: no source frame under the masks");
    }

    // The Python example saves the same frames.
    let previews = dir.path().join("previews");
    let addr = server.addr.to_string();
    let results = python_example(
        &["--server", &addr, "--source", "loop", "--point", "100,80", "--max-frames", "2", "--save-previews", previews.to_str().unwrap()],
        None,
    )
    .await;
    assert_eq!(results.len(), 2);
    for result in results {
        let saved = imgcodecs::imread(
            previews.join(format!("frame_{:06}.jpg", result["frame_id"].as_u64().unwrap())).to_str().unwrap(),
            imgcodecs::IMREAD_COLOR,
        )
        .unwrap();
        assert_eq!((saved.cols(), saved.rows()), (320, 240), "the frame at its own size");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_segments_everything_in_an_image_and_on_a_video() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start_server(common::config()).await;
    let url = format!("http://{}", server.addr);
    let image = common::parity_dir().join("small.png");
    let overlay = dir.path().join("everything.png");
    let masks = dir.path().join("masks");
    let knobs = [
        "--everything",
        "--points-per-side",
        "4",
        "--pred-iou-thresh",
        "0.5",
        "--stability-score-thresh",
        "0.3",
        "--box-nms-thresh",
        "1.0",
    ];
    // The single-command form of earlier releases (`--image PATH`) still works, and says so.
    let mut args = vec!["--server", &url, "--image", image.to_str().unwrap(), "--overlay", overlay.to_str().unwrap()];
    args.extend(["--out-masks", masks.to_str().unwrap()]);
    args.extend(knobs);
    let out = run_client(&args).await;
    assert!(out.contains("`samstream client --image VALUE` is deprecated; use `samstream client image VALUE`"), "{out}");
    let count: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("image: 320x240, ").and_then(|r| r.strip_suffix(" masks")))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(count > 0 && out.contains("crop [0, 0, 320, 240] (layer 0): 16 points"), "{out}");
    // Each mask in its own colour, in the answer's order, as PNG mask_<n>.png.
    let written: Vec<(u32, Mat)> = (1..=count as u32).map(|n| (n, mask(&masks.join(format!("mask_{n}.png"))))).collect();
    let original = imgcodecs::imread(image.to_str().unwrap(), imgcodecs::IMREAD_COLOR).unwrap();
    let drawn = imgcodecs::imread(overlay.to_str().unwrap(), imgcodecs::IMREAD_COLOR).unwrap();
    let (to_expected, to_original, _) = tint_errors(&original, &drawn, &written, 1);
    eprintln!("everything overlay ({count} masks): error to tinted {to_expected:.2}, to plain {to_original:.2}");
    assert!(to_expected < 1.0 && to_original > 5.0 * to_expected, "{to_expected:.2} vs {to_original:.2}");

    // On a video: the automatic mode next to a prompted object, masks per frame.
    let video = s::make_video(dir.path(), "clip.mp4", 0.5, 4);
    let frames_dir = dir.path().join("frames");
    let mut args = vec![
        "video",
        video.to_str().unwrap(),
        "--server",
        &url,
        "--point",
        "100,80",
        "--track",
        "--out-masks",
        frames_dir.to_str().unwrap(),
    ];
    args.extend(knobs);
    let out = run_client(&args).await;
    assert!(out.contains("results 2"), "{out}");
    let files: Vec<String> =
        std::fs::read_dir(&frames_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    for frame in ["frame_000001", "frame_000002"] {
        assert!(files.iter().any(|f| f.starts_with(frame) && f.contains("_object_1.png")), "{frame}: {files:?}");
        assert!(files.iter().any(|f| f.starts_with(frame) && f.contains("_auto_")), "{frame}: {files:?}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_watches_a_server_side_source_with_the_affinity_header() {
    let dir = tempfile::tempdir().unwrap();
    let pattern = "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=5/1 ! videoconvert ! appsink";
    let sources =
        s::write_sources(dir.path(), &format!("[[source]]\nname = \"pattern\"\nkind = \"gstreamer\"\npipeline = \"{pattern}\"\n"));
    let mut config = common::config();
    config.video.sources = Some(sources);
    let server = common::start_server(config).await;
    let missing_before = s::metric_value("samstream_affinity_header_missing_total", "");
    let addr = server.addr.to_string();
    let results = python_example(&["--server", &addr, "--source", "pattern", "--point", "160,120", "--max-frames", "3"], None).await;
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(results.windows(2).all(|w| w[1]["frame_id"].as_u64() > w[0]["frame_id"].as_u64()), "{results:?}");
    assert_eq!(results[0]["size"], serde_json::json!([320, 240]));
    let missing_after = s::metric_value("samstream_affinity_header_missing_total", "");
    assert_eq!(missing_after, missing_before, "the example sent x-samstream-source");
}
