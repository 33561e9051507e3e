//! criterion benches of the pure-Rust stages around the two graphs, on a 1280x720 frame:
//! preprocessing (Pillow-exact and OpenCV resizes), postprocessing (logit upscale + threshold)
//! and the three mask encodings.
//!
//!     cargo bench --bench stages

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use opencv::core::{Mat, Scalar};
use opencv::prelude::*;
use samstream::mask::{encode_coco_rle, encode_png, outer_polygons};
use samstream::model::postprocess::{threshold, upscale_logits};
use samstream::model::{ImageGeometry, LOW_RES, Preprocessor, ResizeFilter};

const WIDTH: i32 = 1280;
const HEIGHT: i32 = 720;

/// A frame with structure at several scales, so resampling does real work.
fn frame() -> Mat {
    let mut rgb = Mat::new_rows_cols_with_default(HEIGHT, WIDTH, opencv::core::CV_8UC3, Scalar::all(0.0)).expect("frame");
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let px = rgb.at_2d_mut::<opencv::core::Vec3b>(y, x).expect("pixel");
            *px = opencv::core::Vec3b::from([(x * 7 % 256) as u8, (y * 3 % 256) as u8, ((x ^ y) % 256) as u8]);
        }
    }
    rgb
}

/// Low-res logits shaped like a decoder output: a blob with a ragged edge.
fn low_res_logits() -> Vec<f32> {
    (0..LOW_RES * LOW_RES)
        .map(|i| {
            let (x, y) = ((i % LOW_RES) as f32, (i / LOW_RES) as f32);
            let r = ((x - 120.0).powi(2) + (y - 70.0).powi(2)).sqrt();
            40.0 - r + 6.0 * (x * 0.3).sin() * (y * 0.2).cos()
        })
        .collect()
}

fn preprocess(c: &mut Criterion) {
    let rgb = frame();
    let mut group = c.benchmark_group("preprocess_1280x720");
    for filter in [ResizeFilter::Pillow, ResizeFilter::OpencvArea, ResizeFilter::OpencvLinear] {
        let preprocessor = Preprocessor::new(filter);
        group.bench_with_input(BenchmarkId::from_parameter(format!("{filter:?}")), &rgb, |b, rgb| {
            b.iter(|| preprocessor.run(rgb).expect("preprocess"));
        });
    }
    group.finish();
}

fn postprocess(c: &mut Criterion) {
    let geometry = ImageGeometry::new(WIDTH as usize, HEIGHT as usize);
    let logits = low_res_logits();
    c.bench_function("postprocess_1280x720/upscale_and_threshold", |b| {
        b.iter(|| threshold(&upscale_logits(&logits, &geometry).expect("upscale")).expect("threshold"));
    });
}

fn encodings(c: &mut Criterion) {
    let geometry = ImageGeometry::new(WIDTH as usize, HEIGHT as usize);
    let mask = threshold(&upscale_logits(&low_res_logits(), &geometry).expect("upscale")).expect("threshold");
    let mut group = c.benchmark_group("mask_1280x720");
    group.bench_function("coco_rle", |b| b.iter(|| encode_coco_rle(&mask).expect("rle")));
    group.bench_function("png", |b| b.iter(|| encode_png(&mask).expect("png")));
    group.bench_function("polygons", |b| b.iter(|| outer_polygons(&mask).expect("polygons")));
    group.finish();
}

criterion_group!(benches, preprocess, postprocess, encodings);
criterion_main!(benches);
