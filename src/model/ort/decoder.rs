//! SAM's prompt encoder + mask decoder behind an IO binding: the embedding is read where the
//! encoder left it, only prompt tokens go up (mask inputs only when they change), and the
//! low-res logits either stay on the device for the postprocessing graph or come to the host
//! for OpenCV. With fixed object count shapes each shape has its own session (cuDNN keeps a
//! convolution's plan for its last input shape only); a call is padded up to its shape.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Instant;

use ndarray::{Array2, Array3, s};
use ort::memory::{Allocator, MemoryInfo};
use ort::session::{IoBinding, Session};
use ort::value::{DynTensor, Tensor};

use super::device_stages::DevicePostprocess;
use super::encoder::OpenSession;
use super::everything_filter::DeviceCandidates;
use super::host::HostTensor;
use super::placement::Placement;
use super::{check_shape, count_shape_run, take_output};
use crate::model::{
    DecodedGroup, Embedding, LOW_RES, MASK_TOKENS, MaskDecoder, MaskGroup, MaskOutput, MaskRequest, ModelError, PromptTokens,
    SHARED_DECODER, ShapeBuckets,
};
use crate::telemetry::StageTimings;

/// `mask_input` and `has_mask_input` for a number of objects, kept bound between calls: they
/// are uploaded again only when a tracked object's mask changes them.
struct MaskInputs {
    mask_input: Tensor<f32>,
    has_mask: Tensor<f32>,
    /// Bumped whenever the contents change (see `Graph::bound_masks`).
    generation: u64,
}

/// Which exported decoder graph a call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum GraphKind {
    /// decoder.onnx: every object on its own copy of the embedding (mask inputs allowed).
    PerObject,
    /// decoder_shared.onnx, where exported: objects without a mask input share the image side's
    /// prompt-independent work (same results, a quarter less work for many objects).
    Shared,
}

/// A decoder graph in its session (one per object count shape with fixed shapes), with its binding.
struct Graph {
    session: Session,
    binding: IoBinding,
    /// Which mask inputs the binding holds now: (objects, generation).
    bound_masks: Option<(usize, u64)>,
}

impl Graph {
    fn new(session: Session) -> Result<Self, ModelError> {
        let binding = session.create_binding()?;
        Ok(Self { session, binding, bound_masks: None })
    }
}

pub struct OrtDecoder {
    /// By graph and object count shape (0 with exact shapes: one session for every count).
    graphs: HashMap<(GraphKind, usize), Graph>,
    open_per_object: OpenSession,
    open_shared: Option<OpenSession>,
    buckets: ShapeBuckets,
    placement: Placement,
    /// The postprocessing graphs, with `DataPath::Device`: prompted objects' masks, and
    /// segment everything's candidates.
    postprocess: Option<(DevicePostprocess, DeviceCandidates)>,
    /// By object count shape; page-locked on CUDA, so their uploads run at full speed.
    mask_inputs: HashMap<usize, MaskInputs>,
    host_allocator: Allocator,
    cpu: MemoryInfo<'static>,
}

impl OrtDecoder {
    pub(super) fn new(
        open_per_object: OpenSession,
        open_shared: Option<OpenSession>,
        buckets: ShapeBuckets,
        placement: Placement,
        postprocess: Option<(DevicePostprocess, DeviceCandidates)>,
    ) -> Result<Self, ModelError> {
        let first = Graph::new(open_per_object()?)?;
        let host_allocator = placement.host_allocator(&first.session)?;
        let mut graphs = HashMap::new();
        graphs.insert((GraphKind::PerObject, buckets.session_key(buckets.shape_for(1))), first);
        Ok(Self {
            graphs,
            open_per_object,
            open_shared,
            buckets,
            placement,
            postprocess,
            mask_inputs: HashMap::new(),
            host_allocator,
            cpu: MemoryInfo::default(),
        })
    }

    /// Opens the session of `kind` for `shape` objects on first use (the warm-up runs every
    /// shape of both graphs); its key.
    fn open_graph(&mut self, kind: GraphKind, shape: usize) -> Result<(GraphKind, usize), ModelError> {
        let key = (kind, self.buckets.session_key(shape));
        if let Entry::Vacant(entry) = self.graphs.entry(key) {
            let open = match kind {
                GraphKind::PerObject => &self.open_per_object,
                GraphKind::Shared => self.open_shared.as_ref().ok_or_else(|| ModelError::Backend(format!("no {SHARED_DECODER}")))?,
            };
            tracing::debug!(?kind, shape, "decoder session opened for an object count shape");
            entry.insert(Graph::new(open()?)?);
        }
        Ok(key)
    }

