//! The TinyViT image encoder behind an IO binding: its input is written in place (by the
//! preprocessing graph, or uploaded from the host), its output stays in device memory as the
//! embedding every later decode of that frame reads.

use std::sync::Arc;
use std::time::Instant;

use ort::memory::Allocator;
use ort::session::{IoBinding, Session};
use ort::value::{DynTensor, Shape, Tensor, TensorElementType, TensorRefMut};

use super::device_stages::{DevicePreprocess, PickEmbedding};
use super::placement::{HostTensorPool, Placement, PooledTensor};
use super::{check_shape, take_output};
use crate::model::{
    EMBEDDING_CHANNELS, EMBEDDING_GRID, Embedding, EncoderInput, IMAGE_SIZE, ImageEncoder, ModelError, PreprocessedImage, RgbFrame,
};
use crate::telemetry::StageTimings;
use crate::telemetry::metrics::ENCODER_BATCHES;

const INPUT: &str = "image";
const OUTPUT: &str = "image_embeddings";
const IMAGE_ELEMENTS: usize = 3 * IMAGE_SIZE * IMAGE_SIZE;

/// The tensor bound as the encoder's input, held until the run is over.
enum Feed {
    /// One host-preprocessed image, as its own tensor (or the preprocessing graph's output).
    Tensor(DynTensor),
    /// Host-preprocessed images copied into one pooled (page-locked on CUDA) batch.
    Pooled(PooledTensor),
}

impl Feed {
    fn tensor(&self) -> &DynTensor {
        match self {
            Feed::Tensor(tensor) => tensor,
            Feed::Pooled(pooled) => pooled.tensor(),
        }
    }
}

pub struct OrtEncoder {
    session: Session,
    binding: IoBinding,
    placement: Placement,
    /// The preprocessing graph, with `DataPath::Device`.
    preprocess: Option<DevicePreprocess>,
    pick: PickEmbedding,
    device_allocator: Allocator,
    host_inputs: HostTensorPool,
}

impl OrtEncoder {
    pub(super) fn new(
        session: Session,
        placement: Placement,
        preprocess: Option<DevicePreprocess>,
        pick: PickEmbedding,
    ) -> Result<Self, ModelError> {
        let binding = session.create_binding()?;
        let device_allocator = placement.device_allocator(&session)?;
        let host_inputs = HostTensorPool::new(placement.host_allocator(&session)?);
        Ok(Self { session, binding, placement, preprocess, pick, device_allocator, host_inputs })
    }

    /// Binds host-preprocessed images as the encoder input (uploading them on a GPU). One image
    /// nobody else holds is handed over as it is where device memory is the host's; otherwise
    /// the images are copied into one pooled (page-locked on CUDA) batch. The upload time is
    /// each image's: they all waited for it. The feed must stay alive until the run.
    fn bind_host_images(&mut self, mut images: Vec<Arc<PreprocessedImage>>) -> Result<(Vec<StageTimings>, Feed), ModelError> {
        let started = Instant::now();
        let count = images.len();
        let sole = match images.pop() {
            Some(image) if count == 1 && self.placement.device_is_host() => Arc::try_unwrap(image).map_err(|shared| vec![shared]),
            Some(image) => {
                images.push(image);
                Err(images)
            }
            None => Err(images),
        };
        let feed = match sole {
            Ok(image) => Feed::Tensor(Tensor::from_array(image.tensor)?.upcast()),
            Err(images) => Feed::Pooled(self.copy_into_batch(&images)?),
        };
        let upload = started.elapsed() + self.placement.bind_and_upload(&mut self.binding, INPUT, feed.tensor())?;
        Ok((vec![StageTimings { upload, ..Default::default() }; count], feed))
    }

    fn copy_into_batch(&mut self, images: &[Arc<PreprocessedImage>]) -> Result<PooledTensor, ModelError> {
        let shape = [images.len() as i64, 3, IMAGE_SIZE as i64, IMAGE_SIZE as i64];
        let mut batch = self.host_inputs.take(TensorElementType::Float32, &shape)?;
        for (slot, image) in batch.data_mut::<f32>()?.chunks_exact_mut(IMAGE_ELEMENTS).zip(images) {
            let pixels =
                image.tensor.as_slice().ok_or_else(|| ModelError::Shape { name: "image", shape: image.tensor.shape().to_vec() })?;
            slot.copy_from_slice(pixels);
        }
        Ok(batch)
    }

