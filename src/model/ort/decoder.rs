//! SAM's prompt encoder + mask decoder behind an IO binding: the embedding is read where the
//! encoder left it, only prompt tokens go up (mask inputs only when they change), and the
//! low-res logits either stay on the device for the postprocessing graph or come to the host
//! for OpenCV.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Instant;

use ndarray::{Array2, Array3};
use ort::memory::MemoryInfo;
use ort::session::{IoBinding, Session};
use ort::value::Tensor;

use super::decoded::{DecodeTimings, DecodedObjects, MaskGroup};
use super::device_stages::{DevicePostprocess, take_output};
use super::placement::Placement;
use super::{Embedding, check_shape};
use crate::model::backend::{MaskDecoder, MaskRequest};
use crate::model::prompt::PromptTokens;
use crate::model::{IMAGE_SIZE, ImageGeometry, LOW_RES, MASK_TOKENS, ModelError};

/// Device memory the postprocessing of one decoder call may take. Many objects on a large image
/// are decoded in several calls rather than failing for lack of memory.
const POSTPROCESS_BUDGET: usize = 512 << 20;

/// Objects per decoder call within `POSTPROCESS_BUDGET`: per returned token, its logits at
/// 1024x1024 and at the original size (float32), its mask (bytes) and its low-res logits.
fn objects_per_call(request: &MaskRequest) -> usize {
    let g = request.geometry;
    let per_token = IMAGE_SIZE * IMAGE_SIZE * 4 + g.width * g.height * 5 + LOW_RES * LOW_RES * 4;
    (POSTPROCESS_BUDGET / (per_token * request.tokens().len())).max(1)
}

/// Object counts the decoder runs once before serving on a GPU.
const WARMED_UP_OBJECT_COUNTS: [usize; 4] = [1, 2, 4, 8];

/// `mask_input` and `has_mask_input` for a number of objects, kept bound between calls: they
/// are uploaded again only when a tracked object's mask changes them.
struct MaskInputs {
    mask_input: Tensor<f32>,
    has_mask: Tensor<f32>,
    /// Bumped whenever the contents change (see `OrtDecoder::bound_masks`).
    generation: u64,
}

pub struct OrtDecoder {
    session: Session,
    binding: IoBinding,
    placement: Placement,
    /// The postprocessing graph, with `DataPath::Device`.
    postprocess: Option<DevicePostprocess>,
    mask_inputs: HashMap<usize, MaskInputs>,
    /// Which mask inputs the binding holds now: (objects, generation).
    bound_masks: Option<(usize, u64)>,
    cpu: MemoryInfo<'static>,
}

impl OrtDecoder {
    pub(super) fn new(session: Session, placement: Placement, postprocess: Option<DevicePostprocess>) -> Result<Self, ModelError> {
        let binding = session.create_binding()?;
        Ok(Self { session, binding, placement, postprocess, mask_inputs: HashMap::new(), bound_masks: None, cpu: MemoryInfo::default() })
    }

