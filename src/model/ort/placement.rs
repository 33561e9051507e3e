//! Where tensors live. "Device" memory is the execution provider's own: CUDA memory on a GPU,
//! plain host memory on the CPU provider. "Host" memory is what the device copies from and to:
//! page-locked on CUDA (copies run at full bus speed), plain memory on the CPU. One type for
//! both keeps the CPU provider on the very code path the GPU runs; on the CPU every copy below
//! is skipped because the two memories are the same.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, Session};
use ort::value::{DynTensor, PrimitiveTensorElementType, TensorElementType};

use crate::model::{ExecutionProvider, ModelError};

#[derive(Debug, Clone)]
pub struct Placement {
    device: MemoryInfo<'static>,
    host: MemoryInfo<'static>,
    /// The CUDA device id, or `None` when the graphs run on the CPU provider.
    gpu: Option<i32>,
}

impl Placement {
    fn cpu() -> Result<Self, ModelError> {
        let cpu = MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Device, MemoryType::Default)?;
        Ok(Self { device: cpu.clone(), host: cpu, gpu: None })
    }

    /// CUDA (and TensorRT, which allocates through CUDA) device `id`.
    fn cuda(id: i32) -> Result<Self, ModelError> {
        Ok(Self {
            device: MemoryInfo::new(AllocationDevice::CUDA, id, AllocatorType::Device, MemoryType::Default)?,
            host: MemoryInfo::new(AllocationDevice::CUDA_PINNED, id, AllocatorType::Device, MemoryType::CPUOutput)?,
            gpu: Some(id),
        })
    }

    /// The memory of the provider a session got.
    pub fn for_provider(provider: ExecutionProvider) -> Result<Self, ModelError> {
        match provider.gpu() {
            Some(id) => Self::cuda(id),
            None => Self::cpu(),
        }
    }

    /// Whether device memory is host memory (the CPU provider): nothing needs copying.
    pub fn device_is_host(&self) -> bool {
        self.gpu.is_none()
    }

    pub fn device_memory(&self) -> &MemoryInfo<'static> {
        &self.device
    }

    /// Allocates in device memory through `session`'s allocator: its arena, which with
    /// `--memory-limit` (and always on CUDA) is the one arena every session shares.
    pub fn device_allocator(&self, session: &Session) -> Result<Allocator, ModelError> {
        Ok(Allocator::new(session, self.device.clone())?)
    }

    /// Allocates host memory the device copies from and to: page-locked on CUDA, plain host
    /// memory (slower copies, same results) where the session offers no pinned allocator.
    pub fn host_allocator(&self, session: &Session) -> Result<Allocator, ModelError> {
        if self.device_is_host() {
            return Ok(Allocator::default());
        }
        Ok(Allocator::new(session, self.host.clone()).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no page-locked host allocator; copies to and from the GPU use pageable memory");
            Allocator::default()
        }))
    }

    /// What binding an input of this kind waits for. Nothing on the hot path waits for the
    /// whole device: a frame's copy is queued on the session's stream, the run that consumes
    /// it is ordered after it and synchronises at its end, and the caller keeps the host buffer
    /// alive until then. A constant's host tensor is dropped right after binding, and it is
    /// bound once per frame size, so waiting for it there costs nothing per frame.
    pub fn upload_wait(&self, upload: Upload) -> UploadWait {
        match (self.gpu, upload) {
            (None, _) => UploadWait::NothingCopied,
            (Some(_), Upload::Frame) => UploadWait::ConsumingRun,
            (Some(_), Upload::Constant) => UploadWait::Provider,
        }
    }

    /// Binds an input (binding host memory to a CUDA session copies it into device memory) and
    /// waits as `upload_wait` says; returns how long that took.
    pub fn bind_input(&self, binding: &mut IoBinding, name: &str, value: &DynTensor, upload: Upload) -> Result<Duration, ModelError> {
        let started = Instant::now();
        binding.bind_input(name, value)?;
        match self.upload_wait(upload) {
            UploadWait::NothingCopied | UploadWait::ConsumingRun => {}
            // cudaDeviceSynchronize: waits for every stream of the device, other threads' too.
            UploadWait::Provider => binding.synchronize_inputs()?,
        }
        Ok(started.elapsed())
    }
}

