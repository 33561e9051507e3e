//! The parity fixtures `models/export.py --parity-fixtures` writes (images, prompts and the
//! official SamPredictor's full-resolution logits) and the measures the contract uses.

use std::path::Path;

use opencv::core::Mat;
use samstream::model::{BoxPrompt, ObjectPrompt, PointPrompt, PromptLabel};
use serde::Deserialize;

/// The contract per case: correlation of the full-resolution logits, and the share of
/// confidently classified reference pixels (|logit| > CONFIDENT_LOGIT) whose sign differs.
pub const MIN_CORRELATION: f64 = 0.9999;
pub const MAX_SIGN_DISAGREEMENT: f64 = 0.001;
pub const CONFIDENT_LOGIT: f32 = 0.05;

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
pub struct Case {
    pub name: String,
    pub image: String,
    pub resized_image: String,
    pub width: usize,
    pub height: usize,
    pub points: Vec<[f32; 3]>,
    #[serde(rename = "box")]
    pub bbox: Option<[f32; 4]>,
    pub multimask: bool,
    pub logits_file: String,
    pub logits_shape: [usize; 3],
    pub scores: Vec<f32>,
}

pub fn load_cases() -> Vec<Case> {
    load_cases_in(&super::parity_dir())
}

/// The cases of the fixtures in `dir` (a model directory's `parity/`).
pub fn load_cases_in(dir: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(dir.join("cases.json")).expect("cases.json from models/export.py --parity-fixtures");
    serde_json::from_str::<Cases>(&text).expect("valid cases.json").cases
}

/// A fixture image as the server decodes it: 8-bit RGB.
pub fn read_rgb(file: &str) -> Mat {
    let image = samstream::video::ImagePayload::Encoded(super::png_bytes(file));
    let limits = samstream::video::ImageLimits { max_pixels: u64::MAX, max_bytes: usize::MAX };
    samstream::video::decode_image(Some(&image), &limits).expect("fixture decodes")
}

/// The reference logits of every returned token, `[tokens, height, width]` row-major.
pub fn read_logits(case: &Case) -> Vec<f32> {
    read_logits_in(&super::parity_dir(), case)
}

pub fn read_logits_in(dir: &Path, case: &Case) -> Vec<f32> {
    let bytes = std::fs::read(dir.join(&case.logits_file)).expect("logits file");
    let values: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(values.len(), case.logits_shape.iter().product::<usize>(), "{}: logits size", case.name);
    values
}

pub fn prompt(case: &Case) -> ObjectPrompt {
    let points = case
        .points
        .iter()
        .map(|&[x, y, label]| PointPrompt { x, y, label: if label == 1.0 { PromptLabel::Positive } else { PromptLabel::Negative } })
        .collect();
    let bbox = case.bbox.map(|[x0, y0, x1, y1]| BoxPrompt { x0, y0, x1, y1 });
    ObjectPrompt { object_id: 1, points, bbox, mask_input: None }
}

pub fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        sa += x;
        sb += y;
        saa += x * x;
        sbb += y * y;
        sab += x * y;
    }
    let cov = sab - sa * sb / n;
    cov / ((saa - sa * sa / n).sqrt() * (sbb - sb * sb / n).sqrt())
}

/// Fraction of confidently classified reference pixels whose sign samstream gets wrong;
/// `inside` says, per pixel, whether samstream's mask holds it.
pub fn sign_disagreement(inside: impl Iterator<Item = bool>, reference: &[f32]) -> f64 {
    let (mut confident, mut wrong) = (0usize, 0usize);
    for (ours, &r) in inside.zip(reference) {
        if r.abs() > CONFIDENT_LOGIT {
            confident += 1;
            if ours != (r > 0.0) {
                wrong += 1;
            }
        }
    }
    wrong as f64 / confident.max(1) as f64
}
