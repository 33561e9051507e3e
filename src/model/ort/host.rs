//! Output tensors in host memory, lent to the model layer's postprocessing as `HostSlice`s:
//! the decoder's low-res logits (host data path), the postprocessing graph's masks (device
//! data path) and the pooled host buffers.

use ort::value::{DynTensor, PrimitiveTensorElementType};

use super::placement::PooledTensor;
use crate::model::{HostSlice, ModelError};

/// A tensor ONNX Runtime wrote into host memory.
pub struct HostTensor(pub DynTensor);

impl HostTensor {
    /// The tensor's elements, for host code (RLE, PNG, polygons).
    pub fn data<T: PrimitiveTensorElementType>(&self) -> Result<&[T], ModelError> {
        Ok(self.0.try_extract_tensor::<T>()?.1)
    }
}

impl<T: PrimitiveTensorElementType + Send + Sync> HostSlice<T> for HostTensor {
    fn values(&self) -> Result<&[T], ModelError> {
        self.data::<T>()
    }
}

impl<T: PrimitiveTensorElementType + Send + Sync> HostSlice<T> for PooledTensor {
    fn values(&self) -> Result<&[T], ModelError> {
        self.data::<T>()
    }
}