    /// Fills the mask inputs for `objects`, writing only the rows that changed, and binds them
    /// unless the binding already holds exactly these contents.
    fn bind_masks(&mut self, objects: &[&PromptTokens]) -> Result<(), ModelError> {
        let n = objects.len();
        let inputs = match self.mask_inputs.entry(n) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let allocator = ort::memory::Allocator::default();
                entry.insert(MaskInputs {
                    mask_input: Tensor::new(&allocator, [n, 1, LOW_RES, LOW_RES])?,
                    has_mask: Tensor::new(&allocator, [n])?,
                    generation: 0,
                })
            }
        };
        let mut changed = false;
        for (i, object) in objects.iter().enumerate() {
            let had_mask = inputs.has_mask.extract_tensor().1[i] != 0.0;
            let row = &mut inputs.mask_input.extract_tensor_mut().1[i * LOW_RES * LOW_RES..][..LOW_RES * LOW_RES];
            match &object.mask_input {
                Some(mask) => {
                    row.copy_from_slice(mask);
                    inputs.has_mask.extract_tensor_mut().1[i] = 1.0;
                    changed = true;
                }
                None if had_mask => {
                    row.fill(0.0);
                    inputs.has_mask.extract_tensor_mut().1[i] = 0.0;
                    changed = true;
                }
                None => {}
            }
        }
        if changed {
            inputs.generation += 1;
        }
        if self.bound_masks != Some((n, inputs.generation)) {
            self.binding.bind_input("mask_input", &inputs.mask_input)?;
            self.binding.bind_input("has_mask_input", &inputs.has_mask)?;
            self.bound_masks = Some((n, inputs.generation));
        }
        Ok(())
    }

    /// One decoder call for objects that all have the same number of prompt tokens.
    fn decode_group(
        &mut self,
        embedding: &Embedding,
        objects: &[&PromptTokens],
        request: MaskRequest,
        timings: &mut DecodeTimings,
    ) -> Result<(Array2<f32>, MaskGroup), ModelError> {
        let started = Instant::now();
        let n = objects.len();
        let tokens = objects[0].len();
        let mut coords = Array3::<f32>::zeros((n, tokens, 2));
        let mut labels = Array2::<f32>::zeros((n, tokens));
        for (i, object) in objects.iter().enumerate() {
            for (t, (xy, label)) in object.coords.iter().zip(&object.labels).enumerate() {
                coords[[i, t, 0]] = xy[0];
                coords[[i, t, 1]] = xy[1];
                labels[[i, t]] = *label;
            }
        }
        self.binding.bind_input("image_embeddings", &embedding.0)?;
        self.binding.bind_input("point_coords", &Tensor::from_array(coords)?)?;
        self.binding.bind_input("point_labels", &Tensor::from_array(labels)?)?;
        self.bind_masks(objects)?;
        self.binding.bind_output_to_device("iou_predictions", &self.cpu)?;
        // Low-res logits stay where the next stage runs: on the device for the postprocessing
        // graph, on the host for OpenCV.
        let low_res_memory = if self.postprocess.is_some() { self.placement.device_memory() } else { &self.cpu };
        self.binding.bind_output_to_device("low_res_masks", low_res_memory)?;
        let (iou, low_res) = {
            let mut outputs = self.session.run_binding(&self.binding)?;
            (take_output(&mut outputs, "iou_predictions")?, take_output(&mut outputs, "low_res_masks")?)
        };
        check_shape(&iou, "iou_predictions", &[n, MASK_TOKENS])?;
        check_shape(&low_res, "low_res_masks", &[n, MASK_TOKENS, LOW_RES, LOW_RES])?;
        let iou = iou.try_extract_array::<f32>()?.to_owned().into_dimensionality().expect("shape checked above");
        timings.decoder += started.elapsed();
        let group = match self.postprocess.as_mut() {
            None => MaskGroup::LowRes(low_res),
            Some(postprocess) => {
                let out = postprocess.masks(&low_res, request.tokens(), request.geometry, request.keep_low_res)?;
                timings.postprocess += out.postprocess;
                timings.download += out.download;
                MaskGroup::Binary { tokens: request.tokens(), masks: out.masks, low_res: out.low_res }
            }
        };
        Ok((iou, group))
    }
}

impl MaskDecoder for OrtDecoder {
    fn decode(&mut self, embedding: &Embedding, objects: &[PromptTokens], request: MaskRequest) -> Result<DecodedObjects, ModelError> {
        let mut timings = DecodeTimings::default();
        let mut lengths: Vec<usize> = objects.iter().map(PromptTokens::len).collect();
        lengths.sort_unstable();
        lengths.dedup();
        let mut decoded = DecodedObjects::with_capacity(objects.len());
        let per_call = if self.postprocess.is_some() { objects_per_call(&request) } else { usize::MAX };
        for length in lengths {
            let indices: Vec<usize> = (0..objects.len()).filter(|&i| objects[i].len() == length).collect();
            for part in indices.chunks(per_call) {
                let group: Vec<&PromptTokens> = part.iter().map(|&i| &objects[i]).collect();
                let (iou, masks) = self.decode_group(embedding, &group, request, &mut timings)?;
                decoded.push_group(part, iou, masks);
            }
        }
        decoded.timings = timings;
        Ok(decoded)
    }

    fn warm_up(&mut self, embedding: &Embedding) -> Result<(), ModelError> {
        let geometry = ImageGeometry::new(64, 48);
        let tokens = PromptTokens { coords: vec![[32.0, 24.0], [0.0, 0.0]], labels: vec![1.0, -1.0], mask_input: None };
        // On a GPU each new object count allocates and picks kernels on its first call; on the
        // CPU there is nothing to initialise per count.
        let counts: &[usize] = if self.placement.device_is_host() { &[1] } else { &WARMED_UP_OBJECT_COUNTS };
        for &count in counts {
            for multimask in [false, true] {
                let request = MaskRequest { geometry, multimask, keep_low_res: true };
                self.decode(embedding, &vec![tokens.clone(); count], request)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_images_with_many_candidates_are_postprocessed_in_parts() {
        let request = |w, h, multimask| MaskRequest { geometry: ImageGeometry::new(w, h), multimask, keep_low_res: false };
        // 720p, one token: the default 64 objects fit in two calls; three tokens on a 16
        // megapixel image: two objects per call (about 0.5 GB of device memory each).
        assert_eq!(objects_per_call(&request(1280, 720, false)), 59);
        assert_eq!(objects_per_call(&request(1280, 720, true)), 19);
        assert_eq!(objects_per_call(&request(4096, 4096, true)), 2);
        assert_eq!(objects_per_call(&request(16384, 16384, true)), 1, "never zero");
    }
}