    /// Fills the mask inputs for `objects`, writing only the rows that changed, and binds them
    /// to `graph` unless its binding already holds exactly these contents.
    fn bind_masks(
        mask_inputs: &mut HashMap<usize, MaskInputs>,
        allocator: &Allocator,
        graph: &mut Graph,
        objects: &[&PromptTokens],
    ) -> Result<(), ModelError> {
        let n = objects.len();
        let inputs = match mask_inputs.entry(n) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let mut mask_input = Tensor::new(allocator, [n, 1, LOW_RES, LOW_RES])?;
                let mut has_mask = Tensor::new(allocator, [n])?;
                mask_input.extract_tensor_mut().1.fill(0.0);
                has_mask.extract_tensor_mut().1.fill(0.0);
                entry.insert(MaskInputs { mask_input, has_mask, generation: 0 })
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
        if graph.bound_masks != Some((n, inputs.generation)) {
            graph.binding.bind_input("mask_input", &inputs.mask_input)?;
            graph.binding.bind_input("has_mask_input", &inputs.has_mask)?;
            graph.bound_masks = Some((n, inputs.generation));
        }
        Ok(())
    }
}

impl MaskDecoder for OrtDecoder {
    fn decode(&mut self, embedding: &Embedding, objects: &[&PromptTokens], request: &MaskRequest) -> Result<DecodedGroup, ModelError> {
        let started = Instant::now();
        let n = objects.len();
        let tokens = objects.first().map_or(0, |o| o.len());
        if let Some(odd) = objects.iter().find(|object| object.len() != tokens) {
            return Err(ModelError::Shape { name: "point_labels", shape: vec![odd.len(), tokens] });
        }
        // Padding objects repeat the first one's prompt without a mask: objects are independent,
        // so they change no real object's result.
        let shape = self.buckets.shape_for(n);
        let filler = objects.first().filter(|_| shape > n).map(|first| PromptTokens { mask_input: None, ..(*first).clone() });
        let mut padded: Vec<&PromptTokens> = objects.to_vec();
        padded.extend(filler.iter().cycle().take(shape - n));
        let mut coords = Array3::<f32>::zeros((shape, tokens, 2));
        let mut labels = Array2::<f32>::zeros((shape, tokens));
        for (i, object) in padded.iter().enumerate() {
            for (t, (xy, label)) in object.coords.iter().zip(&object.labels).enumerate() {
                coords[[i, t, 0]] = xy[0];
                coords[[i, t, 1]] = xy[1];
                labels[[i, t]] = *label;
            }
        }
        let shared = self.open_shared.is_some() && objects.iter().all(|o| o.mask_input.is_none());
        let kind = if shared { GraphKind::Shared } else { GraphKind::PerObject };
        // Low-res logits stay where the next stage runs: on the device for the postprocessing
        // graph, on the host for OpenCV.
        let key = self.open_graph(kind, shape)?;
        let low_res_memory = if self.postprocess.is_some() { self.placement.device_memory() } else { &self.cpu };
        let graph = self.graphs.get_mut(&key).expect("opened above");
        if !shared {
            Self::bind_masks(&mut self.mask_inputs, &self.host_allocator, graph, &padded)?;
        }
        graph.binding.bind_input("image_embeddings", embedding.downcast_ref::<DynTensor>()?)?;
        graph.binding.bind_input("point_coords", &Tensor::from_array(coords)?)?;
        graph.binding.bind_input("point_labels", &Tensor::from_array(labels)?)?;
        graph.binding.bind_output_to_device("iou_predictions", &self.cpu)?;
        graph.binding.bind_output_to_device("low_res_masks", low_res_memory)?;
        let (iou, low_res) = {
            let mut outputs = graph.session.run_binding(&graph.binding)?;
            (take_output(&mut outputs, "iou_predictions")?, take_output(&mut outputs, "low_res_masks")?)
        };
        count_shape_run("decoder", shape, n);
        check_shape(&iou, "iou_predictions", &[shape, MASK_TOKENS])?;
        check_shape(&low_res, "low_res_masks", &[shape, MASK_TOKENS, LOW_RES, LOW_RES])?;
        let iou: Array2<f32> =
            iou.try_extract_array::<f32>()?.slice(s![..n, ..]).to_owned().into_dimensionality().expect("shape checked above");
        let mut timings = StageTimings { decoder: started.elapsed(), ..Default::default() };
        let masks = match (self.postprocess.as_mut(), request.output) {
            // Host logits are read by row; padding rows are never asked for.
            (None, _) => MaskGroup::LowRes(Box::new(HostTensor(low_res))),
            // Candidates are picked by their IoU rows: padding rows are never picked.
            (Some((_, candidates)), MaskOutput::Candidates(filter)) => {
                let (group, spent) = candidates.run(&low_res, &iou, &filter, &request.geometry)?;
                timings += spent;
                group
            }
            (Some((postprocess, _)), MaskOutput::Objects { .. }) => {
                let out = postprocess.masks(&low_res, n, request.tokens(), request.geometry, request.keeps_low_res())?;
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

    fn object_buckets(&self) -> ShapeBuckets {
        self.buckets.clone()
    }
}
