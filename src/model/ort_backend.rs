//! MobileSAM's two ONNX graphs in ONNX Runtime (loaded at run time from the onnxruntime wheel).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ndarray::{Array1, Array2, Array3, Array4, ArrayView4, Axis};
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use super::backend::{DecodedObjects, ImageEncoder, MaskDecoder};
use super::prompt::PromptTokens;
use super::{EMBEDDING_CHANNELS, EMBEDDING_GRID, LOW_RES, MASK_TOKENS, ModelError, PreprocessedImage};

/// Where the graphs run. Only the CPU provider is built into the onnxruntime wheel used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    #[default]
    Cpu,
}

#[derive(Debug, Clone)]
pub struct OrtOptions {
    /// `libonnxruntime.so.*` to load (the onnxruntime wheel's `capi/` file).
    pub library: PathBuf,
    pub device: Device,
    /// Threads inside one operator; 0 = one per core.
    pub intra_threads: usize,
}

/// ONNX Runtime allows one environment per process; every model shares it.
static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

fn environment(library: &Path) -> Result<&'static Environment, ModelError> {
    ENVIRONMENT
        .get_or_init(|| {
            let builder = ort::init_from(library).map_err(|e| e.to_string())?;
            builder.with_name("samstream").build().map_err(|e| e.to_string())
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

pub struct OrtDecoder(Session);

impl OrtModel {
    pub fn load(model_dir: &Path, options: &OrtOptions) -> Result<Self, ModelError> {
        let env = environment(&options.library)?;
        let threads = match options.intra_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let open = |name: &str| -> Result<Session, ModelError> {
            let path = model_dir.join(name);
            if !path.is_file() {
                return Err(ModelError::Io {
                    path: path.display().to_string(),
                    io: std::io::Error::new(std::io::ErrorKind::NotFound, "missing; run models/export.py"),
                });
            }
            Ok(Session::builder(env)?
                .with_optimization_level(GraphOptimizationLevel::All)?
                .with_intra_threads(threads)?
                .with_inter_threads(1)?
                .commit_from_file(&path)?)
        };
        let provider = match options.device {
            Device::Cpu => "CPUExecutionProvider".to_string(),
        };
        Ok(Self { encoder: OrtEncoder(open("encoder.onnx")?), decoder: OrtDecoder(open("decoder.onnx")?), execution_provider: provider })
    }
}

impl ImageEncoder for OrtEncoder {
    fn encode(&mut self, image: &PreprocessedImage) -> Result<Array4<f32>, ModelError> {
        let outputs = self.0.run(ort::inputs![TensorRef::from_array_view(image.tensor.view())?])?;
        let embedding = outputs[0].try_extract_array::<f32>()?;
        let expected = [1, EMBEDDING_CHANNELS, EMBEDDING_GRID, EMBEDDING_GRID];
        if embedding.shape() != expected {
            return Err(ModelError::Shape { name: "image_embeddings", shape: embedding.shape().to_vec() });
        }
        Ok(embedding.to_owned().into_dimensionality().expect("shape checked above"))
    }
}

impl MaskDecoder for OrtDecoder {
    fn decode_batch(&mut self, embedding: ArrayView4<'_, f32>, objects: &[&PromptTokens]) -> Result<DecodedObjects, ModelError> {
        let n = objects.len();
        let tokens = objects.first().map_or(0, |o| o.len());
        let mut coords = Array3::<f32>::zeros((n, tokens, 2));
        let mut labels = Array2::<f32>::zeros((n, tokens));
        let mut mask_input = Array4::<f32>::zeros((n, 1, LOW_RES, LOW_RES));
        let mut has_mask = Array1::<f32>::zeros(n);
        for (i, object) in objects.iter().enumerate() {
            for (t, (xy, label)) in object.coords.iter().zip(&object.labels).enumerate() {
                coords[[i, t, 0]] = xy[0];
                coords[[i, t, 1]] = xy[1];
                labels[[i, t]] = *label;
            }
            if let Some(mask) = &object.mask_input {
                mask_input.index_axis_mut(Axis(0), i).as_slice_mut().expect("contiguous").copy_from_slice(mask);
                has_mask[i] = 1.0;
            }
        }
        let outputs = self.0.run(ort::inputs![
            "image_embeddings" => TensorRef::from_array_view(embedding)?,
            "point_coords" => TensorRef::from_array_view(coords.view())?,
            "point_labels" => TensorRef::from_array_view(labels.view())?,
            "mask_input" => TensorRef::from_array_view(mask_input.view())?,
            "has_mask_input" => TensorRef::from_array_view(has_mask.view())?,
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
