//! Request messages to domain types. Every rejection names the offending field's path.

use std::collections::HashMap;

use super::convert;
use super::status::ApiError;
use crate::mask::MaskOptions;
use crate::model::everything::EverythingOptions;
pub use crate::model::prompt::PromptLimits;
use crate::model::{BoxPrompt, ObjectPrompt, PointPrompt, PromptLabel};
use crate::proto;
use crate::session::{PreviewRequest, PromptUpdate};
use crate::video::preview::{self, PreviewSpec};

/// `field` is the options' path, e.g. `mask_options` or `start.mask_options`.
pub fn mask_options(field: &str, options: Option<&proto::MaskOptions>) -> Result<MaskOptions, ApiError> {
    let options = options.cloned().unwrap_or_default();
    let format = proto::MaskFormat::try_from(options.format)
        .map_err(|_| ApiError::invalid(format!("{field}.format"), format!("unknown mask format {}", options.format)))?;
    Ok(MaskOptions { format: convert::mask_format(format), multimask: options.multimask_output })
}

/// `field` is the options' path (`start.preview`); None when the client asked for no previews.
pub fn preview(field: &str, options: Option<&proto::PreviewOptions>) -> Result<Option<PreviewRequest>, ApiError> {
    let Some(options) = options else { return Ok(None) };
    let max_side = match options.max_side {
        0 => preview::DEFAULT_MAX_SIDE,
        side if preview::MAX_SIDE_RANGE.contains(&side) => side,
        side => {
            let (low, high) = (preview::MAX_SIDE_RANGE.start(), preview::MAX_SIDE_RANGE.end());
            let reason = format!("must be 0 (the default, {}) or {low}..={high}, got {side}", preview::DEFAULT_MAX_SIDE);
            return Err(ApiError::invalid(format!("{field}.max_side"), reason));
        }
    };
    let quality = match options.quality {
        0 => preview::DEFAULT_QUALITY,
        quality @ 1..=100 => quality,
        quality => {
            let reason = format!("must be 0 (the default, {}) or 1..=100, got {quality}", preview::DEFAULT_QUALITY);
            return Err(ApiError::invalid(format!("{field}.quality"), reason));
        }
    };
    Ok(Some(PreviewRequest { spec: PreviewSpec { max_side, quality }, every: u64::from(options.every_n_results.max(1)) }))
}

fn finite(field: impl FnOnce() -> String, value: f32) -> Result<f32, ApiError> {
    if value.is_finite() { Ok(value) } else { Err(ApiError::invalid(field(), format!("must be a finite number, got {value}"))) }
}

fn point(prefix: &str, p: &proto::Point) -> Result<PointPrompt, ApiError> {
    let label = match proto::PointLabel::try_from(p.label) {
        Ok(proto::PointLabel::Positive) => PromptLabel::Positive,
        Ok(proto::PointLabel::Negative) => PromptLabel::Negative,
        Ok(proto::PointLabel::Unspecified) | Err(_) => {
            return Err(ApiError::invalid(
                format!("{prefix}.label"),
                format!("must be POINT_LABEL_POSITIVE or POINT_LABEL_NEGATIVE, got {}", p.label),
            ));
        }
    };
    Ok(PointPrompt { x: finite(|| format!("{prefix}.x"), p.x)?, y: finite(|| format!("{prefix}.y"), p.y)?, label })
}

fn bbox(prefix: &str, b: &proto::Box) -> Result<BoxPrompt, ApiError> {
    let x0 = finite(|| format!("{prefix}.x0"), b.x0)?;
    let y0 = finite(|| format!("{prefix}.y0"), b.y0)?;
    let x1 = finite(|| format!("{prefix}.x1"), b.x1)?;
    let y1 = finite(|| format!("{prefix}.y1"), b.y1)?;
    if x0 >= x1 {
        return Err(ApiError::invalid(format!("{prefix}.x1"), format!("must be greater than x0 ({x0}), got {x1}")));
    }
    if y0 >= y1 {
        return Err(ApiError::invalid(format!("{prefix}.y1"), format!("must be greater than y0 ({y0}), got {y1}")));
    }
    Ok(BoxPrompt { x0, y0, x1, y1 })
}

