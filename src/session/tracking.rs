//! Tracking (`track=true`): an object that has a mask is re-prompted on the next frame from
//! that mask — its box, plus its low-res logits as SAM's `mask_input` — until the client
//! updates or removes it. A mask that vanishes ends the track; the object is reported with
//! score and area 0 and the client's own prompt is used again on the next frame.

use std::sync::Arc;

use crate::mask::PixelBox;
use crate::model::{BoxPrompt, ImageGeometry, ObjectPrompt};
use crate::pipeline::ObjectResult;

/// What one frame's mask leaves for the next frame.
#[derive(Debug, Clone)]
pub struct Track {
    pub bbox: BoxPrompt,
    pub low_res: Arc<[f32]>,
    /// Low-res logits live in the padded 1024 frame of this geometry; another frame size
    /// invalidates them.
    pub geometry: ImageGeometry,
}

/// The track a returned mask leaves, or `None` when the mask is empty (the object is lost).
pub fn track_from(result: &ObjectResult, low_res: Arc<[f32]>, geometry: ImageGeometry) -> Option<Track> {
    if result.area == 0 {
        return None;
    }
    let b = result.bbox;
    Some(Track { bbox: BoxPrompt { x0: b.x0, y0: b.y0, x1: b.x1, y1: b.y1 }, low_res, geometry })
}

/// The prompt for the next frame of the same size: the previous box and logits, no points.
pub fn reprompt(object_id: u32, track: &Track, geometry: &ImageGeometry) -> Option<ObjectPrompt> {
    (track.geometry == *geometry).then(|| ObjectPrompt {
        object_id,
        points: Vec::new(),
        bbox: Some(track.bbox),
        mask_input: Some(track.low_res.clone()),
    })
}

/// How a lost object is reported: present, with score and area 0 and an empty mask.
pub fn mark_lost(result: &mut ObjectResult) {
    result.score = 0.0;
    result.area = 0;
    result.bbox = PixelBox::default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LOW_RES;

    fn mask(area: u64, bbox: PixelBox) -> ObjectResult {
        let encoded = crate::mask::EncodedMask { width: 1, height: 1, data: crate::mask::MaskData::Png(Vec::new()) };
        ObjectResult { object_id: 3, mask: encoded, score: 0.9, bbox, area, candidates: Vec::new(), low_res: None }
    }

    #[test]
    fn a_mask_leaves_its_box_and_logits_for_the_next_frame() {
        let geometry = ImageGeometry::new(640, 480);
        let logits: Arc<[f32]> = vec![0.5; LOW_RES * LOW_RES].into();
        let bbox = PixelBox { x0: 10.0, y0: 20.0, x1: 110.0, y1: 220.0 };
        let track = track_from(&mask(5000, bbox), logits.clone(), geometry).expect("a non-empty mask is tracked");
        let prompt = reprompt(3, &track, &geometry).expect("same frame size");
        assert_eq!(prompt.object_id, 3);
        assert!(prompt.points.is_empty());
        assert_eq!(prompt.bbox, Some(BoxPrompt { x0: 10.0, y0: 20.0, x1: 110.0, y1: 220.0 }));
        assert!(Arc::ptr_eq(prompt.mask_input.as_ref().unwrap(), &logits), "logits are carried over, not copied");
    }

    #[test]
    fn an_empty_mask_ends_the_track() {
        let logits: Arc<[f32]> = vec![-3.0; LOW_RES * LOW_RES].into();
        assert!(track_from(&mask(0, PixelBox::default()), logits, ImageGeometry::new(64, 64)).is_none());
        let mut reported = mask(0, PixelBox { x0: 1.0, y0: 1.0, x1: 2.0, y1: 2.0 });
        mark_lost(&mut reported);
        assert_eq!((reported.score, reported.area, reported.bbox), (0.0, 0, PixelBox::default()));
    }

    #[test]
    fn a_new_frame_size_invalidates_the_track() {
        let logits: Arc<[f32]> = vec![0.5; LOW_RES * LOW_RES].into();
        let bbox = PixelBox { x0: 1.0, y0: 1.0, x1: 9.0, y1: 9.0 };
        let track = track_from(&mask(40, bbox), logits, ImageGeometry::new(64, 64)).unwrap();
        assert!(reprompt(3, &track, &ImageGeometry::new(128, 64)).is_none());
    }
}
