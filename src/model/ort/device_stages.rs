//! The built graphs (see `graphs/`) in their sessions, with IO bindings that keep every
//! intermediate in device memory and the constants they need cached there.

use std::collections::VecDeque;
use std::time::Instant;

use ndarray::Array4;
use ort::memory::{Allocator, MemoryInfo};
use ort::session::{IoBinding, Session};
use ort::value::{AsValueMut, DynTensor, Tensor, TensorElementType, ValueTypeMarker};

use super::graphs::{pick, postprocess, preprocess};
use super::host::HostTensor;
use super::placement::{HostTensorPool, Placement, Upload};
use super::{stage_session, take_output};
use crate::model::{IMAGE_SIZE, ImageGeometry, ModelError, RgbFrame, RuntimeOptions, resample};
use crate::telemetry::StageTimings;

/// The binding of one frame size, with that size's resampling weights and padding bound: bound
/// once, which copies them into device memory through this session, kept there for the
/// size's later frames (`pads` stays a host tensor: CUDA's Pad reads it on the host).
struct FrameBinding {
    size: (usize, usize),
    binding: IoBinding,
}

/// Frame sizes whose constants stay on the device (sources keep their size; Segment calls vary).
const CACHED_FRAME_SIZES: usize = 8;

pub struct DevicePreprocess {
    session: Session,
    placement: Placement,
    staging: HostTensorPool,
    /// Most recently used first.
    frame_sizes: VecDeque<FrameBinding>,
}

impl DevicePreprocess {
    /// The preprocessing graph on the provider `options` choose, always with exact math.
    pub fn load(options: &RuntimeOptions) -> Result<Self, ModelError> {
        let (session, placement) = stage_session(options, preprocess::build()?)?;
        Self::new(session, placement)
    }

    fn new(session: Session, placement: Placement) -> Result<Self, ModelError> {
        let staging = HostTensorPool::new(placement.host_allocator(&session)?);
        Ok(Self { session, placement, staging, frame_sizes: VecDeque::new() })
    }

    /// Uploads the frame's bytes and writes its `[1, 3, 1024, 1024]` input into `output` (a
    /// device tensor, or one image's slot of a batch); returns the upload and preprocess times.
    pub fn run<T: ValueTypeMarker + ?Sized>(&mut self, frame: &RgbFrame, output: impl AsValueMut<T>) -> Result<StageTimings, ModelError> {
        let g = frame.geometry;
        // A new frame size's resampling weights are computed and moved to the device once;
        // that counts as preprocessing.
        let started = Instant::now();
        self.select_frame_size(g)?;
        let setup = started.elapsed();
        let binding = &mut self.frame_sizes[0].binding;
        // A run that failed left its output bound (a slot of a batch that may be gone).
        binding.clear_outputs();
        let started = Instant::now();
        let mut staging = self.staging.take(TensorElementType::Uint8, &[g.height as i64, g.width as i64, 3])?;
        staging.data_mut::<u8>()?.copy_from_slice(frame.bytes()?);
        let upload = started.elapsed() + self.placement.bind_input(binding, preprocess::INPUT_IMAGE, staging.tensor(), Upload::Frame)?;
        let started = Instant::now();
        binding.bind_output(preprocess::OUTPUT, output)?;
        self.session.run_binding(binding)?;
        binding.clear_outputs();
        // `staging` goes back to its pool only now: the run consumed the copy from it.
        drop(staging);
        Ok(StageTimings { upload, preprocess: setup + started.elapsed(), ..Default::default() })
    }

    /// The encoder input of `frame` as a host array, for inspection and tests.
    pub fn to_host(&mut self, frame: &RgbFrame) -> Result<(Array4<f32>, StageTimings), ModelError> {
        let mut output = Tensor::<f32>::new(&Allocator::default(), [1, 3, IMAGE_SIZE, IMAGE_SIZE])?;
        let times = self.run(frame, &mut output)?;
        let array =
            output.extract_array().to_owned().into_dimensionality().map_err(|_| ModelError::Shape { name: "tensor", shape: vec![] })?;
        Ok((array, times))
    }