    /// Runs the preprocessing graph for every frame straight into its slot of the encoder's
    /// input, which stays in device memory.
    fn preprocess_on_device(&mut self, frames: &[RgbFrame]) -> Result<(Vec<StageTimings>, DynTensor), ModelError> {
        let preprocess = self.preprocess.as_mut().ok_or_else(|| ModelError::Image("this encoder takes host-preprocessed images".into()))?;
        let count = frames.len();
        // From the session's arena on a GPU, so the memory goes back to it after the run
        // rather than one input per batch size being held for good.
        let shape = [count as i64, 3, IMAGE_SIZE as i64, IMAGE_SIZE as i64];
        let mut input = DynTensor::new(&self.device_allocator, TensorElementType::Float32, shape.to_vec())?;
        let mut times = Vec::with_capacity(count);
        let base = input.data_ptr_mut().cast::<f32>();
        for (index, frame) in frames.iter().enumerate() {
            // SAFETY: the slot lies inside `input` (index < count images of IMAGE_ELEMENTS),
            // whose memory the view describes (same device) and which outlives it: the view is
            // bound for one preprocessing run only and the binding is cleared before the next.
            let slot = unsafe {
                TensorRefMut::<f32>::from_raw(
                    self.placement.device_memory().clone(),
                    base.add(index * IMAGE_ELEMENTS).cast(),
                    Shape::new([1, 3, IMAGE_SIZE as i64, IMAGE_SIZE as i64]),
                )?
            };
            times.push(preprocess.run(frame, slot)?);
        }
        self.binding.bind_input(INPUT, &input)?;
        Ok((times, input))
    }

    /// Runs the encoder on the bound input (`times.len()` images) and splits its output into one
    /// embedding per image. `_feed` is that input, kept alive until the run is over.
    fn run(&mut self, mut times: Vec<StageTimings>, _feed: Feed) -> Result<Vec<(Embedding, StageTimings)>, ModelError> {
        let count = times.len();
        let started = Instant::now();
        self.binding.bind_output_to_device(OUTPUT, self.placement.device_memory())?;
        let result =
            self.session.run_binding(&self.binding).map_err(ModelError::from).and_then(|mut outputs| take_output(&mut outputs, OUTPUT));
        self.binding.clear();
        let output = result?;
        check_shape(&output, OUTPUT, &[count, EMBEDDING_CHANNELS, EMBEDDING_GRID, EMBEDDING_GRID])?;
        let embeddings = if count == 1 { vec![output] } else { self.pick.split(&output)? };
        let encoder = started.elapsed();
        metrics::counter!(ENCODER_BATCHES, "size" => count.to_string()).increment(1);
        for t in &mut times {
            t.encoder = encoder;
        }
        Ok(embeddings.into_iter().map(Embedding::new).zip(times).collect())
    }
}

impl ImageEncoder for OrtEncoder {
    fn encode(&mut self, inputs: Vec<EncoderInput>) -> Result<Vec<(Embedding, StageTimings)>, ModelError> {
        let mut images = Vec::new();
        let mut frames = Vec::new();
        for input in inputs {
            match input {
                EncoderInput::Preprocessed(image) => images.push(image),
                EncoderInput::Pixels(frame) => frames.push(frame),
            }
        }
        let (times, feed) = match (images.is_empty(), frames.is_empty()) {
            (false, true) => self.bind_host_images(images)?,
            (true, false) => {
                let (times, input) = self.preprocess_on_device(&frames)?;
                (times, Feed::Tensor(input))
            }
            (true, true) => return Ok(Vec::new()),
            (false, false) => return Err(ModelError::Batch("a batch mixes host-preprocessed images and raw frames".into())),
        };
        self.run(times, feed)
    }
}
