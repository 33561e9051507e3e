//! The TinyViT image encoder behind an IO binding: its input is written in place (by the
//! preprocessing graph, or uploaded from the host), its output stays in device memory as the
//! embedding every later decode of that frame reads.

use std::collections::HashMap;
use std::time::Instant;

use ort::memory::Allocator;
use ort::session::{IoBinding, Session};
use ort::value::{DynTensor, Shape, Tensor, TensorElementType, TensorRefMut};

use super::device_stages::{DevicePreprocess, PickEmbedding, PreprocessTimes, take_output};
use super::placement::{HostTensorPool, Placement, PooledTensor};
use super::{Embedding, check_shape};
use crate::model::backend::{EncodedImage, EncoderInput, ImageEncoder, RgbFrame};
use crate::model::{EMBEDDING_CHANNELS, EMBEDDING_GRID, IMAGE_SIZE, ModelError, PreprocessedImage};

const INPUT: &str = "image";
const OUTPUT: &str = "image_embeddings";
const IMAGE_ELEMENTS: usize = 3 * IMAGE_SIZE * IMAGE_SIZE;

/// Host-preprocessed input bound to the encoder, held until the run is over.
enum HostFeed {
    /// One image, as its own tensor.
    Array(DynTensor),
    /// Images copied into one pooled (page-locked on CUDA) batch.
    Pooled(PooledTensor),
}

