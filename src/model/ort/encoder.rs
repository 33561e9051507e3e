//! The TinyViT image encoder behind an IO binding: its input is written in place (by the
//! preprocessing graph, or uploaded from the host), its output stays in device memory as the
//! embedding every later decode of that frame reads.

use std::time::Instant;

use ort::memory::Allocator;
use ort::session::{IoBinding, Session};
use ort::value::{DynTensor, Shape, Tensor, TensorElementType, TensorRefMut};

use super::device_stages::{DevicePreprocess, PickEmbedding, PreprocessTimes, take_output};
use super::placement::{HostTensorPool, Placement, PooledTensor};
use super::{Embedding, check_shape};
use crate::model::backend::{EncodedImage, EncoderInput, ImageEncoder, RgbFrame};
use crate::model::{EMBEDDING_CHANNELS, EMBEDDING_GRID, IMAGE_SIZE, ModelError, PreprocessedImage};
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

    /// Binds host-preprocessed images as the encoder input (uploading it on a GPU): one image
    /// owned by the caller is handed over as it is where device memory is the host's, else the
    /// images are copied into one pooled (page-locked on CUDA) batch. The upload time is each
    /// image's: they all waited for it. The feed must stay alive until the run.
    fn bind_host_images(
        &mut self,
        owned: Option<PreprocessedImage>,
        borrowed: &[&PreprocessedImage],
    ) -> Result<(Vec<PreprocessTimes>, Feed), ModelError> {
        let started = Instant::now();
        let (count, feed) = match owned {
            Some(image) if self.placement.device_is_host() => (1, Feed::Tensor(Tensor::from_array(image.tensor)?.upcast())),
            Some(image) => (1, Feed::Pooled(self.copy_into_batch(&[&image])?)),
            None => (borrowed.len(), Feed::Pooled(self.copy_into_batch(borrowed)?)),
        };
        let upload = started.elapsed() + self.placement.bind_and_upload(&mut self.binding, INPUT, feed.tensor())?;
        Ok((vec![PreprocessTimes { upload, ..Default::default() }; count], feed))
    }

    fn copy_into_batch(&mut self, images: &[&PreprocessedImage]) -> Result<PooledTensor, ModelError> {
        let shape = [images.len() as i64, 3, IMAGE_SIZE as i64, IMAGE_SIZE as i64];
        let mut batch = self.host_inputs.take(TensorElementType::Float32, &shape)?;
        for (slot, image) in batch.data_mut::<f32>()?.chunks_exact_mut(IMAGE_ELEMENTS).zip(images) {
            let pixels =
                image.tensor.as_slice().ok_or_else(|| ModelError::Shape { name: "image", shape: image.tensor.shape().to_vec() })?;
            slot.copy_from_slice(pixels);
        }
        Ok(batch)
    }

    /// Uploads each frame and runs the preprocessing graph into its slot of the batch input.
    fn preprocess_on_device(&mut self, frames: &[&RgbFrame]) -> Result<(Vec<PreprocessTimes>, DynTensor), ModelError> {
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
}

impl OrtEncoder {
    fn encode_one(&mut self, input: EncoderInput) -> Result<EncodedImage, ModelError> {
        let (times, feed) = match input {
            EncoderInput::Preprocessed(image) => self.bind_host_images(Some(image), &[])?,
            EncoderInput::Pixels(frame) => {
                let (times, input) = self.preprocess_on_device(&[&frame])?;
                (times, Feed::Tensor(input))
            }
        };
        Ok(self.run(times, feed)?.pop().expect("one image in, one embedding out"))
    }

    fn encode_many(&mut self, inputs: &[EncoderInput]) -> Result<Vec<EncodedImage>, ModelError> {
        let mut preprocessed = Vec::new();
        let mut frames = Vec::new();
        for input in inputs {
            match input {
                EncoderInput::Preprocessed(image) => preprocessed.push(image),
                EncoderInput::Pixels(frame) => frames.push(frame),
            }
        }
        let (times, feed) = match (preprocessed.is_empty(), frames.is_empty()) {
            (false, true) => self.bind_host_images(None, &preprocessed)?,
            (true, false) => {
                let (times, input) = self.preprocess_on_device(&frames)?;
                (times, Feed::Tensor(input))
            }
            _ => return Err(ModelError::Batch("a batch mixes host-preprocessed images and raw frames".into())),
        };
        self.run(times, feed)
    }

    /// Runs the encoder on the bound input (`times.len()` images) and splits its output into one
    /// embedding per image. `_feed` is that input, kept alive until the run is over.
    fn run(&mut self, times: Vec<PreprocessTimes>, _feed: Feed) -> Result<Vec<EncodedImage>, ModelError> {
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
        Ok(embeddings
            .into_iter()
            .zip(times)
            .map(|(tensor, t)| EncodedImage { embedding: Embedding(tensor), upload: t.upload, preprocess: t.preprocess, encoder })
            .collect())
    }
}

impl ImageEncoder for OrtEncoder {
    fn encode_batch(&mut self, inputs: Vec<EncoderInput>) -> Vec<Result<EncodedImage, ModelError>> {
        if inputs.len() <= 1 {
            return inputs.into_iter().map(|input| self.encode_one(input)).collect();
        }
        match self.encode_many(&inputs) {
            Ok(images) => images.into_iter().map(Ok).collect(),
            // A batch that does not fit in device memory is retried image by image, so that
            // only the images that do not fit on their own fail.
            Err(ModelError::OutOfMemory(reason)) => {
                tracing::warn!(images = inputs.len(), %reason, "batch out of memory; encoding its images one by one");
                inputs.into_iter().map(|input| self.encode_one(input)).collect()
            }
            Err(e) => {
                let reason = e.to_string();
                inputs.iter().map(|_| Err(ModelError::Batch(reason.clone()))).collect()
            }
        }
    }

    fn warm_up(&mut self, max_batch: usize) -> Result<(Embedding, usize), ModelError> {
        let single = self.warm_up_input()?;
        let embedding = self.encode_one(single)?.embedding;
        for count in 2..=max_batch {
            // Each size as one batch (no fallback to single images, as encode_batch would).
            let inputs = (0..count).map(|_| self.warm_up_input()).collect::<Result<Vec<_>, _>>()?;
            match self.encode_many(&inputs) {
                Ok(_) => {}
                Err(ModelError::OutOfMemory(reason)) => {
                    tracing::warn!(batch = count, %reason, "a batch of this size does not fit in memory; batching at most {}", count - 1);
                    return Ok((embedding, count - 1));
                }
                Err(e) => return Err(e),
            }
        }
        Ok((embedding, max_batch.max(1)))
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
