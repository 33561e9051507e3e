//! ONNX Runtime sessions as `RuntimeOptions` describe them: threads, graph optimisation,
//! memory arena, and the execution provider (with its fallback to the CPU).

use ort::environment::ThreadManager;
use ort::ep;
use ort::ep::ArenaExtendStrategy;
use ort::ep::cuda::ConvAlgorithmSearch;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};

use super::memory_limit::shared_device_arena;
use crate::model::ModelError;
use crate::model::options::{Device, DeviceFallback, EncoderPrecision, ExecutionProvider, GraphOptimization, RuntimeOptions};
use crate::model::priority::lower_this_thread;

fn optimization_level(level: GraphOptimization) -> GraphOptimizationLevel {
    match level {
        GraphOptimization::Disable => GraphOptimizationLevel::Disable,
        GraphOptimization::Basic => GraphOptimizationLevel::Level1,
        GraphOptimization::Extended => GraphOptimizationLevel::Level2,
        GraphOptimization::All => GraphOptimizationLevel::All,
    }
}

/// A session builder with threads, optimisation and providers applied for a `kind` of
/// graph, and the provider that will really run it, so the startup log and GetModelInfo
/// tell the truth after a fallback.
pub(super) fn session_builder(
    options: &RuntimeOptions,
    env: &ort::environment::Environment,
    kind: GraphKind,
) -> Result<(SessionBuilder, ExecutionProvider), ModelError> {
    let mut builder = SessionBuilder::new(env)?
        .with_optimization_level(optimization_level(options.graph_optimization))?
        .with_intra_threads(options.intra_threads_or_cores())?
        .with_inter_threads(options.inter_threads.max(1))?
        .with_parallel_execution(options.inter_threads > 1)?
        .with_intra_op_spinning(options.ort_spinning)?
        .with_inter_op_spinning(options.ort_spinning)?;
    if kind == GraphKind::Encoder && !options.ort_shared_pool && options.encoder_nice > 0 {
        builder = builder.with_thread_manager(LowPriorityThreads { nice: options.encoder_nice })?;
    }
    let tf32 = allows_tf32(options, kind);
    let shared_cuda_arena = shared_device_arena(true);
    let cuda = |id: i32| {
        // Since ONNX Runtime 1.20 no mode benchmarks: EXHAUSTIVE is only a slower heuristic query
        // (cuDNN's mode B, reported to fail outright on some GPUs), redone on every shape change.
        let cuda = ep::CUDA::default()
            .with_device_id(id)
            .with_tf32(tf32)
            .with_conv_algorithm_search(ConvAlgorithmSearch::Heuristic)
            .with_arena_extend_strategy(ArenaExtendStrategy::SameAsRequested);
        match options.memory_limit {
            // Without the shared arena (its registration failed), each session's own is capped.
            limit if limit > 0 && !shared_cuda_arena => cuda.with_memory_limit(limit),
            _ => cuda,
        }
    };
    let gpu = match options.device {
        Device::Cpu => None,
        Device::Cuda(id) => Some(register(&mut builder, "CUDAExecutionProvider", cuda(id)).map(|_| ExecutionProvider::Cuda(id))),
        Device::TensorRt(id) => {
            // TensorRT hands the nodes it cannot take to CUDA, then to the CPU.
            let tensorrt =
                ep::TensorRT::default().with_device_id(id).with_engine_cache(true).with_engine_cache_path(std::env::temp_dir().display());
            Some(
                register(&mut builder, "TensorrtExecutionProvider", tensorrt)
                    .and_then(|_| register(&mut builder, "CUDAExecutionProvider", cuda(id)))
                    .map(|_| ExecutionProvider::TensorRt(id)),
            )
        }
    };
    let provider = match gpu {
        None => ExecutionProvider::Cpu,
        Some(Ok(provider)) => provider,
        Some(Err(reason)) if options.device_fallback == DeviceFallback::Fail => {
            return Err(ModelError::ProviderUnavailable { provider: options.device.to_string(), reason });
        }
        Some(Err(reason)) => {
            tracing::warn!(device = %options.device, %reason, "GPU provider unavailable; falling back to CPUExecutionProvider");
            ExecutionProvider::CpuFallback
        }
    };
    builder = builder.with_execution_providers([ep::CPU::default().with_arena_allocator(options.cpu_arena).build()])?;
    if shared_device_arena(provider.gpu().is_some()) {
        // The arena registered with the environment for the provider's device memory (see
        // memory_limit.rs): every session allocates from it, so the limit caps their sum.
        builder = builder.with_env_allocators()?;
    }
    Ok((builder, provider))
}

