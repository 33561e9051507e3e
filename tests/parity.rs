//! Parity with the official PyTorch SamPredictor on the same weights: the export script wrote
//! four images, sixteen prompt sets and the predictor's full-resolution logits; this runs
//! samstream's own pipeline on them, on both data paths: the host one (Pillow-exact resize in
//! Rust, ONNX encoder/decoder, OpenCV upscaling) and the device one (the preprocessing and
//! postprocessing graphs, here on the CPU provider). Deliberately broken pipelines (BGR input
//! on either path, INTER_LINEAR shrinking) must fail.
//!
//! The provider and the encoder's arithmetic come from the server's own variables
//! (`SAMSTREAM_DEVICE`, `SAMSTREAM_TF32`, `SAMSTREAM_ENCODER_PRECISION`; unset: the exact CPU
//! path), so the same contract runs on a GPU and in its fast modes; `SAMSTREAM_PARITY_JSON`
//! names a file that gets one JSON line of figures per data path (scripts/gpu_bench.sh).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::parity::{Case, MAX_SIGN_DISAGREEMENT, MIN_CORRELATION, load_cases, pearson, prompt, read_logits, read_rgb, sign_disagreement};
use opencv::core::Mat;
use opencv::prelude::*;
use samstream::model::postprocess::{binary_mask, chosen_tokens, upscale_logits};
use samstream::model::prompt::PromptTokens;
use samstream::model::{
    DataPath, DecodedObjects, Device, DeviceFallback, EncoderInput, EncoderPrecision, MaskRequest, Preprocessor, ResizeFilter, RgbFrame,
    RuntimeOptions,
};

#[derive(Debug)]
struct Figures {
    case: String,
    /// Of the full-resolution logits; the device path returns masks, so only their signs count
    /// (its postprocessing graph's logits are checked in tests/device_graphs.rs).
    correlation: Option<f64>,
    sign_disagreement: f64,
    order_matches: bool,
}

impl Figures {
    fn passes(&self) -> bool {
        self.correlation.is_none_or(|c| c >= MIN_CORRELATION) && self.sign_disagreement <= MAX_SIGN_DISAGREEMENT && self.order_matches
    }
}

/// The exact CPU path unless the server's variables ask for another provider or precision; a GPU
/// that cannot be used fails the load instead of measuring the CPU.
fn runtime_options(data_path: DataPath) -> RuntimeOptions {
    let variable = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let device: Device = variable("SAMSTREAM_DEVICE").map_or(Device::Cpu, |v| v.parse().expect("SAMSTREAM_DEVICE"));
    let encoder_precision = variable("SAMSTREAM_ENCODER_PRECISION")
        .map_or(EncoderPrecision::Fp32, |v| clap::ValueEnum::from_str(&v, true).expect("SAMSTREAM_ENCODER_PRECISION"));
    let tf32 = variable("SAMSTREAM_TF32").is_some_and(|v| v.parse().expect("SAMSTREAM_TF32 is true or false"));
    let device_fallback = if device == Device::Cpu { DeviceFallback::Cpu } else { DeviceFallback::Fail };
    RuntimeOptions {
        ort_lib: common::ort_lib(),
        intra_threads: 1,
        data_path,
        device,
        device_fallback,
        encoder_precision,
        tf32,
        ..Default::default()
    }
}

fn mat_values(m: &Mat) -> Vec<f32> {
    m.data_typed::<f32>().expect("continuous f32 logits").to_vec()
}

