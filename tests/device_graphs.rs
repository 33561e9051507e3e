//! The device data path's own graphs, run on the CPU provider (the same graphs a GPU runs):
//! the preprocessing graph must reproduce SamPredictor's Pillow resize bit for bit and the host
//! preprocessor's tensor exactly; the postprocessing graph must meet the parity contract against
//! the official predictor's full-resolution logits and agree with the host's OpenCV masks.
//! Deliberately broken inputs (a BGR frame, a missing crop of the padding) must fail the checks.

mod common;

use std::sync::Arc;

use common::parity::{MAX_SIGN_DISAGREEMENT, MIN_CORRELATION, load_cases, pearson, prompt, read_logits, read_rgb, sign_disagreement};
use opencv::prelude::*;
use ort::value::Tensor;
use samstream::model::ort::{DevicePostprocess, DevicePreprocess};
use samstream::model::postprocess::{threshold, upscale_logits};
use samstream::model::preprocess::{PIXEL_MEAN, PIXEL_STD};
use samstream::model::prompt::PromptTokens;
use samstream::model::{
    DataPath, DecodedObjects, EncoderInput, ImageGeometry, LOW_RES, MASK_TOKENS, MaskRequest, Preprocessor, RgbFrame, RuntimeOptions,
};

const IMAGES: [&str; 4] = ["landscape", "small", "portrait", "square"];

fn options() -> RuntimeOptions {
    RuntimeOptions { ort_lib: common::ort_lib(), intra_threads: 1, ..Default::default() }
}

fn swapped(rgb: &opencv::core::Mat) -> opencv::core::Mat {
    let mut bgr = opencv::core::Mat::default();
    opencv::imgproc::cvt_color_def(rgb, &mut bgr, opencv::imgproc::COLOR_RGB2BGR).unwrap();
    bgr
}

/// The 8-bit resized image inside the graph's normalised tensor, and how many of the tensor's
/// padding values are not exactly zero.
fn resized_bytes(tensor: &ndarray::Array4<f32>, g: &ImageGeometry) -> (Vec<u8>, usize) {
    let mut bytes = vec![0u8; g.resized_width * g.resized_height * 3];
    let mut nonzero_padding = 0;
    for c in 0..3 {
        for y in 0..samstream::model::IMAGE_SIZE {
            for x in 0..samstream::model::IMAGE_SIZE {
                let v = tensor[[0, c, y, x]];
                if y >= g.resized_height || x >= g.resized_width {
                    nonzero_padding += usize::from(v != 0.0);
                    continue;
                }
                let level = (v * PIXEL_STD[c] + PIXEL_MEAN[c]).round();
                bytes[(y * g.resized_width + x) * 3 + c] = level.clamp(0.0, 255.0) as u8;
            }
        }
    }
    (bytes, nonzero_padding)
}

#[test]
fn the_preprocessing_graph_is_bit_exact_with_pillow_and_the_host_path() {
    let mut graph = DevicePreprocess::load(&options()).expect("preprocessing graph loads");
    for name in IMAGES {
        let rgb = read_rgb(&format!("{name}.png"));
        let host = Preprocessor::default().run(&rgb).expect("host preprocessing");
        let frame = RgbFrame::new(Arc::new(rgb)).unwrap();
        let (device, times) = graph.to_host(&frame).expect("graph runs");
        let differing_values = device.iter().zip(host.tensor.iter()).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        let (bytes, nonzero_padding) = resized_bytes(&device, &frame.geometry);
        let pillow = read_rgb(&format!("{name}_resized.png"));
        let differing_bytes = bytes.iter().zip(pillow.data_bytes().unwrap()).filter(|(a, b)| a != b).count();
        eprintln!(
            "preprocess graph {name:<9} {}x{} -> {}x{}: {differing_bytes} bytes differ from Pillow, {differing_values} values from the host tensor ({:.1} ms)",
            frame.geometry.width,
            frame.geometry.height,
            frame.geometry.resized_width,
            frame.geometry.resized_height,
            times.preprocess.as_secs_f64() * 1e3
        );
        assert_eq!(differing_bytes, 0, "{name}: the graph's resize differs from SamPredictor's");
        assert_eq!(differing_values, 0, "{name}: the graph's tensor differs from the host preprocessor's");
        assert_eq!(nonzero_padding, 0, "{name}: padding must be exactly zero");
    }
}

#[test]
fn a_bgr_frame_fails_the_preprocessing_check() {
    let mut graph = DevicePreprocess::load(&options()).expect("preprocessing graph loads");
    let rgb = read_rgb("landscape.png");
    let frame = RgbFrame::new(Arc::new(swapped(&rgb))).unwrap();
    let (device, _) = graph.to_host(&frame).expect("graph runs");
    let (bytes, _) = resized_bytes(&device, &frame.geometry);
    let pillow = read_rgb("landscape_resized.png");
    let differing = bytes.iter().zip(pillow.data_bytes().unwrap()).filter(|(a, b)| a != b).count();
    eprintln!("preprocess graph with BGR input: {differing} of {} bytes differ", bytes.len());
    assert!(differing > bytes.len() / 10, "the check must see a channel swap: only {differing} bytes differ");
}