impl HostFeed {
    fn tensor(&self) -> &DynTensor {
        match self {
            HostFeed::Array(tensor) => tensor,
            HostFeed::Pooled(pooled) => pooled.tensor(),
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
    /// `[B, 3, 1024, 1024]` inputs in device memory, one per batch size seen, written in place.
    device_inputs: HashMap<usize, DynTensor>,
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
        Ok(Self { session, binding, placement, preprocess, pick, device_allocator, device_inputs: HashMap::new(), host_inputs })
    }

    /// Fills the encoder input from the host-preprocessed images and binds it (uploading it on a
    /// GPU). The upload time is each image's: they all waited for it. Returns the input too,
    /// which must stay alive until the run.
    fn bind_preprocessed(&mut self, images: Vec<PreprocessedImage>) -> Result<(Vec<PreprocessTimes>, Option<HostFeed>), ModelError> {
        let count = images.len();
        let started = Instant::now();
        let feed = if count == 1 && self.placement.device_is_host() {
            // Already in the right memory: hand the array over without a copy.
            HostFeed::Array(Tensor::from_array(images.into_iter().next().expect("one image").tensor)?.upcast())
        } else {
            let shape = [count as i64, 3, IMAGE_SIZE as i64, IMAGE_SIZE as i64];
            let mut batch = self.host_inputs.take(TensorElementType::Float32, &shape)?;
            for (slot, image) in batch.data_mut::<f32>()?.chunks_exact_mut(IMAGE_ELEMENTS).zip(&images) {
                let pixels =
                    image.tensor.as_slice().ok_or_else(|| ModelError::Shape { name: "image", shape: image.tensor.shape().to_vec() })?;
                slot.copy_from_slice(pixels);
            }
            HostFeed::Pooled(batch)
        };
        let upload = started.elapsed() + self.placement.bind_and_upload(&mut self.binding, INPUT, feed.tensor())?;
        Ok((vec![PreprocessTimes { upload, ..Default::default() }; count], Some(feed)))
    }

    /// Uploads each frame and runs the preprocessing graph into its slot of the batch input.
    fn preprocess_on_device(&mut self, frames: &[RgbFrame]) -> Result<Vec<PreprocessTimes>, ModelError> {
        let preprocess = self.preprocess.as_mut().ok_or_else(|| ModelError::Image("this encoder takes host-preprocessed images".into()))?;
        let count = frames.len();
        if !self.device_inputs.contains_key(&count) {
            let shape = [count as i64, 3, IMAGE_SIZE as i64, IMAGE_SIZE as i64];
            let tensor = DynTensor::new(&self.device_allocator, TensorElementType::Float32, shape.to_vec())?;
            self.device_inputs.insert(count, tensor);
        }
        let input = self.device_inputs.get_mut(&count).expect("inserted above");
        let mut times = Vec::with_capacity(count);
        let base = input.data_ptr_mut().cast::<f32>();
        for (index, frame) in frames.iter().enumerate() {
            // SAFETY: the slot lies inside `input` (index < count images of IMAGE_ELEMENTS),
            // whose memory the view describes (same device) and which outlives it: the view
            // is bound for this one run and unbound before `run` returns.
            let slot = unsafe {
                TensorRefMut::<f32>::from_raw(
                    self.placement.device_memory().clone(),
                    base.add(index * IMAGE_ELEMENTS).cast(),
                    Shape::new([1, 3, IMAGE_SIZE as i64, IMAGE_SIZE as i64]),
                )?
            };
            times.push(preprocess.run(frame, slot)?);
        }
        self.binding.bind_input(INPUT, input)?;
        Ok(times)
    }
}

impl ImageEncoder for OrtEncoder {
    fn encode_batch(&mut self, inputs: Vec<EncoderInput>) -> Result<Vec<EncodedImage>, ModelError> {
        let count = inputs.len();
        let mut preprocessed = Vec::new();
        let mut frames = Vec::new();
        for input in inputs {
            match input {
                EncoderInput::Preprocessed(image) => preprocessed.push(image),
                EncoderInput::Pixels(frame) => frames.push(frame),
            }
        }
        let (times, _feed) = match (preprocessed.is_empty(), frames.is_empty()) {
            (true, true) => return Ok(Vec::new()),
            (false, true) => self.bind_preprocessed(preprocessed)?,
            (true, false) => (self.preprocess_on_device(&frames)?, None),
            (false, false) => return Err(ModelError::Batch("a batch mixes host-preprocessed images and raw frames".into())),
        };
        let started = Instant::now();
        self.binding.bind_output_to_device(OUTPUT, self.placement.device_memory())?;
        let result =
            self.session.run_binding(&self.binding).map_err(ModelError::from).and_then(|mut outputs| take_output(&mut outputs, OUTPUT));
        self.binding.clear();
        let output = result?;
        check_shape(&output, OUTPUT, &[count, EMBEDDING_CHANNELS, EMBEDDING_GRID, EMBEDDING_GRID])?;
        let embeddings = if count == 1 { vec![output] } else { self.pick.split(&output)? };
        let encoder = started.elapsed();
        Ok(embeddings
            .into_iter()
            .zip(times)
            .map(|(tensor, t)| EncodedImage { embedding: Embedding(tensor), upload: t.upload, preprocess: t.preprocess, encoder })
            .collect())
    }

    fn warm_up(&mut self, max_batch: usize) -> Result<Embedding, ModelError> {
        let mut last = None;
        for count in 1..=max_batch.max(1) {
            let inputs = (0..count).map(|_| self.warm_up_input()).collect::<Result<Vec<_>, _>>()?;
            last = self.encode_batch(inputs)?.pop();
        }
        Ok(last.expect("at least batch size 1 ran").embedding)
    }
}

impl OrtEncoder {
    /// A small grey frame of the kind this encoder takes.
    fn warm_up_input(&self) -> Result<EncoderInput, ModelError> {
        let grey = opencv::core::Mat::new_rows_cols_with_default(48, 64, opencv::core::CV_8UC3, opencv::core::Scalar::all(128.0))?;
        match self.preprocess {
            Some(_) => Ok(EncoderInput::Pixels(RgbFrame::new(std::sync::Arc::new(grey))?)),
            None => Ok(EncoderInput::Preprocessed(crate::model::Preprocessor::default().run(&grey)?)),
        }
    }
}