/// Kinds of input the device paths bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// A frame's pixels or images, every frame: the hot path.
    Frame,
    /// A frame size's resampling constants, once per size.
    Constant,
}

/// What a bind waits for before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadWait {
    /// Device memory is host memory: the tensor is bound as it is.
    NothingCopied,
    /// Nothing: the run that consumes the copy waits for it (on its own stream).
    ConsumingRun,
    /// The whole device (`synchronize_inputs`).
    Provider,
}

/// Host tensors kept between calls (page-locked on CUDA, so downloads into them run at full
/// speed); a tensor handed out returns to the pool when its `PooledTensor` is dropped, on
/// whichever thread that happens.
pub struct HostTensorPool {
    allocator: Allocator,
    free: Arc<FreeTensors>,
}

/// Free tensors kept per shape: enough for a few results in flight on the mask-encoding threads.
const KEPT_PER_SHAPE: usize = 4;
/// Shapes kept at once (frame sizes x object counts in use).
const KEPT_SHAPES: usize = 16;

impl HostTensorPool {
    pub fn new(allocator: Allocator) -> Self {
        Self { allocator, free: Arc::default() }
    }

    pub fn take(&self, element: TensorElementType, shape: &[i64]) -> Result<PooledTensor, ModelError> {
        let key = (element, shape.to_vec());
        let reused = self.free.lock().expect("pool lock").iter_mut().find(|(k, _)| *k == key).and_then(|(_, kept)| kept.pop());
        let tensor = match reused {
            Some(tensor) => tensor,
            None => DynTensor::new(&self.allocator, element, shape.to_vec())?,
        };
        Ok(PooledTensor { tensor: Some(tensor), key, home: Arc::downgrade(&self.free) })
    }
}

/// Free tensors by (element type, shape).
type FreeTensors = Mutex<Vec<(Key, Vec<DynTensor>)>>;
type Key = (TensorElementType, Vec<i64>);

pub struct PooledTensor {
    tensor: Option<DynTensor>,
    key: Key,
    home: Weak<FreeTensors>,
}

impl PooledTensor {
    pub fn tensor(&self) -> &DynTensor {
        self.tensor.as_ref().expect("present until dropped")
    }

    pub fn tensor_mut(&mut self) -> &mut DynTensor {
        self.tensor.as_mut().expect("present until dropped")
    }

    /// The tensor's elements, for host code (RLE, PNG, polygons).
    pub fn data<T: PrimitiveTensorElementType>(&self) -> Result<&[T], ModelError> {
        Ok(self.tensor().try_extract_tensor::<T>()?.1)
    }

    pub fn data_mut<T: PrimitiveTensorElementType>(&mut self) -> Result<&mut [T], ModelError> {
        Ok(self.tensor_mut().try_extract_tensor_mut::<T>()?.1)
    }
}

impl Drop for PooledTensor {
    fn drop(&mut self) {
        let (Some(tensor), Some(home)) = (self.tensor.take(), self.home.upgrade()) else { return };
        let mut free = home.lock().expect("pool lock");
        let index = match free.iter().position(|(k, _)| *k == self.key) {
            Some(index) => index,
            None => {
                if free.len() >= KEPT_SHAPES {
                    // Many frame sizes (Segment calls of every size): forget the oldest shape.
                    free.remove(0);
                }
                free.push((self.key.clone(), Vec::new()));
                free.len() - 1
            }
        };
        let kept = &mut free[index].1;
        if kept.len() < KEPT_PER_SHAPE {
            kept.push(tensor);
        }
    }
}
