//! The baseline samstream is measured against: MobileSAM's two graphs run straight through
//! `ort`, with the same session settings the server uses by default (all graph optimisations,
//! one intra-op thread per core, sequential execution) and nothing else — no gRPC, no queues,
//! no image decoding or mask encoding. Prints one JSON object of medians in milliseconds.
//!
//!     cargo bench --bench raw_ort -- IMAGE [RUNS]     (SAMSTREAM_MODEL_DIR, ORT_DYLIB_PATH set)

use std::path::PathBuf;
use std::time::Instant;

use ndarray::{Array1, Array2, Array3, Array4};
use opencv::imgcodecs;
use opencv::prelude::*;
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;
use samstream::model::{Preprocessor, ResizeFilter};

fn median_ms(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn session(env: &Environment, path: PathBuf, threads: usize) -> Session {
    let open = || -> ort::Result<Session> {
        Session::builder(env)?
            .with_optimization_level(GraphOptimizationLevel::All)?
            .with_intra_threads(threads)?
            .with_inter_threads(1)?
            .commit_from_file(&path)
    };
    open().unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let image = args.first().expect("usage: raw_ort IMAGE [RUNS]");
    let runs: usize = args.get(1).map_or(7, |r| r.parse().expect("RUNS is a number"));
    let model_dir = PathBuf::from(std::env::var("SAMSTREAM_MODEL_DIR").expect("SAMSTREAM_MODEL_DIR"));
    let library = std::env::var("ORT_DYLIB_PATH").expect("ORT_DYLIB_PATH");
    let env = ort::init_from(&library).expect("onnxruntime library").with_name("raw_ort").build().expect("environment");
    let threads = std::thread::available_parallelism().map_or(1, usize::from);

    let bgr = imgcodecs::imread(image, imgcodecs::IMREAD_COLOR).expect("reading the image");
    assert!(!bgr.empty(), "cannot decode {image}");
    let mut rgb = Mat::default();
    opencv::imgproc::cvt_color_def(&bgr, &mut rgb, opencv::imgproc::COLOR_BGR2RGB).expect("BGR to RGB");
    let input = Preprocessor::new(ResizeFilter::Pillow).run(&rgb).expect("preprocess");

    let mut report = serde_json::Map::new();
    report.insert("threads".into(), threads.into());
    report.insert("runs".into(), runs.into());
    let mut embedding = None;
    for (key, file) in [("encoder_fp32_ms", "encoder.onnx"), ("encoder_int8_ms", "encoder_int8.onnx")] {
        let path = model_dir.join(file);
        if !path.exists() {
            continue;
        }
        let mut encoder = session(&env, path, threads);
        let mut samples = Vec::new();
        for run in 0..=runs {
            let started = Instant::now();
            let outputs = encoder.run(ort::inputs![TensorRef::from_array_view(input.tensor.view()).expect("tensor")]).expect("encoder run");
            let elapsed = started.elapsed().as_secs_f64() * 1e3;
            if run > 0 {
                samples.push(elapsed); // the first run is warm-up
            }
            if embedding.is_none() {
                let out = outputs[0].try_extract_array::<f32>().expect("embedding");
                embedding = Some(out.to_owned().into_dimensionality::<ndarray::Ix4>().expect("4-d embedding"));
            }
        }
        report.insert(key.into(), median_ms(samples).into());
    }
    let embedding = embedding.expect("encoder.onnx exists");

    let mut decoder = session(&env, model_dir.join("decoder.onnx"), threads);
    let geometry_scale = 1024.0 / rgb.cols().max(rgb.rows()) as f32;
    for objects in [1usize, 8, 32] {
        // One point per object at spread-out positions, plus SamPredictor's padding point.
        let mut coords = Array3::<f32>::zeros((objects, 2, 2));
        let mut labels = Array2::<f32>::from_elem((objects, 2), -1.0);
        for i in 0..objects {
            coords[[i, 0, 0]] = (40 + (i * 37) % 1200) as f32 * geometry_scale;
            coords[[i, 0, 1]] = (40 + (i * 53) % 640) as f32 * geometry_scale;
            labels[[i, 0]] = 1.0;
        }
        let mask_input = Array4::<f32>::zeros((objects, 1, 256, 256));
        let has_mask = Array1::<f32>::zeros(objects);
        let mut samples = Vec::new();
        for run in 0..=runs {
            let started = Instant::now();
            decoder
                .run(ort::inputs![
                    "image_embeddings" => TensorRef::from_array_view(embedding.view()).expect("tensor"),
                    "point_coords" => TensorRef::from_array_view(coords.view()).expect("tensor"),
                    "point_labels" => TensorRef::from_array_view(labels.view()).expect("tensor"),
                    "mask_input" => TensorRef::from_array_view(mask_input.view()).expect("tensor"),
                    "has_mask_input" => TensorRef::from_array_view(has_mask.view()).expect("tensor"),
                ])
                .expect("decoder run");
            if run > 0 {
                samples.push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
        report.insert(format!("decoder_{objects}_ms"), median_ms(samples).into());
    }
    println!("{}", serde_json::Value::Object(report));
}