/// Validates the prompts of `field` (e.g. `objects`, `prompts.upsert`) before the image is known.
pub fn object_prompts(field: &str, objects: &[proto::ObjectPrompt], limits: &PromptLimits) -> Result<Vec<ObjectPrompt>, ApiError> {
    if objects.len() > limits.max_objects {
        return Err(ApiError::invalid(field, format!("{} objects exceed the limit of {}", objects.len(), limits.max_objects)));
    }
    let mut seen = HashMap::with_capacity(objects.len());
    objects
        .iter()
        .enumerate()
        .map(|(i, object)| {
            let prefix = format!("{field}[{i}]");
            if let Some(first) = seen.insert(object.object_id, i) {
                return Err(ApiError::invalid(
                    format!("{prefix}.object_id"),
                    format!("{} is already used by {field}[{first}]", object.object_id),
                ));
            }
            if object.points.is_empty() && object.r#box.is_none() {
                return Err(ApiError::invalid(prefix, "needs at least one point or a box"));
            }
            if object.points.len() > limits.max_points_per_object {
                return Err(ApiError::invalid(
                    format!("{prefix}.points"),
                    format!("{} points exceed the limit of {}", object.points.len(), limits.max_points_per_object),
                ));
            }
            let points =
                object.points.iter().enumerate().map(|(k, p)| point(&format!("{prefix}.points[{k}]"), p)).collect::<Result<_, _>>()?;
            let bbox = object.r#box.as_ref().map(|b| bbox(&format!("{prefix}.box"), b)).transpose()?;
            Ok(ObjectPrompt { object_id: object.object_id, points, bbox, mask_input: None })
        })
        .collect()
}

/// Prompts must lie on the image: 0 <= x <= width, 0 <= y <= height (pixel edges included).
pub fn prompts_inside(field: &str, prompts: &[ObjectPrompt], width: usize, height: usize) -> Result<(), ApiError> {
    Ok(crate::model::prompt::check_inside(field, prompts, width, height)?)
}

/// Refuses options that would run more point prompts (all crops together) than `max`, before
/// any work: the crops, and so the prompts, do not depend on the image's size.
pub fn everything_within_limit(field: &str, options: &EverythingOptions, max: usize) -> Result<(), ApiError> {
    let prompts = options.prompts(1, 1);
    if prompts > max {
        return Err(ApiError::ResourceExhausted(format!(
            "{field}: {prompts} point prompts (points_per_side, crop_n_layers, crop_n_points_downscale_factor) exceed the limit of {max} (--max-everything-prompts)"
        )));
    }
    Ok(())
}

