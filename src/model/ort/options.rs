//! ONNX Runtime sessions as `RuntimeOptions` describe them: threads, graph optimisation,
//! memory arena, and the execution provider (with its fallback to the CPU).

use ort::ep;
use ort::ep::ArenaExtendStrategy;
use ort::ep::cuda::ConvAlgorithmSearch;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};

use super::memory_limit::shared_device_arena;
use crate::model::ModelError;
use crate::model::options::{Device, DeviceFallback, ExecutionProvider, GraphOptimization, RuntimeOptions};

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
    let tf32 = options.tf32 && kind != GraphKind::Stage;
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

/// Which graph a session runs: decides its math on CUDA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphKind {
    /// TinyViT: float32 (TF32 with `--tf32`).
    Encoder,
    /// SAM's prompt encoder and mask decoder (TF32 with `--tf32`).
    Decoder,
    /// The built pre/postprocessing graphs: always exact float math (the resampling must stay
    /// bit-exact), heuristic algorithm choice.
    Stage,
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
