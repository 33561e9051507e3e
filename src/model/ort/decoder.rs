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
use ort::value::{DynTensor, Tensor};

use super::candidates::DeviceCandidates;
use super::device_stages::DevicePostprocess;
use super::host::HostTensor;
use super::placement::Placement;
use super::{check_shape, take_output};
use crate::model::{
    DecodedGroup, Embedding, LOW_RES, MASK_TOKENS, MaskDecoder, MaskGroup, MaskOutput, MaskRequest, ModelError, PromptTokens,
};
use crate::telemetry::StageTimings;

/// `mask_input` and `has_mask_input` for a number of objects, kept bound between calls: they
/// are uploaded again only when a tracked object's mask changes them.
struct MaskInputs {
    mask_input: Tensor<f32>,
    has_mask: Tensor<f32>,
    /// Bumped whenever the contents change (see `OrtDecoder::bound_masks`).
    generation: u64,
}

/// A decoder graph in its session, with its binding.
struct Graph {
    session: Session,
    binding: IoBinding,
}

impl Graph {
    fn new(session: Session) -> Result<Self, ModelError> {
        let binding = session.create_binding()?;
        Ok(Self { session, binding })
    }
}

pub struct OrtDecoder {
    /// decoder.onnx: every object on its own copy of the embedding (mask inputs allowed).
    per_object: Graph,
    /// decoder_shared.onnx, where exported: objects without a mask input share the image
    /// side's prompt-independent work (same results, a quarter less work for many objects).
    shared: Option<Graph>,
    placement: Placement,
    /// The postprocessing graphs, with `DataPath::Device`: prompted objects' masks, and
    /// segment everything's candidates.
    postprocess: Option<(DevicePostprocess, DeviceCandidates)>,
    mask_inputs: HashMap<usize, MaskInputs>,
    /// Which mask inputs the binding holds now: (objects, generation).
    bound_masks: Option<(usize, u64)>,
    cpu: MemoryInfo<'static>,
}

impl OrtDecoder {
    pub(super) fn new(
        session: Session,
        shared: Option<Session>,
        placement: Placement,
        postprocess: Option<(DevicePostprocess, DeviceCandidates)>,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            per_object: Graph::new(session)?,
            shared: shared.map(Graph::new).transpose()?,
            placement,
            postprocess,
            mask_inputs: HashMap::new(),
            bound_masks: None,
            cpu: MemoryInfo::default(),
        })
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
            self.per_object.binding.bind_input("mask_input", &inputs.mask_input)?;
            self.per_object.binding.bind_input("has_mask_input", &inputs.has_mask)?;
            self.bound_masks = Some((n, inputs.generation));
        }
        Ok(())
    }
}

impl MaskDecoder for OrtDecoder {
    fn decode(&mut self, embedding: &Embedding, objects: &[&PromptTokens], request: &MaskRequest) -> Result<DecodedGroup, ModelError> {
        let started = Instant::now();
        let n = objects.len();
        let tokens = objects.first().map_or(0, |o| o.len());
        let mut coords = Array3::<f32>::zeros((n, tokens, 2));
        let mut labels = Array2::<f32>::zeros((n, tokens));
        for (i, object) in objects.iter().enumerate() {
            if object.len() != tokens {
                return Err(ModelError::Shape { name: "point_labels", shape: vec![object.len(), tokens] });
            }
            for (t, (xy, label)) in object.coords.iter().zip(&object.labels).enumerate() {
                coords[[i, t, 0]] = xy[0];
                coords[[i, t, 1]] = xy[1];
                labels[[i, t]] = *label;
            }
        }
        let shared = self.shared.is_some() && objects.iter().all(|o| o.mask_input.is_none());
        if !shared {
            self.bind_masks(objects)?;
        }
        // Low-res logits stay where the next stage runs: on the device for the postprocessing
        // graph, on the host for OpenCV.
        let low_res_memory = if self.postprocess.is_some() { self.placement.device_memory() } else { &self.cpu };
        let graph = match self.shared.as_mut() {
            Some(graph) if shared => graph,
            _ => &mut self.per_object,
        };
        graph.binding.bind_input("image_embeddings", embedding.downcast_ref::<DynTensor>()?)?;
        graph.binding.bind_input("point_coords", &Tensor::from_array(coords)?)?;
        graph.binding.bind_input("point_labels", &Tensor::from_array(labels)?)?;
        graph.binding.bind_output_to_device("iou_predictions", &self.cpu)?;
        graph.binding.bind_output_to_device("low_res_masks", low_res_memory)?;
        let (iou, low_res) = {
            let mut outputs = graph.session.run_binding(&graph.binding)?;
            (take_output(&mut outputs, "iou_predictions")?, take_output(&mut outputs, "low_res_masks")?)
        };
        check_shape(&iou, "iou_predictions", &[n, MASK_TOKENS])?;
        check_shape(&low_res, "low_res_masks", &[n, MASK_TOKENS, LOW_RES, LOW_RES])?;
        let iou = iou.try_extract_array::<f32>()?.to_owned().into_dimensionality().expect("shape checked above");
        let mut timings = StageTimings { decoder: started.elapsed(), ..Default::default() };
        let masks = match (self.postprocess.as_mut(), request.output) {
            (None, _) => MaskGroup::LowRes(Box::new(HostTensor(low_res))),
            (Some((_, candidates)), MaskOutput::Candidates(filter)) => {
                let (group, spent) = candidates.run(&low_res, &iou, &filter, &request.geometry)?;
                timings += spent;
                group
            }
            (Some((postprocess, _)), MaskOutput::Objects { .. }) => {
                let out = postprocess.masks(&low_res, request.tokens(), request.geometry, request.keeps_low_res())?;
                timings += out.timings;
                MaskGroup::Binary {
                    tokens: request.tokens(),
                    masks: Box::new(out.masks),
                    low_res: out.low_res.map(|l| Box::new(l) as Box<dyn crate::model::HostSlice<f32>>),
                }
            }
        };
        Ok(DecodedGroup { iou, masks, timings })
    }

    fn makes_masks(&self) -> bool {
        self.postprocess.is_some()
    }
}