    /// Puts the binding of `g`'s frame size first, creating it (and uploading its constants)
    /// if needed.
    fn select_frame_size(&mut self, g: ImageGeometry) -> Result<(), ModelError> {
        let size = (g.width, g.height);
        if let Some(i) = self.frame_sizes.iter().position(|c| c.size == size) {
            let hit = self.frame_sizes.remove(i).expect("index is in range");
            self.frame_sizes.push_front(hit);
            return Ok(());
        }
        let side = IMAGE_SIZE as i64;
        let (w, h, rw, rh) = (g.width as i64, g.height as i64, g.resized_width as i64, g.resized_height as i64);
        let horizontal = Tensor::from_array(([w, rw], resample::weights_by_input(g.width, g.resized_width)))?.upcast();
        let vertical = Tensor::from_array(([rh, h], resample::weights_by_output(g.height, g.resized_height)))?.upcast();
        let pads = Tensor::from_array(([6i64], vec![0i64, 0, 0, 0, side - rh, side - rw]))?.upcast();
        let mut binding = self.session.create_binding()?;
        for (name, constant) in
            [(preprocess::INPUT_HORIZONTAL, &horizontal), (preprocess::INPUT_VERTICAL, &vertical), (preprocess::INPUT_PADS, &pads)]
        {
            self.placement.bind_input(&mut binding, name, constant, Upload::Constant)?;
        }
        self.frame_sizes.push_front(FrameBinding { size, binding });
        self.frame_sizes.truncate(CACHED_FRAME_SIZES);
        Ok(())
    }
}

/// The postprocessing results in host memory.
pub struct PostprocessOutputs {
    /// `[N, K, H, W]` u8 masks, 255 inside.
    pub masks: HostTensor,
    /// `[N, K, 256, 256]` f32 low-res logits of the chosen tokens, when asked for.
    pub low_res: Option<HostTensor>,
    /// The graph's run, the copy of its results to the host included (postprocess).
    pub timings: StageTimings,
}

pub struct DevicePostprocess {
    session: Session,
    binding: IoBinding,
    host: MemoryInfo<'static>,
}

impl DevicePostprocess {
    /// The postprocessing graph on the provider `options` choose, always with exact math.
    pub fn load(options: &RuntimeOptions) -> Result<Self, ModelError> {
        let (session, _) = stage_session(options, postprocess::build()?)?;
        Self::new(session)
    }

    fn new(session: Session) -> Result<Self, ModelError> {
        let binding = session.create_binding()?;
        Ok(Self { session, binding, host: MemoryInfo::default() })
    }

    fn bind_inputs(&mut self, low_res: &DynTensor, objects: usize, tokens: &[usize], geometry: ImageGeometry) -> Result<(), ModelError> {
        // A run that failed left its bindings; an output still bound to a pooled buffer that is
        // back in use elsewhere would be written into by the next run.
        self.binding.clear();
        let tokens: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        let resized = [geometry.resized_height as i64, geometry.resized_width as i64];
        let original = [geometry.height as i64, geometry.width as i64];
        self.binding.bind_input(postprocess::INPUT_LOW_RES, low_res)?;
        self.binding.bind_input(postprocess::INPUT_OBJECTS, &Tensor::from_array(([1usize], vec![objects as i64]))?)?;
        self.binding.bind_input(postprocess::INPUT_TOKENS, &Tensor::from_array(([tokens.len()], tokens))?)?;
        self.binding.bind_input(postprocess::INPUT_RESIZED, &Tensor::from_array(([2usize], resized.to_vec()))?)?;
        self.binding.bind_input(postprocess::INPUT_ORIGINAL, &Tensor::from_array(([2usize], original.to_vec()))?)?;
        Ok(())
    }

