//! `--memory-limit` is one budget for the whole process: every session allocates its device
//! tensors from one arena registered with ONNX Runtime's environment (on CUDA as on the CPU
//! provider), so memory one session holds is missing to the others. The environment belongs to
//! the process, so this binary holds only this test.

mod common;

use ort::value::{DynTensor, TensorElementType};
use samstream::model::ort::graphs::pick;
use samstream::model::ort::stage_session;
use samstream::model::{ModelError, RuntimeOptions};

const LIMIT: usize = 64 << 20;
const PART: i64 = (40 << 20) / 4;

#[test]
fn the_memory_limit_caps_the_sum_over_sessions() {
    let options = RuntimeOptions { ort_lib: common::ort_lib(), memory_limit: LIMIT, ..Default::default() };
    let (first, placement) = stage_session(&options, pick::build().unwrap()).expect("a session opens");
    let (second, _) = stage_session(&options, pick::build().unwrap()).expect("a second session opens");
    let first = placement.device_allocator(&first).unwrap();
    let second = placement.device_allocator(&second).unwrap();

    let held = DynTensor::new(&first, TensorElementType::Float32, vec![PART]).expect("40 MiB of the 64 MiB limit fit");
    let refused = DynTensor::new(&second, TensorElementType::Float32, vec![PART]).expect_err("40 MiB more, from another session");
    let refused = ModelError::from(refused);
    assert!(matches!(refused, ModelError::OutOfMemory(_)), "the second session's request is out of memory: {refused}");
    eprintln!("second session, while the first holds 40 MiB of 64: {refused}");
    drop(held);
    DynTensor::new(&second, TensorElementType::Float32, vec![PART]).expect("fits once the first session's tensor is freed");
}
