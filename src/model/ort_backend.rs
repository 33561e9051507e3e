//! MobileSAM's two ONNX graphs in ONNX Runtime (loaded at run time from the onnxruntime wheel).

use std::path::Path;
use std::sync::OnceLock;

use ndarray::{Array1, Array2, Array3, Array4, ArrayView4, Axis};
use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;

use super::backend::{DecodedObjects, ImageEncoder, MaskDecoder};
use super::prompt::PromptTokens;
use super::ort_options::OrtOptions;
use super::{EMBEDDING_CHANNELS, EMBEDDING_GRID, LOW_RES, MASK_TOKENS, ModelError, PreprocessedImage};

/// ONNX Runtime allows one environment per process; every model shares it, and the first
/// model's options decide its thread pool.
static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

fn environment(options: &OrtOptions) -> Result<&'static Environment, ModelError> {
    let library = &options.library;
    ENVIRONMENT
        .get_or_init(|| {
            let mut builder = ort::init_from(library).map_err(|e| e.to_string())?.with_name("samstream");
            if options.shared_thread_pool {
                // One pool for both graphs: the encoder and decoder threads take turns on the
                // same cores instead of two pools (one of them spinning) fighting over them.
                let pool = ort::environment::GlobalThreadPoolOptions::default()
                    .with_intra_threads(options.intra_threads_or_cores())
                    .and_then(|p| p.with_inter_threads(options.inter_threads.max(1)))
                    .and_then(|p| p.with_spin_control(options.spinning))
                    .map_err(|e| e.to_string())?;
                builder = builder.with_global_thread_pool(pool);
            }
            builder.build().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|reason| ModelError::Runtime { path: library.display().to_string(), reason: reason.clone() })
}

/// Both graphs; the engine moves each half to its own thread.
pub struct OrtModel {
    pub encoder: OrtEncoder,
    pub decoder: OrtDecoder,
    /// The execution provider that really runs the graphs.
    pub execution_provider: String,
}

pub struct OrtEncoder(Session);

/// The decoder with its prompt-input buffers kept between calls: the 256x256 mask inputs are
/// the largest of them and stay zero unless a tracked object fills them.
pub struct OrtDecoder {
    session: Session,
    mask_input: Array4<f32>,
    has_mask: Array1<f32>,
}

impl OrtDecoder {
    fn new(session: Session) -> Self {
        Self { session, mask_input: Array4::zeros((0, 1, LOW_RES, LOW_RES)), has_mask: Array1::zeros(0) }
    }

    /// Sizes the mask buffers for `n` objects and fills them from the prompts, writing only the
    /// rows that changed since the last call.
    fn fill_masks(&mut self, objects: &[&PromptTokens]) {
        let n = objects.len();
        if self.mask_input.shape()[0] != n {
            self.mask_input = Array4::zeros((n, 1, LOW_RES, LOW_RES));
            self.has_mask = Array1::zeros(n);
        }
        for (i, object) in objects.iter().enumerate() {
            let mut row = self.mask_input.index_axis_mut(Axis(0), i);
            let row = row.as_slice_mut().expect("contiguous");
            match &object.mask_input {
                Some(mask) => {
                    row.copy_from_slice(mask);
                    self.has_mask[i] = 1.0;
                }
                None if self.has_mask[i] != 0.0 => {
                    row.fill(0.0);
                    self.has_mask[i] = 0.0;
                }
                None => {}
            }
        }
    }
}

impl OrtModel {
    pub fn load(model_dir: &Path, options: &OrtOptions) -> Result<Self, ModelError> {
        let env = environment(options)?;
        let mut provider = String::new();
        let mut open = |name: &str| -> Result<Session, ModelError> {
            let path = model_dir.join(name);
            if !path.is_file() {
                let hint = if name == "encoder_int8.onnx" { "missing; export with models/export.py --int8" } else { "missing; run models/export.py" };
                return Err(ModelError::Io { path: path.display().to_string(), io: std::io::Error::new(std::io::ErrorKind::NotFound, hint) });
            }
            let (mut builder, used) = options.session_builder(env)?;
            provider = used;
            Ok(builder.commit_from_file(&path)?)
        };
        let encoder = OrtEncoder(open(options.encoder_precision.file_name())?);
        let decoder = OrtDecoder::new(open("decoder.onnx")?);
        tracing::info!(
            %provider,
            encoder = options.encoder_precision.file_name(),
            intra_threads = options.intra_threads_or_cores(),
            inter_threads = options.inter_threads,
            optimization = ?options.optimization,
            cpu_arena = options.cpu_arena,
            spinning = options.spinning,
            shared_thread_pool = options.shared_thread_pool,
            "onnxruntime sessions ready"
        );
        Ok(Self { encoder, decoder, execution_provider: provider })
    }
}

