//! The TinyViT image encoder behind IO bindings: its input is written in place (by the
//! preprocessing graph, or uploaded from the host), its output stays in device memory as the
//! embedding every later decode of that frame reads. With fixed batch shapes each shape has its
//! own session, so that on CUDA every convolution keeps the plan of the one shape it runs; a
//! batch is padded up to its shape and only the real images' embeddings are kept.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::Instant;

use opencv::core::{CV_8UC3, Mat, Scalar};
use ort::memory::{Allocator, MemoryInfo};
use ort::session::{IoBinding, Session};
use ort::value::{DynTensor, Shape, Tensor, TensorElementType, TensorRefMut};

use super::device_stages::{DevicePreprocess, PickEmbedding};
use super::placement::{HostTensorPool, Placement, PooledTensor, Upload};
use super::{check_shape, count_shape_run, take_output};
use crate::model::{
    EMBEDDING_CHANNELS, EMBEDDING_GRID, Embedding, EncoderInput, IMAGE_SIZE, ImageEncoder, ModelError, PreprocessedImage, RgbFrame,
    ShapeBuckets,
};
use crate::telemetry::StageTimings;
use crate::telemetry::metrics::ENCODER_BATCHES;

const INPUT: &str = "image";
const OUTPUT: &str = "image_embeddings";
const IMAGE_ELEMENTS: usize = 3 * IMAGE_SIZE * IMAGE_SIZE;

/// What the encoder's input binding points at, held until the run is over.
enum Feed {
    /// One host-preprocessed image, as its own tensor, or the preprocessing graph's output.
    Tensor(DynTensor),
    /// Host-preprocessed images copied into one pooled (page-locked on CUDA) batch.
    Pooled(PooledTensor),
    /// The shape's own kept input (fixed shapes on the device data path).
    Kept,
}

/// Opens another encoder session (one per batch shape).
pub(super) type OpenSession = Box<dyn Fn() -> Result<Session, ModelError> + Send>;

/// The encoder session of one batch shape, with its binding.
struct ShapeGraph {
    session: Session,
    binding: IoBinding,
    /// The session's device memory (the shared arena), for the inputs written in place.
    device_allocator: Allocator,
    /// With a fixed shape on the device data path: the `[shape, 3, 1024, 1024]` input the
    /// preprocessing graph writes each image into, kept, so the padding slots are set once.
    input: Option<DynTensor>,
}

impl ShapeGraph {
    fn new(session: Session, placement: &Placement) -> Result<Self, ModelError> {
        Ok(Self { binding: session.create_binding()?, device_allocator: placement.device_allocator(&session)?, session, input: None })
    }
}

pub struct OrtEncoder {
    /// By batch shape; one session for every size with exact shapes (key 0).
    graphs: HashMap<usize, ShapeGraph>,
    open: OpenSession,
    buckets: ShapeBuckets,
    placement: Placement,
    /// The preprocessing graph, with `DataPath::Device`.
    preprocess: Option<DevicePreprocess>,
    pick: PickEmbedding,
    host_inputs: HostTensorPool,
}

impl OrtEncoder {
    pub(super) fn new(
        open: OpenSession,
        buckets: ShapeBuckets,
        placement: Placement,
        preprocess: Option<DevicePreprocess>,
        pick: PickEmbedding,
    ) -> Result<Self, ModelError> {
        let session = open()?;
        let host_inputs = HostTensorPool::new(placement.host_allocator(&session)?);
        let first = ShapeGraph::new(session, &placement)?;
        let mut graphs = HashMap::new();
        graphs.insert(buckets.session_key(buckets.shape_for(1)), first);
        Ok(Self { graphs, open, buckets, placement, preprocess, pick, host_inputs })
    }

    /// Opens the session for `shape` on first use (the warm-up runs every shape); its key.
    fn open_graph(&mut self, shape: usize) -> Result<usize, ModelError> {
        let key = self.buckets.session_key(shape);
        if let Entry::Vacant(entry) = self.graphs.entry(key) {
            tracing::debug!(shape, "encoder session opened for a batch shape");
            entry.insert(ShapeGraph::new((self.open)()?, &self.placement)?);
        }
        Ok(key)
    }

    /// Binds host-preprocessed images as the encoder input (uploading them on a GPU), padded with
    /// zeros up to `shape`. One image nobody else holds is handed over as it is where device
    /// memory is the host's; otherwise the images are copied into one pooled (page-locked on
    /// CUDA) batch. The upload time is each image's: they all waited for it. The feed must stay
    /// alive until the run.
    fn bind_host_images(&mut self, mut images: Vec<Arc<PreprocessedImage>>, shape: usize) -> Result<(Vec<StageTimings>, Feed), ModelError> {
        let started = Instant::now();
        let count = images.len();
        let sole = match images.pop() {
            Some(image) if count == 1 && shape == 1 && self.placement.device_is_host() => {
                Arc::try_unwrap(image).map_err(|shared| vec![shared])
            }
            Some(image) => {
                images.push(image);
                Err(images)
            }
            None => Err(images),
        };
        let feed = match sole {
            Ok(image) => Feed::Tensor(Tensor::from_array(image.tensor)?.upcast()),
            Err(images) => Feed::Pooled(self.copy_into_batch(&images, shape)?),
        };
        let tensor = match &feed {
            Feed::Tensor(tensor) => tensor,
            Feed::Pooled(pooled) => pooled.tensor(),
            Feed::Kept => unreachable!("host images are fed from the host"),
        };
        let key = self.open_graph(shape)?;
        let graph = self.graphs.get_mut(&key).expect("opened above");
        let upload = started.elapsed() + self.placement.bind_input(&mut graph.binding, INPUT, tensor, Upload::Frame)?;
        Ok((vec![StageTimings { upload, ..Default::default() }; count], feed))
    }

