//! The small graphs around MobileSAM's two exported ones, built in code with ONNX Runtime's
//! model editor: preprocessing (Pillow-exact resize, normalise, pad), postprocessing (upscale,
//! crop, resize, threshold) and picking one image's embedding out of a batch. They run on the
//! same execution provider as the model, so on a GPU a frame goes up as bytes, its tensors stay
//! in device memory and only bit masks come back; on the CPU provider the very same graphs run,
//! which is how the tests cover them.

pub mod everything_filter;
pub mod pick;
pub mod postprocess;
pub mod preprocess;

use ort::editor::{Graph, Model, Node, ONNX_DOMAIN, Opset};
use ort::memory::Allocator;
use ort::operator::Attribute;
use ort::value::{Outlet, PrimitiveTensorElementType, Shape, SymbolicDimensions, Tensor, TensorElementType, ValueType};

use crate::model::ModelError;

/// Opset of the built graphs: Resize-18 (antialias off by default), Pad-18.
const OPSET: u32 = 18;

/// A graph input or output: its element type and dimensions.
pub(crate) struct Port {
    name: &'static str,
    element: TensorElementType,
    dims: Vec<Dim>,
}

/// A dimension: a fixed size, or a named dynamic one (`-1` with its symbol in ONNX).
#[derive(Clone, Copy)]
pub(crate) enum Dim {
    Fixed(i64),
    Named(&'static str),
}

impl Port {
    pub fn new(name: &'static str, element: TensorElementType, dims: &[Dim]) -> Self {
        Self { name, element, dims: dims.to_vec() }
    }

    fn outlet(&self) -> Outlet {
        let size = |d: &Dim| if let Dim::Fixed(n) = d { *n } else { -1 };
        let symbol = |d: &Dim| if let Dim::Named(s) = d { s.to_string() } else { String::new() };
        Outlet::new(
            self.name,
            ValueType::Tensor {
                ty: self.element,
                shape: Shape::new(self.dims.iter().map(size)),
                dimension_symbols: SymbolicDimensions::new(self.dims.iter().map(symbol)),
            },
        )
    }
}

/// Nodes are named after their outputs; each call returns the name of its output.
pub(crate) struct GraphBuilder {
    graph: Graph,
    nodes: usize,
}

impl GraphBuilder {
    pub fn new() -> Result<Self, ModelError> {
        Ok(Self { graph: Graph::new()?, nodes: 0 })
    }

    /// Adds `op` with one output, named `output` or generated.
    pub fn op(&mut self, op: &str, inputs: &[&str], output: Option<&str>, attributes: Vec<Attribute>) -> Result<String, ModelError> {
        self.nodes += 1;
        let output = output.map_or_else(|| format!("{}_{}", op.to_ascii_lowercase(), self.nodes), str::to_string);
        let node = Node::new(op, ONNX_DOMAIN, format!("node_{}", self.nodes), inputs, [output.as_str()], attributes)?;
        self.graph.add_node(node)?;
        Ok(output)
    }

    /// A constant tensor (an initializer).
    pub fn constant<T: PrimitiveTensorElementType + std::fmt::Debug + Copy>(
        &mut self,
        name: &str,
        shape: &[i64],
        values: &[T],
    ) -> Result<String, ModelError> {
        let mut tensor = Tensor::<T>::new(&Allocator::default(), shape.to_vec())?;
        tensor.extract_tensor_mut().1.copy_from_slice(values);
        self.graph.add_initializer(name, tensor, false)?;
        Ok(name.to_string())
    }

    pub fn finish(mut self, inputs: &[Port], outputs: &[Port]) -> Result<Model, ModelError> {
        self.graph.set_inputs(inputs.iter().map(Port::outlet))?;
        self.graph.set_outputs(outputs.iter().map(Port::outlet))?;
        let mut model = Model::new([Opset::new(ONNX_DOMAIN, OPSET)?])?;
        model.set_graph(self.graph)?;
        Ok(model)
    }
}

pub(crate) fn attr<T: ort::operator::ToAttribute>(name: &str, value: T) -> Result<Attribute, ModelError> {
    Ok(Attribute::new(name, value)?)
}
