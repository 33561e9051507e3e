//! `--memory-limit` on the CPU provider: one arena for every session's tensors, capped, so that
//! a run that would need more fails (RESOURCE_EXHAUSTED) instead of growing the process without
//! bound, the way CUDA's `gpu_mem_limit` makes runs fail on a GPU. ort has no safe wrapper for
//! environment allocators, hence the few raw ONNX Runtime API calls here.

use std::ffi::CStr;

use ort::AsPointer;
use ort::environment::Environment;
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::sys::OrtStatusPtr;

/// ONNX Runtime's `kSameAsRequested`: the arena grows by what a run asks for, not in powers of
/// two, so the cap is reached only when the memory is really needed.
const EXTEND_SAME_AS_REQUESTED: usize = 1;

/// Registers the capped CPU arena with `env`; sessions opt in with `with_env_allocators`.
pub fn register_cpu_arena(env: &Environment, limit: usize) -> Result<(), String> {
    let api = ort::api();
    let keys = [c"max_mem".as_ptr(), c"arena_extend_strategy".as_ptr()];
    let values = [limit, EXTEND_SAME_AS_REQUESTED];
    let info = MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Arena, MemoryType::Default).map_err(|e| e.to_string())?;
    let mut config = std::ptr::null_mut();
    // SAFETY: the key and value arrays have `keys.len()` entries and outlive the call; `config`
    // is released after registration (which copies what it needs); `env` and `info` are valid
    // ONNX Runtime objects for the duration of the calls.
    unsafe {
        check((api.CreateArenaCfgV2)(keys.as_ptr(), values.as_ptr(), keys.len(), &mut config))?;
        let status = (api.CreateAndRegisterAllocator)(env.ptr().cast_mut(), info.ptr(), config);
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