/// Runs samstream's pipeline on every case whose image passes `include`, on `data_path`,
/// optionally with the image's channels swapped (the classic BGR-for-RGB bug), and returns the
/// per-case figures.
fn evaluate(data_path: DataPath, filter: ResizeFilter, swap_channels: bool, include: impl Fn(&Case) -> bool) -> Vec<Figures> {
    let options = runtime_options(data_path);
    let mut model = samstream::model::load(&common::model_dir(), &options).expect("model loads");
    let model_path = model.info.data_path;
    assert_eq!(model_path, if data_path == DataPath::Auto { DataPath::Host } else { data_path }, "auto is host on the CPU");
    eprintln!("parity on {} ({:?}, {model_path:?} data path)", model.info.provider, model.info.precision);
    let prepare = |rgb: Mat| match model_path {
        DataPath::Device => EncoderInput::Pixels(RgbFrame::new(Arc::new(rgb)).expect("an RGB frame")),
        _ => EncoderInput::Preprocessed(Arc::new(Preprocessor::new(filter).run(&rgb).expect("preprocess"))),
    };
    let cases = load_cases();
    let mut by_image: BTreeMap<&str, Vec<&Case>> = BTreeMap::new();
    for case in cases.iter().filter(|c| include(c)) {
        by_image.entry(case.image.as_str()).or_default().push(case);
    }
    let mut figures = Vec::new();
    for (image, cases) in by_image {
        let mut rgb = read_rgb(image);
        if swap_channels {
            let mut swapped = Mat::default();
            opencv::imgproc::cvt_color_def(&rgb, &mut swapped, opencv::imgproc::COLOR_RGB2BGR).unwrap();
            rgb = swapped;
        }
        let input = prepare(rgb);
        let geometry = input.geometry();
        assert_eq!((geometry.width, geometry.height), (cases[0].width, cases[0].height));
        let (embedding, _) = model.encoder.encode(vec![input]).expect("encoder").pop().expect("one result");
        for case in cases {
            let tokens = PromptTokens::new(&prompt(case), &geometry);
            let request = MaskRequest::objects(geometry, case.multimask, false);
            let mut decoded = DecodedObjects::with_capacity(1);
            decoded.push_group(&[0], model.decoder.decode(&embedding, &[&tokens], &request).expect("decoder"));
            let iou = decoded.iou.row(0).to_vec();
            let chosen = chosen_tokens(&iou, case.multimask);
            let reference = read_logits(case);
            let plane = case.width * case.height;
            let mut expected_order: Vec<usize> = (0..case.scores.len()).collect();
            expected_order.sort_by(|&a, &b| case.scores[b].total_cmp(&case.scores[a]));
            let first_token = if case.multimask { 1 } else { 0 };
            let our_order: Vec<usize> = chosen.iter().map(|&(token, _)| token - first_token).collect();
            let (mut worst_corr, mut worst_sign) = (None::<f64>, 0f64);
            for &(token, _) in &chosen {
                let reference = &reference[(token - first_token) * plane..][..plane];
                let sign = match decoded.low_res(0, token).expect("host memory") {
                    Some(low_res) => {
                        let logits = mat_values(&upscale_logits(low_res, &geometry).unwrap());
                        let corr = pearson(&logits, reference);
                        worst_corr = Some(worst_corr.map_or(corr, |w| w.min(corr)));
                        sign_disagreement(logits.iter().map(|&l| l > 0.0), reference)
                    }
                    None => {
                        let mask = binary_mask(&decoded, 0, token, &geometry).expect("device mask");
                        sign_disagreement(mask.bytes().unwrap().iter().map(|&v| v != 0), reference)
                    }
                };
                worst_sign = worst_sign.max(sign);
            }
            figures.push(Figures {
                case: case.name.clone(),
                correlation: worst_corr,
                sign_disagreement: worst_sign,
                order_matches: our_order == expected_order,
            });
        }
    }
    for f in &figures {
        let corr = f.correlation.map_or("(masks only)".to_string(), |c| format!("corr {c:.7} (1-corr {:.1e})", 1.0 - c));
        eprintln!(
            "{:<9} {:<6} {:<13} bgr={swap_channels:<5} {:<32} {corr} sign-disagree {:.5}% order {} -> {}",
            "parity",
            format!("{:?}", model_path),
            format!("{filter:?}"),
            f.case,
            100.0 * f.sign_disagreement,
            if f.order_matches { "ok" } else { "WRONG" },
            if f.passes() { "pass" } else { "FAIL" }
        );
    }
    figures
}

fn summary(figures: &[Figures]) -> String {
    let min_corr = figures.iter().filter_map(|f| f.correlation).fold(f64::INFINITY, f64::min);
    let max_sign = figures.iter().map(|f| f.sign_disagreement).fold(0.0, f64::max);
    let failing = figures.iter().filter(|f| !f.passes()).count();
    let corr =
        if min_corr.is_finite() { format!("min correlation {min_corr:.7} (1-corr {:.1e})", 1.0 - min_corr) } else { "masks only".into() };
    format!("{} cases, {failing} failing; {corr}, max sign disagreement {:.4}%", figures.len(), 100.0 * max_sign)
}