    /// Masks of `tokens` for the first `objects` objects in `low_res` (`[P, 4, 256, 256]`,
    /// device memory; the rest pad a fixed shape).
    pub fn masks(
        &mut self,
        low_res: &DynTensor,
        objects: usize,
        tokens: &[usize],
        geometry: ImageGeometry,
        keep_low_res: bool,
    ) -> Result<PostprocessOutputs, ModelError> {
        let started = Instant::now();
        self.bind_inputs(low_res, objects, tokens, geometry)?;
        // Outputs ONNX Runtime allocates in host memory and copies into inside this run. A
        // buffer of our own bound as the output is not safe on CUDA: ONNX Runtime 1.31 lets
        // the kernel write into page-locked memory and then copies it onto itself, which it
        // refuses ("dst_data != src_data"), so no mask could be made on a GPU.
        self.binding.bind_output_to_device(postprocess::OUTPUT_MASKS, &self.host)?;
        if keep_low_res {
            self.binding.bind_output_to_device(postprocess::OUTPUT_LOW_RES, &self.host)?;
        }
        let run = self.session.run_binding(&self.binding).map_err(ModelError::from).and_then(|mut outputs| {
            let masks = take_output(&mut outputs, postprocess::OUTPUT_MASKS)?;
            let low_res = keep_low_res.then(|| take_output(&mut outputs, postprocess::OUTPUT_LOW_RES)).transpose()?;
            Ok((masks, low_res))
        });
        self.binding.clear();
        let (masks, low_res_out) = run?;
        let postprocess = started.elapsed();
        Ok(PostprocessOutputs {
            masks: HostTensor(masks),
            low_res: low_res_out.map(HostTensor),
            timings: StageTimings { postprocess, ..Default::default() },
        })
    }

    /// Full-resolution logits of `tokens` (`[N, K, H, W]` f32), copied to the host: what
    /// SamPredictor returns with `return_logits=True`. For parity checks and benchmarks.
    pub fn logits(&mut self, low_res: &DynTensor, tokens: &[usize], geometry: ImageGeometry) -> Result<Vec<f32>, ModelError> {
        self.bind_inputs(low_res, low_res.shape()[0] as usize, tokens, geometry)?;
        self.binding.bind_output_to_device(postprocess::OUTPUT_LOGITS, &self.host)?;
        let mut outputs = self.session.run_binding(&self.binding)?;
        let logits = take_output(&mut outputs, postprocess::OUTPUT_LOGITS)?.try_extract_tensor::<f32>()?.1.to_vec();
        drop(outputs);
        self.binding.clear();
        Ok(logits)
    }
}

/// Splits a batched encoder output into one device tensor per image.
pub struct PickEmbedding {
    session: Session,
    binding: IoBinding,
    placement: Placement,
}

impl PickEmbedding {
    pub fn load(options: &RuntimeOptions) -> Result<Self, ModelError> {
        let (session, placement) = stage_session(options, pick::build()?)?;
        Self::new(session, placement)
    }

    fn new(session: Session, placement: Placement) -> Result<Self, ModelError> {
        let binding = session.create_binding()?;
        Ok(Self { session, binding, placement })
    }

    /// The first `images` embeddings of `batch` (the rest are padding).
    pub fn split(&mut self, batch: &DynTensor, images: usize) -> Result<Vec<DynTensor>, ModelError> {
        self.binding.clear();
        self.binding.bind_input(pick::INPUT_BATCH, batch)?;
        let mut embeddings = Vec::with_capacity(images);
        for index in 0..images {
            self.binding.bind_input(pick::INPUT_INDEX, &Tensor::from_array(([1usize], vec![index as i64]))?)?;
            self.binding.bind_output_to_device(pick::OUTPUT, self.placement.device_memory())?;
            let mut outputs = self.session.run_binding(&self.binding)?;
            embeddings.push(take_output(&mut outputs, pick::OUTPUT)?);
        }
        self.binding.clear();
        Ok(embeddings)
    }
}
