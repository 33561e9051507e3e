//! `--memory-limit` and the one device arena: every session allocates its device tensors from
//! one arena registered with the environment, so that the limit caps the sum over sessions
//! (encoder sessions per batch shape, decoder sessions per object count shape, the stage
//! graphs) rather than each of them. On CUDA the arena is registered always (one pool of GPU
//! memory instead of one per session), capped by the limit when there is one; on the CPU
//! provider only with a limit (a run that would need more fails with RESOURCE_EXHAUSTED
//! instead of growing the process without bound). ort has no safe wrapper for environment
//! allocators, hence the few raw ONNX Runtime API calls here.

use std::ffi::{CStr, CString};
use std::sync::OnceLock;

use ort::AsPointer;
use ort::environment::Environment;
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::sys::OrtStatusPtr;

use crate::model::{Device, RuntimeOptions};

/// ONNX Runtime's `kSameAsRequested`: the arena grows by what a run asks for, not in powers of
/// two, so the cap is reached only when the memory is really needed.
const EXTEND_SAME_AS_REQUESTED: usize = 1;

/// The arena registered with the environment (set once, when the environment is built).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SharedArena {
    Cpu,
    Cuda,
}

static SHARED_ARENA: OnceLock<SharedArena> = OnceLock::new();

/// Whether sessions on a GPU (`gpu`) or on the CPU provider allocate from a shared arena.
pub fn shared_device_arena(gpu: bool) -> bool {
    SHARED_ARENA.get() == Some(if gpu { &SharedArena::Cuda } else { &SharedArena::Cpu })
}

/// Registers the one arena for `options`' device with `env` (once, when the environment is
/// built); sessions opt in with `with_env_allocators`. A CUDA arena that cannot be registered
/// (no GPU library) leaves every GPU session its own arena, capped one by one; with a limit the
/// CPU's arena is registered instead, for sessions that fall back to the CPU.
pub fn register_device_arena(env: &Environment, options: &RuntimeOptions) -> Result<(), String> {
    let limit = options.memory_limit;
    let cpu = || MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Arena, MemoryType::Default);
    let registered = match options.device {
        Device::Cpu if limit == 0 => return Ok(()),
        Device::Cpu => register(env, None, cpu(), limit).map(|()| SharedArena::Cpu)?,
        Device::Cuda(id) | Device::TensorRt(id) => {
            let info = MemoryInfo::new(AllocationDevice::CUDA, id, AllocatorType::Arena, MemoryType::Default);
            match register(env, Some(id), info, limit) {
                Ok(()) => SharedArena::Cuda,
                Err(reason) => {
                    tracing::warn!(%reason, "no shared CUDA arena; each GPU session gets its own (--memory-limit then caps each one)");
                    if limit == 0 {
                        return Ok(());
                    }
                    register(env, None, cpu(), limit).map(|()| SharedArena::Cpu)?
                }
            }
        }
    };
    let _ = SHARED_ARENA.set(registered);
    Ok(())
}

fn register(env: &Environment, cuda_device: Option<i32>, info: ort::Result<MemoryInfo>, limit: usize) -> Result<(), String> {
    let api = ort::api();
    let info = info.map_err(|e| e.to_string())?;
    // max_mem 0 is ONNX Runtime's "no limit".
    let keys = [c"max_mem".as_ptr(), c"arena_extend_strategy".as_ptr()];
    let values = [limit, EXTEND_SAME_AS_REQUESTED];
    let device_id = CString::new(cuda_device.unwrap_or(0).to_string()).expect("digits");
    let provider_keys = [c"device_id".as_ptr()];
    let provider_values = [device_id.as_ptr()];
    let mut config = std::ptr::null_mut();
    // SAFETY: the key and value arrays have as many entries as passed and outlive the calls;
    // `config` is released after registration (which copies what it needs); `env` and `info`
    // are valid ONNX Runtime objects for the duration of the calls.
    unsafe {
        check((api.CreateArenaCfgV2)(keys.as_ptr(), values.as_ptr(), keys.len(), &mut config))?;
        let status = match cuda_device {
            None => (api.CreateAndRegisterAllocator)(env.ptr().cast_mut(), info.ptr(), config),
            Some(_) => (api.CreateAndRegisterAllocatorV2)(
                env.ptr().cast_mut(),
                c"CUDAExecutionProvider".as_ptr(),
                info.ptr(),
                config,
                provider_keys.as_ptr(),
                provider_values.as_ptr(),
                provider_keys.len(),
            ),
        };
        (api.ReleaseArenaCfg)(config);
        check(status)
    }
}

/// The message of a failed ONNX Runtime call (and frees the status).
///
/// # Safety
/// `status` must come from an ONNX Runtime API call and not have been released.
unsafe fn check(status: OrtStatusPtr) -> Result<(), String> {
    if status.0.is_null() {
        return Ok(());
    }
    let api = ort::api();
    // SAFETY: a non-null status carries a NUL-terminated message until it is released.
    let message = unsafe { CStr::from_ptr((api.GetErrorMessage)(status.0)) }.to_string_lossy().into_owned();
    unsafe { (api.ReleaseStatus)(status.0) };
    Err(message)
}
