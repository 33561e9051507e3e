//! The engine's options: how much may queue, and how many images one encoder call may take.

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::model::BackendInfo;
use crate::model::options::GPU_ENCODER_BATCH;

#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct EngineOptions {
    /// Jobs that may wait for the inference thread before requests get RESOURCE_EXHAUSTED.
    #[arg(long, env = "SAMSTREAM_QUEUE_CAPACITY", default_value_t = 16)]
    pub queue_capacity: usize,

    /// Most queued images (from different streams or calls) the encoder runs as one batch,
    /// padded up to the next of --encoder-batch-buckets; every batch shape up to it is warmed
    /// up before health says SERVING. 0 = auto: the largest automatic bucket (8) on a GPU, 1 on
    /// the CPU provider, where a batch costs as much as its images one by one.
    #[arg(long, env = "SAMSTREAM_ENCODER_MAX_BATCH", default_value_t = 0)]
    pub encoder_max_batch: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        crate::flags::clap_defaults()
    }
}

impl EngineOptions {
    /// The most images per encoder call on this backend: batching pays on a GPU (one launch for
    /// several frames), not on a CPU, where a batch costs as much as its images one by one.
    pub fn max_batch(&self, backend: &BackendInfo) -> usize {
        match self.encoder_max_batch {
            0 if backend.on_gpu() => GPU_ENCODER_BATCH,
            0 => 1,
            n => n,
        }
    }
}