/// Spawns the encoder session's pool threads at a lower priority (see `model::priority`); the
/// engine lowers the thread that calls the encoder itself.
struct LowPriorityThreads {
    nice: u8,
}

impl ThreadManager for LowPriorityThreads {
    type Thread = std::thread::JoinHandle<()>;

    fn create(&self, work: impl FnOnce() + Send + 'static) -> ort::Result<Self::Thread> {
        let nice = self.nice;
        std::thread::Builder::new()
            .name("encoder-pool".into())
            .spawn(move || {
                if let Err(e) = lower_this_thread(nice) {
                    tracing::warn!(error = %e, "could not lower an encoder pool thread's priority");
                }
                work();
            })
            .map_err(|e| ort::Error::new(format!("spawning an encoder pool thread: {e}")))
    }

    fn join(thread: Self::Thread) -> ort::Result<()> {
        thread.join().map_err(|_| ort::Error::new("an encoder pool thread panicked"))
    }
}

/// Which graph a session runs: decides its math on CUDA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphKind {
    /// TinyViT: float32 (TF32 with `--tf32`), or the fp16 export on tensor cores.
    Encoder,
    /// SAM's prompt encoder and mask decoder (TF32 with `--tf32`).
    Decoder,
    /// The built pre/postprocessing graphs: always exact float math (the resampling must stay
    /// bit-exact), heuristic algorithm choice.
    Stage,
}

/// Whether CUDA may use TF32 tensor cores for `kind`. With TF32 off, ONNX Runtime's cuDNN
/// frontend deselects tensor-core engines, and the fp16 encoder's convolutions then have no
/// plan at all (seen on an H200: "No execution plans support the graph", then a retry): the
/// fp16 encoder is the fast mode, not exact, so it gets tensor cores. The stage graphs never
/// do: their resampling must stay bit-exact.
fn allows_tf32(options: &RuntimeOptions, kind: GraphKind) -> bool {
    match kind {
        GraphKind::Stage => false,
        GraphKind::Encoder => options.tf32 || options.encoder_precision == EncoderPrecision::Fp16,
        GraphKind::Decoder => options.tf32,
    }
}

fn register<E: ep::ExecutionProvider>(builder: &mut SessionBuilder, name: &'static str, provider: E) -> Result<&'static str, String> {
    match E::is_available() {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!("{name} is not in this onnxruntime build (the PyPI `onnxruntime` wheel is CPU-only; use onnxruntime-gpu)"));
        }
        Err(e) => return Err(e.to_string()),
    }
    provider.register(builder).map(|()| name).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_fast_modes_get_tf32_and_the_stage_graphs_never() {
        let exact = RuntimeOptions::default();
        let fp16 = RuntimeOptions { encoder_precision: EncoderPrecision::Fp16, ..RuntimeOptions::default() };
        let tf32 = RuntimeOptions { tf32: true, ..RuntimeOptions::default() };
        for kind in [GraphKind::Encoder, GraphKind::Decoder, GraphKind::Stage] {
            assert!(!allows_tf32(&exact, kind), "{kind:?} is exact by default");
        }
        assert!(allows_tf32(&fp16, GraphKind::Encoder), "the fp16 encoder runs on tensor cores");
        assert!(!allows_tf32(&fp16, GraphKind::Decoder) && !allows_tf32(&fp16, GraphKind::Stage));
        assert!(allows_tf32(&tf32, GraphKind::Encoder) && allows_tf32(&tf32, GraphKind::Decoder));
        assert!(!allows_tf32(&tf32, GraphKind::Stage), "the resampling graphs stay bit-exact");
    }
}
