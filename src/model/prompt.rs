//! Prompts in original-image pixels, and their translation into decoder tokens exactly as
//! SamPredictor's prompt encoder sees them.

use std::sync::Arc;

use super::ImageGeometry;
use super::contract::LOW_RES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptLabel {
    Positive,
    Negative,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointPrompt {
    pub x: f32,
    pub y: f32,
    pub label: PromptLabel,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxPrompt {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

/// One object's prompt: points and/or a box, optionally a previous low-res mask (tracking).
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectPrompt {
    pub object_id: u32,
    pub points: Vec<PointPrompt>,
    pub bbox: Option<BoxPrompt>,
    /// 256x256 logits from an earlier prediction, fed back as SAM's `mask_input`.
    pub mask_input: Option<Arc<[f32]>>,
}

/// SamPredictor's point labels; box corners and the padding point use the prompt encoder's.
const LABEL_NEGATIVE: f32 = 0.0;
const LABEL_POSITIVE: f32 = 1.0;
const LABEL_BOX_TOP_LEFT: f32 = 2.0;
const LABEL_BOX_BOTTOM_RIGHT: f32 = 3.0;
const LABEL_PADDING: f32 = -1.0;

/// The decoder's inputs for one object, coordinates in the encoder's 1024 frame.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptTokens {
    pub coords: Vec<[f32; 2]>,
    pub labels: Vec<f32>,
    pub mask_input: Option<Arc<[f32]>>,
}

impl PromptTokens {
    /// Points first, then the box corners; without a box, one padding point, as
    /// `PromptEncoder._embed_points(..., pad=boxes is None)` adds it.
    pub fn new(prompt: &ObjectPrompt, geometry: &ImageGeometry) -> Self {
        let mut coords = Vec::with_capacity(prompt.points.len() + 2);
        let mut labels = Vec::with_capacity(prompt.points.len() + 2);
        for p in &prompt.points {
            coords.push(geometry.to_input(p.x, p.y));
            labels.push(match p.label {
                PromptLabel::Positive => LABEL_POSITIVE,
                PromptLabel::Negative => LABEL_NEGATIVE,
            });
        }
        match prompt.bbox {
            Some(b) => {
                coords.push(geometry.to_input(b.x0, b.y0));
                labels.push(LABEL_BOX_TOP_LEFT);
                coords.push(geometry.to_input(b.x1, b.y1));
                labels.push(LABEL_BOX_BOTTOM_RIGHT);
            }
            None => {
                coords.push([0.0, 0.0]);
                labels.push(LABEL_PADDING);
            }
        }
        debug_assert!(prompt.mask_input.as_ref().is_none_or(|m| m.len() == LOW_RES * LOW_RES));
        Self { coords, labels, mask_input: prompt.mask_input.clone() }
    }

    /// One positive point in the image's (or crop's) pixels, given in float64 as segment
    /// everything's grid computes it, and the padding point.
    pub fn point(x: f64, y: f64, geometry: &ImageGeometry) -> Self {
        Self { coords: vec![geometry.to_input_f64(x, y), [0.0, 0.0]], labels: vec![LABEL_POSITIVE, LABEL_PADDING], mask_input: None }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// How much a request or a stream may prompt.
#[derive(Debug, Clone, Copy)]
pub struct PromptLimits {
    pub max_objects: usize,
    pub max_points_per_object: usize,
}

/// A prompt that does not lie on the image it is for; `field` is its path in the request.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct OutsideImage {
    pub field: String,
    pub reason: String,
}

/// Prompts must lie on the image: 0 <= x <= width, 0 <= y <= height (pixel edges included).
/// `field` is the prompts' path, e.g. `objects` or `prompts.upsert`.
pub fn check_inside(field: &str, prompts: &[ObjectPrompt], width: usize, height: usize) -> Result<(), OutsideImage> {
    let (w, h) = (width as f32, height as f32);
    let check = |name: String, value: f32, limit: f32| {
        if (0.0..=limit).contains(&value) {
            Ok(())
        } else {
            Err(OutsideImage { field: name, reason: format!("{value} is outside the {width}x{height} image (0..={limit})") })
        }
    };
    for (i, object) in prompts.iter().enumerate() {
        for (k, p) in object.points.iter().enumerate() {
            check(format!("{field}[{i}].points[{k}].x"), p.x, w)?;
            check(format!("{field}[{i}].points[{k}].y"), p.y, h)?;
        }
        if let Some(b) = object.bbox {
            check(format!("{field}[{i}].box.x0"), b.x0, w)?;
            check(format!("{field}[{i}].box.y0"), b.y0, h)?;
            check(format!("{field}[{i}].box.x1"), b.x1, w)?;
            check(format!("{field}[{i}].box.y1"), b.y1, h)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry() -> ImageGeometry {
        ImageGeometry::new(2048, 1024)
    }

    #[test]
    fn points_without_box_get_one_padding_point() {
        let prompt = ObjectPrompt {
            object_id: 1,
            points: vec![
                PointPrompt { x: 100.0, y: 50.0, label: PromptLabel::Positive },
                PointPrompt { x: 10.0, y: 20.0, label: PromptLabel::Negative },
            ],
            bbox: None,
            mask_input: None,
        };
        let tokens = PromptTokens::new(&prompt, &geometry());
        assert_eq!(tokens.coords, vec![[50.0, 25.0], [5.0, 10.0], [0.0, 0.0]]);
        assert_eq!(tokens.labels, vec![1.0, 0.0, -1.0]);
    }

    #[test]
    fn box_corners_follow_points_without_padding() {
        let prompt = ObjectPrompt {
            object_id: 1,
            points: vec![PointPrompt { x: 100.0, y: 50.0, label: PromptLabel::Positive }],
            bbox: Some(BoxPrompt { x0: 0.0, y0: 2.0, x1: 200.0, y1: 100.0 }),
            mask_input: None,
        };
        let tokens = PromptTokens::new(&prompt, &geometry());
        assert_eq!(tokens.coords, vec![[50.0, 25.0], [0.0, 1.0], [100.0, 50.0]]);
        assert_eq!(tokens.labels, vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn coordinates_must_lie_on_the_image() {
        let prompt = |x: f32, y: f32| ObjectPrompt {
            object_id: 1,
            points: vec![PointPrompt { x, y, label: PromptLabel::Positive }],
            bbox: None,
            mask_input: None,
        };
        assert!(check_inside("objects", &[prompt(10.0, 20.0)], 10, 20).is_ok());
        assert!(check_inside("objects", &[prompt(10.0, 20.0)], 9, 20).is_err());
        let error = check_inside("objects", &[prompt(-0.5, 2.0)], 10, 10).unwrap_err();
        assert_eq!(error.field, "objects[0].points[0].x");
    }
}