impl OrtEncoder {
    /// Runs `[B, 3, 1024, 1024]` and returns `[B, 256, 64, 64]`.
    fn run(&mut self, input: ndarray::ArrayView4<'_, f32>) -> Result<Array4<f32>, ModelError> {
        let batch = input.shape()[0];
        let outputs = self.0.run(ort::inputs![TensorRef::from_array_view(input)?])?;
        let embedding = outputs[0].try_extract_array::<f32>()?;
        if embedding.shape() != [batch, EMBEDDING_CHANNELS, EMBEDDING_GRID, EMBEDDING_GRID] {
            return Err(ModelError::Shape { name: "image_embeddings", shape: embedding.shape().to_vec() });
        }
        Ok(embedding.to_owned().into_dimensionality().expect("shape checked above"))
    }
}

impl ImageEncoder for OrtEncoder {
    fn encode(&mut self, image: &PreprocessedImage) -> Result<Array4<f32>, ModelError> {
        self.run(image.tensor.view())
    }

    fn encode_batch(&mut self, images: &[&PreprocessedImage]) -> Result<Vec<Array4<f32>>, ModelError> {
        if images.len() == 1 {
            return Ok(vec![self.encode(images[0])?]);
        }
        let views: Vec<_> = images.iter().map(|image| image.tensor.view()).collect();
        let stacked = ndarray::concatenate(Axis(0), &views).map_err(|e| ModelError::Image(format!("stacking a batch: {e}")))?;
        let embeddings = self.run(stacked.view())?;
        Ok(embeddings.outer_iter().map(|one| one.insert_axis(Axis(0)).to_owned()).collect())
    }
}

impl MaskDecoder for OrtDecoder {
    fn decode_batch(&mut self, embedding: ArrayView4<'_, f32>, objects: &[&PromptTokens]) -> Result<DecodedObjects, ModelError> {
        let n = objects.len();
        let tokens = objects.first().map_or(0, |o| o.len());
        let mut coords = Array3::<f32>::zeros((n, tokens, 2));
        let mut labels = Array2::<f32>::zeros((n, tokens));
        for (i, object) in objects.iter().enumerate() {
            for (t, (xy, label)) in object.coords.iter().zip(&object.labels).enumerate() {
                coords[[i, t, 0]] = xy[0];
                coords[[i, t, 1]] = xy[1];
                labels[[i, t]] = *label;
            }
        }
        self.fill_masks(objects);
        let outputs = self.session.run(ort::inputs![
            "image_embeddings" => TensorRef::from_array_view(embedding)?,
            "point_coords" => TensorRef::from_array_view(coords.view())?,
            "point_labels" => TensorRef::from_array_view(labels.view())?,
            "mask_input" => TensorRef::from_array_view(self.mask_input.view())?,
            "has_mask_input" => TensorRef::from_array_view(self.has_mask.view())?,
        ])?;
        let iou = outputs["iou_predictions"].try_extract_array::<f32>()?;
        let low_res = outputs["low_res_masks"].try_extract_array::<f32>()?;
        if iou.shape() != [n, MASK_TOKENS] {
            return Err(ModelError::Shape { name: "iou_predictions", shape: iou.shape().to_vec() });
        }
        if low_res.shape() != [n, MASK_TOKENS, LOW_RES, LOW_RES] {
            return Err(ModelError::Shape { name: "low_res_masks", shape: low_res.shape().to_vec() });
        }
        Ok(DecodedObjects {
            iou: iou.to_owned().into_dimensionality().expect("shape checked above"),
            low_res: low_res.to_owned().into_dimensionality().expect("shape checked above"),
        })
    }
}
