//! A deterministic backend without ONNX Runtime, for unit tests of the layers above the model:
//! an embedding is the number of the encoder run that made it, a mask is a rectangle whose
//! width follows the object's first point, and a shared `FakeControl` scripts the backend
//! (runs to block on, batch sizes that run out of memory) and records what it was asked.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use ndarray::Array2;

use super::options::{ExecutionProvider, Precision};
use super::{
    BackendInfo, DataPath, DecodedGroup, Embedding, EncoderInput, ImageEncoder, LoadedModel, MASK_TOKENS, MaskDecoder, MaskGroup,
    MaskRequest, ModelError, PromptTokens,
};
use crate::telemetry::StageTimings;

#[derive(Default)]
pub struct FakeControl {
    /// Sizes of the encoder's runs, in order (failed ones included).
    pub batches: Mutex<Vec<usize>>,
    /// Object counts of the decoder's calls, in order.
    pub decodes: Mutex<Vec<usize>>,
    /// Encoder runs of more images than this fail as out of memory.
    pub oom_above: AtomicUsize,
    /// While set, every decoder call fails (a backend whose graphs break on the device).
    pub fail_decodes: AtomicBool,
    /// What the loaded model asks of the encoder thread's priority.
    pub encoder_nice: AtomicU8,
    /// The nice value of the thread of each encoder and decoder run, in order.
    pub run_nice: Mutex<Vec<(&'static str, i32)>>,
    /// While set, each encoder run reports on `entered` and then waits for one `release`.
    gate: Mutex<Option<Gate>>,
    encoder_runs: AtomicUsize,
}

struct Gate {
    entered: mpsc::Sender<usize>,
    release: mpsc::Receiver<()>,
}

/// The test's end of a gate: see a run start, then let it finish.
pub struct GateHandle {
    pub entered: mpsc::Receiver<usize>,
    pub release: mpsc::Sender<()>,
}

impl FakeControl {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { oom_above: AtomicUsize::new(usize::MAX), ..Default::default() })
    }

    /// A model whose halves report to this control; `info` says it runs on the CPU provider
    /// with the host data path.
    pub fn load(self: &Arc<Self>) -> Result<LoadedModel, ModelError> {
        self.load_as(DataPath::Host)
    }

    /// The same, saying it runs on `data_path`.
    pub fn load_as(self: &Arc<Self>, data_path: DataPath) -> Result<LoadedModel, ModelError> {
        Ok(LoadedModel {
            encoder: Box::new(FakeEncoder { control: self.clone() }),
            decoder: Box::new(FakeDecoder { control: self.clone() }),
            info: BackendInfo { provider: ExecutionProvider::Cpu, data_path, precision: Precision::Fp32 },
            encoder_nice: self.encoder_nice.load(Ordering::SeqCst),
        })
    }

    /// From now on every encoder run blocks until the test releases it.
    pub fn gate(&self) -> GateHandle {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        *self.gate.lock().expect("gate lock") = Some(Gate { entered: entered_tx, release: release_rx });
        GateHandle { entered, release }
    }

    pub fn take_batches(&self) -> Vec<usize> {
        std::mem::take(&mut self.batches.lock().expect("batches lock"))
    }

    pub fn take_decodes(&self) -> Vec<usize> {
        std::mem::take(&mut self.decodes.lock().expect("decodes lock"))
    }

    fn record_nice(&self, half: &'static str) {
        let nice = super::priority::nice_of_this_thread().expect("getpriority");
        self.run_nice.lock().expect("run_nice lock").push((half, nice));
    }
}

struct FakeEncoder {
    control: Arc<FakeControl>,
}

impl ImageEncoder for FakeEncoder {
    fn encode(&mut self, inputs: Vec<EncoderInput>) -> Result<Vec<(Embedding, StageTimings)>, ModelError> {
        let run = self.control.encoder_runs.fetch_add(1, Ordering::SeqCst) + 1;
        self.control.record_nice("encoder");
        if let Some(gate) = self.control.gate.lock().expect("gate lock").as_ref() {
            let _ = gate.entered.send(inputs.len());
            let _ = gate.release.recv();
        }
        self.control.batches.lock().expect("batches lock").push(inputs.len());
        if inputs.len() > self.control.oom_above.load(Ordering::SeqCst) {
            return Err(ModelError::OutOfMemory(format!("fake: a batch of {} does not fit", inputs.len())));
        }
        let timings = StageTimings { encoder: std::time::Duration::from_millis(1), ..Default::default() };
        Ok(inputs.iter().map(|_| (Embedding::new(run), timings)).collect())
    }
}

struct FakeDecoder {
    control: Arc<FakeControl>,
}

impl MaskDecoder for FakeDecoder {
    fn decode(&mut self, embedding: &Embedding, objects: &[&PromptTokens], request: &MaskRequest) -> Result<DecodedGroup, ModelError> {
        let run = *embedding.downcast_ref::<usize>()?;
        self.control.record_nice("decoder");
        self.control.decodes.lock().expect("decodes lock").push(objects.len());
        if self.control.fail_decodes.load(Ordering::SeqCst) {
            return Err(ModelError::Backend("fake: the decoder's graph failed".into()));
        }
        let g = request.geometry;
        let tokens = request.tokens();
        let plane = g.width * g.height;
        let mut iou = Array2::zeros((objects.len(), MASK_TOKENS));
        let mut masks = vec![0u8; objects.len() * tokens.len() * plane];
        for (i, object) in objects.iter().enumerate() {
            for t in 0..MASK_TOKENS {
                iou[[i, t]] = run as f32 + object.len() as f32 / 10.0 + t as f32 / 100.0;
            }
            // The mask covers the columns left of the first point, every row.
            let width = (object.coords[0][0] as usize).min(g.width);
            for k in 0..tokens.len() {
                let mask = &mut masks[(i * tokens.len() + k) * plane..][..plane];
                for row in mask.chunks_exact_mut(g.width) {
                    row[..width].fill(255);
                }
            }
        }
        let timings = StageTimings { decoder: std::time::Duration::from_millis(1), ..Default::default() };
        Ok(DecodedGroup { iou, masks: MaskGroup::Binary { tokens, masks: Box::new(masks), low_res: None }, timings })
    }

    fn makes_masks(&self) -> bool {
        true
    }
}