    fn copy_into_batch(&mut self, images: &[Arc<PreprocessedImage>], shape: usize) -> Result<PooledTensor, ModelError> {
        let dims = [shape as i64, 3, IMAGE_SIZE as i64, IMAGE_SIZE as i64];
        let mut batch = self.host_inputs.take(TensorElementType::Float32, &dims)?;
        let mut slots = batch.data_mut::<f32>()?.chunks_exact_mut(IMAGE_ELEMENTS);
        for (slot, image) in slots.by_ref().zip(images) {
            let pixels =
                image.tensor.as_slice().ok_or_else(|| ModelError::Shape { name: "image", shape: image.tensor.shape().to_vec() })?;
            slot.copy_from_slice(pixels);
        }
        // Padding: the pooled buffer may still hold an earlier batch's images.
        slots.for_each(|slot| slot.fill(0.0));
        Ok(batch)
    }

    /// Runs the preprocessing graph for every frame straight into its slot of the encoder's
    /// input, which stays in device memory, and binds that input.
    fn preprocess_on_device(&mut self, frames: &[RgbFrame], shape: usize) -> Result<(Vec<StageTimings>, Feed), ModelError> {
        let key = self.open_graph(shape)?;
        let exact_shapes = self.buckets.largest().is_none();
        let memory = self.placement.device_memory();
        let preprocess = self.preprocess.as_mut().ok_or_else(|| ModelError::Image("this encoder takes host-preprocessed images".into()))?;
        let graph = self.graphs.get_mut(&key).expect("opened above");
        let allocator = &graph.device_allocator;
        let dims = vec![shape as i64, 3, IMAGE_SIZE as i64, IMAGE_SIZE as i64];
        let mut fresh = None;
        let input = if exact_shapes {
            // Exact shapes: from the arena, given back after the run rather than one input per
            // batch size held for good.
            fresh.insert(DynTensor::new(allocator, TensorElementType::Float32, dims)?)
        } else {
            match &mut graph.input {
                Some(input) => input,
                empty => {
                    let input = empty.insert(DynTensor::new(allocator, TensorElementType::Float32, dims)?);
                    // Every slot starts as a black image, so that padding slots hold finite values.
                    let black = RgbFrame::new(Arc::new(Mat::new_rows_cols_with_default(16, 16, CV_8UC3, Scalar::all(0.0))?))?;
                    for index in 0..shape {
                        preprocess.run(&black, slot(memory, input, index)?)?;
                    }
                    input
                }
            }
        };
        let mut times = Vec::with_capacity(frames.len());
        for (index, frame) in frames.iter().enumerate() {
            times.push(preprocess.run(frame, slot(memory, input, index)?)?);
        }
        graph.binding.bind_input(INPUT, &*input)?;
        Ok((times, fresh.map_or(Feed::Kept, Feed::Tensor)))
    }

    /// Runs the encoder of `shape` on its bound input and splits its output into one embedding
    /// per real image (`times.len()`). `_feed` is that input, kept alive until the run is over.
    fn run(&mut self, mut times: Vec<StageTimings>, shape: usize, _feed: Feed) -> Result<Vec<(Embedding, StageTimings)>, ModelError> {
        let count = times.len();
        let started = Instant::now();
        let graph = self.graphs.get_mut(&self.buckets.session_key(shape)).expect("bound before the run");
        graph.binding.bind_output_to_device(OUTPUT, self.placement.device_memory())?;
        let result =
            graph.session.run_binding(&graph.binding).map_err(ModelError::from).and_then(|mut outputs| take_output(&mut outputs, OUTPUT));
        graph.binding.clear();
        let output = result?;
        check_shape(&output, OUTPUT, &[shape, EMBEDDING_CHANNELS, EMBEDDING_GRID, EMBEDDING_GRID])?;
        let embeddings = if shape == 1 { vec![output] } else { self.pick.split(&output, count)? };
        let encoder = started.elapsed();
        metrics::counter!(ENCODER_BATCHES, "size" => count.to_string()).increment(1);
        count_shape_run("encoder", shape, count);
        for t in &mut times {
            t.encoder = encoder;
        }
        Ok(embeddings.into_iter().map(Embedding::new).zip(times).collect())
    }
}

/// Image `index`'s `[1, 3, 1024, 1024]` slot of a batch input in device memory.
fn slot<'a>(memory: &MemoryInfo<'static>, input: &'a mut DynTensor, index: usize) -> Result<TensorRefMut<'a, f32>, ModelError> {
    let images = input.shape()[0] as usize;
    if index >= images {
        return Err(ModelError::Shape { name: "image", shape: vec![index, images] });
    }
    let base = input.data_ptr_mut().cast::<f32>();
    // SAFETY: the slot lies inside `input` (index < images of IMAGE_ELEMENTS floats), whose
    // memory the view describes (same device) and which the view's lifetime borrows mutably.
    unsafe {
        Ok(TensorRefMut::<f32>::from_raw(
            memory.clone(),
            base.add(index * IMAGE_ELEMENTS).cast(),
            Shape::new([1, 3, IMAGE_SIZE as i64, IMAGE_SIZE as i64]),
        )?)
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
        let shape = self.buckets.shape_for(images.len() + frames.len());
        let (times, feed) = match (images.is_empty(), frames.is_empty()) {
            (false, true) => self.bind_host_images(images, shape)?,
            (true, false) => self.preprocess_on_device(&frames, shape)?,
            (true, true) => return Ok(Vec::new()),
            (false, false) => return Err(ModelError::Batch("a batch mixes host-preprocessed images and raw frames".into())),
        };
        self.run(times, shape, feed)
    }

    fn batch_buckets(&self) -> ShapeBuckets {
        self.buckets.clone()
    }
}
