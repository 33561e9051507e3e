//! How one request's objects are split into decoder calls. Objects with equal token counts share
//! a call: prompts of different lengths would have to be padded, which changes their masks. A
//! decoder that pads its object counts to fixed buckets takes at most its largest per call.
//! When the backend makes the masks itself (device postprocessing), a call's objects are also
//! bounded by the memory their full-size masks take, so many objects on a large image are
//! decoded in several calls rather than failing for lack of memory.

use super::backend::{MaskOutput, MaskRequest};
use super::contract::{IMAGE_SIZE, LOW_RES};
use super::prompt::PromptTokens;

/// Device memory the postprocessing of one decoder call may take.
const POSTPROCESS_BUDGET: usize = 512 << 20;

/// Objects per decoder call within `POSTPROCESS_BUDGET`: per returned token, its logits at
/// 1024x1024 and at the original size (float32), its mask (bytes) and its low-res logits.
pub fn objects_per_call(request: &MaskRequest) -> usize {
    let g = request.geometry;
    let per_token = IMAGE_SIZE * IMAGE_SIZE * 4 + g.width * g.height * 5 + LOW_RES * LOW_RES * 4;
    (POSTPROCESS_BUDGET / (per_token * request.tokens().len())).max(1)
}

/// The objects of each decoder call, as indices into `objects`: grouped by token count (shortest
/// first), in request order within a group, split where the budget or `most_per_call` says.
/// (Segment everything's candidates are few of many: a backend that makes their masks bounds
/// its own memory.)
pub fn decoder_calls(objects: &[PromptTokens], request: &MaskRequest, makes_masks: bool, most_per_call: Option<usize>) -> Vec<Vec<usize>> {
    let bounded = makes_masks && matches!(request.output, MaskOutput::Objects { .. });
    let budget = if bounded { objects_per_call(request) } else { usize::MAX };
    let per_call = budget.min(most_per_call.unwrap_or(usize::MAX)).max(1);
    let mut lengths: Vec<usize> = objects.iter().map(PromptTokens::len).collect();
    lengths.sort_unstable();
    lengths.dedup();
    let mut calls = Vec::new();
    for length in lengths {
        let indices: Vec<usize> = (0..objects.len()).filter(|&i| objects[i].len() == length).collect();
        calls.extend(indices.chunks(per_call).map(<[usize]>::to_vec));
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ImageGeometry;

    fn request(w: usize, h: usize, multimask: bool) -> MaskRequest {
        MaskRequest::objects(ImageGeometry::new(w, h), multimask, false)
    }

    #[test]
    fn large_images_with_many_candidates_are_postprocessed_in_parts() {
        // 720p, one token: the default 64 objects fit in two calls; three tokens on a 16
        // megapixel image: two objects per call (about 0.5 GB of device memory each).
        assert_eq!(objects_per_call(&request(1280, 720, false)), 59);
        assert_eq!(objects_per_call(&request(1280, 720, true)), 19);
        assert_eq!(objects_per_call(&request(4096, 4096, true)), 2);
        assert_eq!(objects_per_call(&request(16384, 16384, true)), 1, "never zero");
    }

    #[test]
    fn calls_group_equal_token_counts_and_respect_the_budget() {
        let tokens = |n: usize| PromptTokens { coords: vec![[1.0, 1.0]; n], labels: vec![1.0; n], mask_input: None };
        let objects = vec![tokens(3), tokens(2), tokens(3), tokens(2), tokens(2)];
        let host = decoder_calls(&objects, &request(640, 480, false), false, None);
        assert_eq!(host, vec![vec![1, 3, 4], vec![0, 2]]);
        let many: Vec<PromptTokens> = (0..70).map(|_| tokens(2)).collect();
        let device = decoder_calls(&many, &request(1280, 720, false), true, None);
        assert_eq!(device.iter().map(Vec::len).collect::<Vec<_>>(), vec![59, 11]);
        let bucketed = decoder_calls(&many, &request(640, 480, false), false, Some(32));
        assert_eq!(bucketed.iter().map(Vec::len).collect::<Vec<_>>(), vec![32, 32, 6]);
    }
}