/// SegmentEverything's options, each unset one the reference's default, each set one checked
/// against its range; `field` is their path (`options`).
pub fn everything_options(field: &str, options: Option<&proto::AutoMaskOptions>) -> Result<EverythingOptions, ApiError> {
    let given = options.cloned().unwrap_or_default();
    let mut o = EverythingOptions::default();
    let count = |name: &str, value: Option<u32>, default: usize, range: std::ops::RangeInclusive<u32>| -> Result<usize, ApiError> {
        match value {
            None => Ok(default),
            Some(v) if range.contains(&v) => Ok(v as usize),
            Some(v) => {
                Err(ApiError::invalid(format!("{field}.{name}"), format!("must be between {} and {}, got {v}", range.start(), range.end())))
            }
        }
    };
    let real = |name: &str, value: Option<f64>, default: f64, low: f64, high: f64, high_open: bool| -> Result<f64, ApiError> {
        let Some(v) = value else { return Ok(default) };
        let inside = v.is_finite() && v >= low && if high_open { v < high } else { v <= high };
        if inside {
            Ok(v)
        } else {
            let upper = if high_open { format!("below {high}") } else { format!("at most {high}") };
            Err(ApiError::invalid(format!("{field}.{name}"), format!("must be a number from {low}, {upper}, got {v}")))
        }
    };
    o.points_per_side = count("points_per_side", given.points_per_side, o.points_per_side, 1..=128)?;
    o.points_per_batch = count("points_per_batch", given.points_per_batch, o.points_per_batch, 1..=256)?;
    o.pred_iou_thresh = real("pred_iou_thresh", given.pred_iou_thresh, o.pred_iou_thresh, 0.0, 1.0, false)?;
    o.stability_score_thresh = real("stability_score_thresh", given.stability_score_thresh, o.stability_score_thresh, 0.0, 1.0, false)?;
    o.stability_score_offset = real("stability_score_offset", given.stability_score_offset, o.stability_score_offset, 0.0, 100.0, false)?;
    o.box_nms_thresh = real("box_nms_thresh", given.box_nms_thresh, o.box_nms_thresh, 0.0, 1.0, false)?;
    o.crop_n_layers = count("crop_n_layers", given.crop_n_layers, o.crop_n_layers, 0..=3)?;
    o.crop_nms_thresh = real("crop_nms_thresh", given.crop_nms_thresh, o.crop_nms_thresh, 0.0, 1.0, false)?;
    o.crop_overlap_ratio = real("crop_overlap_ratio", given.crop_overlap_ratio, o.crop_overlap_ratio, 0.0, 1.0, true)?;
    o.crop_n_points_downscale_factor =
        count("crop_n_points_downscale_factor", given.crop_n_points_downscale_factor, o.crop_n_points_downscale_factor, 1..=16)?;
    o.min_mask_region_area = given.min_mask_region_area.map_or(o.min_mask_region_area, |v| v as usize);
    let deepest = crate::model::everything::crops::points_per_side(o.points_per_side, o.crop_n_layers, o.crop_n_points_downscale_factor);
    if deepest == 0 {
        return Err(ApiError::invalid(
            format!("{field}.crop_n_points_downscale_factor"),
            format!(
                "crop layer {} would have no points: {} points per side / {}^{} < 1",
                o.crop_n_layers, o.points_per_side, o.crop_n_points_downscale_factor, o.crop_n_layers
            ),
        ));
    }
    Ok(o)
}