/// Per case: the worst correlation and sign disagreement of the postprocessing graph's logits
/// against the official predictor, and the fraction of mask pixels where the graph's masks
/// differ from the host's OpenCV masks. `geometry_of` may alter the geometry the graph is told.
fn postprocess_figures(geometry_of: impl Fn(ImageGeometry) -> ImageGeometry) -> Vec<(String, f64, f64, f64)> {
    let options = RuntimeOptions { data_path: DataPath::Host, ..options() };
    let mut model = samstream::model::load(&common::model_dir(), &options).expect("model loads");
    let mut graph = DevicePostprocess::load(&options).expect("postprocessing graph loads");
    let mut figures = Vec::new();
    let mut last_image = String::new();
    let mut embedding = None;
    for case in load_cases() {
        let rgb = read_rgb(&case.image);
        let geometry = ImageGeometry::new(case.width, case.height);
        if case.image != last_image {
            let input = EncoderInput::Preprocessed(Arc::new(Preprocessor::default().run(&rgb).unwrap()));
            embedding = Some(model.encoder.encode(vec![input]).unwrap().pop().unwrap().0);
            last_image = case.image.clone();
        }
        let tokens = PromptTokens::new(&prompt(&case), &geometry);
        let request = MaskRequest::objects(geometry, case.multimask, false);
        let mut decoded = DecodedObjects::with_capacity(1);
        decoded.push_group(&[0], model.decoder.decode(embedding.as_ref().unwrap(), &[&tokens], &request).unwrap());
        let low_res: Vec<f32> = (0..MASK_TOKENS).flat_map(|t| decoded.low_res(0, t).unwrap().unwrap().to_vec()).collect();
        let low_res = Tensor::from_array(([1, MASK_TOKENS, LOW_RES, LOW_RES], low_res)).unwrap().upcast();
        let returned = request.tokens();
        let logits = graph.logits(&low_res, returned, geometry_of(geometry)).expect("graph runs");
        let masks = graph.masks(&low_res, 1, returned, geometry, false).expect("graph runs");
        let reference = read_logits(&case);
        let plane = case.width * case.height;
        let (mut worst_corr, mut worst_sign, mut mask_diff) = (1f64, 0f64, 0f64);
        for (k, &token) in returned.iter().enumerate() {
            let ours = &logits[k * plane..][..plane];
            let theirs = &reference[k * plane..][..plane];
            worst_corr = worst_corr.min(pearson(ours, theirs));
            worst_sign = worst_sign.max(sign_disagreement(ours.iter().map(|&l| l > 0.0), theirs));
            let host = threshold(&upscale_logits(decoded.low_res(0, token).unwrap().unwrap(), &geometry).unwrap()).unwrap();
            let host = host.data_bytes().unwrap().to_vec();
            let device = &masks.masks.data::<u8>().unwrap()[k * plane..][..plane];
            let differing = host.iter().zip(device).filter(|(a, b)| a != b).count();
            mask_diff = mask_diff.max(differing as f64 / plane as f64);
        }
        figures.push((case.name.clone(), worst_corr, worst_sign, mask_diff));
    }
    figures
}

#[test]
fn the_postprocessing_graph_matches_the_official_predictor_and_the_host_masks() {
    let figures = postprocess_figures(|g| g);
    assert_eq!(figures.len(), 32);
    for (name, corr, sign, mask_diff) in &figures {
        eprintln!(
            "postprocess graph {name:<32} corr {corr:.7} sign-disagree {:.5}% masks differ from OpenCV's on {:.5}% of pixels",
            100.0 * sign,
            100.0 * mask_diff
        );
    }
    let failing: Vec<_> =
        figures.iter().filter(|(_, corr, sign, diff)| *corr < MIN_CORRELATION || *sign > MAX_SIGN_DISAGREEMENT || *diff > 1e-4).collect();
    assert!(failing.is_empty(), "postprocessing graph misses the contract: {failing:?}");
}

#[test]
fn skipping_the_crop_of_the_padding_fails_postprocessing_parity() {
    // Telling the graph the resized image fills the whole 1024 square stretches the padding
    // into the mask: the check must catch it (square images have no padding, so they pass).
    let figures = postprocess_figures(|g| ImageGeometry { resized_width: 1024, resized_height: 1024, ..g });
    let failing = figures.iter().filter(|(_, corr, sign, _)| *corr < MIN_CORRELATION || *sign > MAX_SIGN_DISAGREEMENT).count();
    eprintln!("postprocess graph without the crop: {failing} of {} cases fail", figures.len());
    assert!(failing >= 24, "the three padded images' cases must fail; {failing} did");
}

/// What each kind of upload waits for is decided in one place, `Placement::upload_wait`, asked
/// here for a CUDA placement (its memory descriptions need no GPU): a frame's upload is never
/// followed by a provider-wide synchronisation (`synchronize_inputs` is `cudaDeviceSynchronize`,
/// which would stall the encoder thread on the decoder thread's GPU work); only a frame size's
/// constants, bound once, are. (tests/architecture.rs checks that nothing else in src/ calls
/// `synchronize_inputs` or ort's copy sessions.)
#[test]
fn frame_uploads_never_wait_for_the_whole_device() {
    use samstream::model::ExecutionProvider;
    use samstream::model::ort::{Placement, Upload, UploadWait};
    DevicePreprocess::load(&options()).expect("the runtime loads");
    let cuda = Placement::for_provider(ExecutionProvider::Cuda(0)).unwrap();
    assert_eq!(cuda.upload_wait(Upload::Frame), UploadWait::ConsumingRun);
    assert_eq!(cuda.upload_wait(Upload::Constant), UploadWait::Provider);
    let cpu = Placement::for_provider(ExecutionProvider::Cpu).unwrap();
    assert_eq!(cpu.upload_wait(Upload::Frame), UploadWait::NothingCopied);
    assert_eq!(cpu.upload_wait(Upload::Constant), UploadWait::NothingCopied);
}