/// One JSON line of the figures to `SAMSTREAM_PARITY_JSON`, when it is set.
fn record(data_path: DataPath, figures: &[Figures]) {
    let Some(path) = std::env::var_os("SAMSTREAM_PARITY_JSON") else { return };
    let options = runtime_options(data_path);
    let mut signs: Vec<f64> = figures.iter().map(|f| 100.0 * f.sign_disagreement).collect();
    signs.sort_by(f64::total_cmp);
    let line = serde_json::json!({
        "data_path": data_path.to_string(),
        "device": options.device.to_string(),
        "tf32": options.tf32,
        "encoder_precision": options.encoder_precision,
        "cases": figures.len(),
        "failing": figures.iter().filter(|f| !f.passes()).count(),
        "order_mismatches": figures.iter().filter(|f| !f.order_matches).count(),
        "min_correlation": figures.iter().filter_map(|f| f.correlation).reduce(f64::min),
        "median_sign_disagreement_pct": signs.get(signs.len() / 2),
        "max_sign_disagreement_pct": signs.last(),
    });
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("SAMSTREAM_PARITY_JSON opens");
    writeln!(file, "{line}").expect("SAMSTREAM_PARITY_JSON is written");
}

#[test]
fn resampling_is_bit_exact_with_pillow() {
    for case in load_cases().iter().filter(|c| c.multimask && c.points.len() == 1 && c.bbox.is_none()) {
        let rgb = read_rgb(&case.image);
        let expected = read_rgb(&case.resized_image);
        let geometry = samstream::model::ImageGeometry::new(case.width, case.height);
        let ours = samstream::model::resize_rgb8(
            rgb.data_bytes().unwrap(),
            case.width,
            case.height,
            geometry.resized_width,
            geometry.resized_height,
        );
        assert_eq!((expected.cols() as usize, expected.rows() as usize), (geometry.resized_width, geometry.resized_height));
        let differing = ours.iter().zip(expected.data_bytes().unwrap()).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "{}: {differing} bytes differ from SamPredictor's resize", case.image);
    }
}

#[test]
fn matches_the_official_predictor() {
    let figures = evaluate(DataPath::Host, ResizeFilter::Pillow, false, |_| true);
    assert_eq!(figures.len(), 32, "four images x four prompt sets x single/multimask");
    record(DataPath::Host, &figures);
    let report = summary(&figures);
    eprintln!("parity (host data path, pillow resize): {report}");
    let failing: Vec<&Figures> = figures.iter().filter(|f| !f.passes()).collect();
    assert!(failing.is_empty(), "parity fails: {report}: {failing:#?}");
}

#[test]
fn the_device_data_path_matches_the_official_predictor() {
    let figures = evaluate(DataPath::Device, ResizeFilter::Pillow, false, |_| true);
    assert_eq!(figures.len(), 32, "four images x four prompt sets x single/multimask");
    record(DataPath::Device, &figures);
    let report = summary(&figures);
    eprintln!("parity (device data path): {report}");
    let failing: Vec<&Figures> = figures.iter().filter(|f| !f.passes()).collect();
    assert!(failing.is_empty(), "parity fails: {report}: {failing:#?}");
}

#[test]
fn a_bgr_swap_fails_parity() {
    for data_path in [DataPath::Host, DataPath::Device] {
        let figures = evaluate(data_path, ResizeFilter::Pillow, true, |_| true);
        let report = summary(&figures);
        eprintln!("parity with BGR input ({data_path:?} data path): {report}");
        assert!(figures.iter().any(|f| !f.passes()), "a BGR swap must fail the parity check on the {data_path:?} path: {report}");
    }
}

#[test]
fn inter_linear_shrinking_fails_parity() {
    // Only the images that are shrunk: enlarging with INTER_LINEAR is not the failure under test.
    let shrunk = |c: &Case| c.width.max(c.height) > samstream::model::IMAGE_SIZE;
    let figures = evaluate(DataPath::Host, ResizeFilter::OpencvLinear, false, shrunk);
    let report = summary(&figures);
    eprintln!("parity with INTER_LINEAR shrinking: {report}");
    assert!(figures.iter().any(|f| !f.passes()), "INTER_LINEAR shrinking must fail the parity check: {report}");
}

#[test]
fn inter_area_is_close_but_not_the_contract() {
    // `--resize opencv-area` is documented as close to SamPredictor, not exact: hold it to a
    // looser bound and log its figures for the README.
    let figures = evaluate(DataPath::Host, ResizeFilter::OpencvArea, false, |_| true);
    let report = summary(&figures);
    eprintln!("parity with INTER_AREA/INTER_LINEAR (opencv-area): {report}");
    assert!(figures.iter().all(|f| f.correlation.is_some_and(|c| c >= 0.999) && f.sign_disagreement <= 0.01), "{report}");
}