/// A stream's `PromptUpdate`, its prompts well-formed (they are checked against the image
/// by the session, which knows the frame).
pub fn prompt_update(update: proto::PromptUpdate, limits: &PromptLimits) -> Result<PromptUpdate, ApiError> {
    let upsert = object_prompts("prompts.upsert", &update.upsert, limits)?;
    Ok(PromptUpdate { upsert, remove: update.remove, clear: update.clear, revision: update.revision })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PromptLimits = PromptLimits { max_objects: 4, max_points_per_object: 2 };

    fn positive(x: f32, y: f32) -> proto::Point {
        proto::Point { x, y, label: proto::PointLabel::Positive as i32 }
    }

    fn object(id: u32, points: Vec<proto::Point>, b: Option<proto::Box>) -> proto::ObjectPrompt {
        proto::ObjectPrompt { object_id: id, points, r#box: b }
    }

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::InvalidArgument { field, .. } => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn each_rejection_names_its_field() {
        let nan = object(1, vec![positive(f32::NAN, 1.0)], None);
        assert_eq!(field_of(object_prompts("objects", &[nan], &LIMITS).unwrap_err()), "objects[0].points[0].x");
        let unlabeled = object(1, vec![proto::Point { x: 1.0, y: 1.0, label: 0 }], None);
        assert_eq!(field_of(object_prompts("objects", &[unlabeled], &LIMITS).unwrap_err()), "objects[0].points[0].label");
        let inverted = object(1, vec![], Some(proto::Box { x0: 5.0, y0: 0.0, x1: 1.0, y1: 3.0 }));
        assert_eq!(field_of(object_prompts("objects", &[inverted], &LIMITS).unwrap_err()), "objects[0].box.x1");
        let empty = object(7, vec![], None);
        assert_eq!(field_of(object_prompts("objects", &[empty], &LIMITS).unwrap_err()), "objects[0]");
        let dup = [object(3, vec![positive(1.0, 1.0)], None), object(3, vec![positive(2.0, 2.0)], None)];
        assert_eq!(field_of(object_prompts("objects", &dup, &LIMITS).unwrap_err()), "objects[1].object_id");
        let many = object(1, vec![positive(1.0, 1.0); 3], None);
        assert_eq!(field_of(object_prompts("objects", &[many], &LIMITS).unwrap_err()), "objects[0].points");
    }

    #[test]
    fn coordinates_must_lie_on_the_image() {
        let ok = object_prompts("objects", &[object(1, vec![positive(10.0, 20.0)], None)], &LIMITS).unwrap();
        assert!(prompts_inside("objects", &ok, 10, 20).is_ok());
        assert!(prompts_inside("objects", &ok, 9, 20).is_err());
        let neg = object_prompts("objects", &[object(1, vec![positive(-0.5, 2.0)], None)], &LIMITS).unwrap();
        assert_eq!(field_of(prompts_inside("objects", &neg, 10, 10).unwrap_err()), "objects[0].points[0].x");
    }

    /// One test per rejected field of SegmentEverything's options: the status names it.
    macro_rules! rejects {
        ($($test:ident: $field:ident = $value:expr;)*) => {$(
            #[test]
            fn $test() {
                let options = proto::AutoMaskOptions { $field: Some($value), ..Default::default() };
                let error = everything_options("options", Some(&options)).unwrap_err();
                assert_eq!(field_of(error), concat!("options.", stringify!($field)));
            }
        )*};
    }

    rejects! {
        rejects_no_points_per_side: points_per_side = 0;
        rejects_too_many_points_per_side: points_per_side = 129;
        rejects_an_empty_batch: points_per_batch = 0;
        rejects_a_huge_batch: points_per_batch = 257;
        rejects_an_iou_threshold_above_one: pred_iou_thresh = 1.5;
        rejects_a_negative_iou_threshold: pred_iou_thresh = -0.1;
        rejects_a_nan_iou_threshold: pred_iou_thresh = f64::NAN;
        rejects_a_stability_threshold_above_one: stability_score_thresh = 1.01;
        rejects_a_negative_stability_offset: stability_score_offset = -1.0;
        rejects_a_box_nms_threshold_above_one: box_nms_thresh = 2.0;
        rejects_four_crop_layers: crop_n_layers = 4;
        rejects_a_crop_nms_threshold_below_zero: crop_nms_thresh = -0.5;
        rejects_a_full_crop_overlap: crop_overlap_ratio = 1.0;
        rejects_a_zero_downscale_factor: crop_n_points_downscale_factor = 0;
    }

    #[test]
    fn unset_options_are_the_references_defaults_and_zero_is_honoured() {
        let defaults = everything_options("options", None).unwrap();
        assert_eq!(defaults, EverythingOptions::default());
        let zero = proto::AutoMaskOptions {
            pred_iou_thresh: Some(0.0),
            min_mask_region_area: Some(0),
            crop_nms_thresh: Some(0.0),
            ..Default::default()
        };
        let o = everything_options("options", Some(&zero)).unwrap();
        assert_eq!((o.pred_iou_thresh, o.crop_nms_thresh, o.min_mask_region_area), (0.0, 0.0, 0));
        assert!(o.filter().pred_iou_thresh.is_none(), "a threshold of 0 turns the IoU filter off");
        let empty_layer = proto::AutoMaskOptions {
            points_per_side: Some(3),
            crop_n_layers: Some(2),
            crop_n_points_downscale_factor: Some(2),
            ..Default::default()
        };
        assert_eq!(field_of(everything_options("options", Some(&empty_layer)).unwrap_err()), "options.crop_n_points_downscale_factor");
    }
}
