//! `wasi:nn` for the component, backed by [`crate::engines::native`].
//!
//! Each instance sees exactly one graph: its own model version's, named in
//! the guest's `VITRINE_NN_GRAPH`, preloaded and optimised by the host and
//! shared by every instance of that version. `load` from bytes is refused: a
//! guest cannot make the host parse a model of its choosing.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use vitrine_component::inference::OVERLOADED_PREFIX;

use crate::engines::native::{NativeError, NativeModel};
use crate::runtime::timeline::EngineCall;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "vitrine:component/nn-client",
    imports: { default: async | trappable },
    with: {
        "wasi:nn/tensor.tensor": NnTensor,
        "wasi:nn/graph.graph": NnGraph,
        "wasi:nn/inference.graph-execution-context": NnContext,
        "wasi:nn/errors.error": NnError,
    },
});

use wasi::nn::errors::ErrorCode;
use wasi::nn::graph::{ExecutionTarget, GraphEncoding};
use wasi::nn::tensor::TensorType;

/// What the guest's `error` resource carries.
pub struct NnError {
    code: ErrorCode,
    data: String,
}

/// A tensor on the host side of the boundary.
pub struct NnTensor {
    dimensions: Vec<u32>,
    ty: TensorType,
    data: Vec<u8>,
}

pub struct NnGraph(Arc<NativeModel>);
pub struct NnContext(Arc<NativeModel>);

/// The graph one instance may load by name.
#[derive(Clone, Default)]
pub struct NnState {
    pub graph: Option<(String, Arc<NativeModel>)>,
}

/// What the `wasi:nn` functions see of an instance's state: its resource
/// table and its graph. The pool's store state hands one out, so this
/// module need not know that state's type.
pub struct NnView<'a> {
    pub table: &'a mut ResourceTable,
    pub state: &'a NnState,
    /// Where `compute` stamps the request's engine call.
    pub engine_call: &'a mut Option<EngineCall>,
}

struct HasNn;

impl HasData for HasNn {
    type Data<'a> = NnView<'a>;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> NnView<'_>,
) -> anyhow::Result<()> {
    NnClient::add_to_linker::<T, HasNn>(linker, view).map_err(anyhow::Error::from)
}

type Fallible<T> = wasmtime::Result<Result<T, Resource<NnError>>>;

fn fail<T>(table: &mut ResourceTable, code: ErrorCode, data: impl Into<String>) -> Fallible<T> {
    let e = table.push(NnError {
        code,
        data: data.into(),
    })?;
    Ok(Err(e))
}

impl wasi::nn::errors::Host for NnView<'_> {}

impl wasi::nn::errors::HostError for NnView<'_> {
    async fn code(&mut self, e: Resource<NnError>) -> wasmtime::Result<ErrorCode> {
        Ok(self.table.get(&e)?.code)
    }

    async fn data(&mut self, e: Resource<NnError>) -> wasmtime::Result<String> {
        Ok(self.table.get(&e)?.data.clone())
    }

    async fn drop(&mut self, e: Resource<NnError>) -> wasmtime::Result<()> {
        self.table.delete(e)?;
        Ok(())
    }
}

impl wasi::nn::tensor::Host for NnView<'_> {}

impl wasi::nn::tensor::HostTensor for NnView<'_> {
    async fn new(
        &mut self,
        dimensions: Vec<u32>,
        ty: TensorType,
        data: Vec<u8>,
    ) -> wasmtime::Result<Resource<NnTensor>> {
        Ok(self.table.push(NnTensor {
            dimensions,
            ty,
            data,
        })?)
    }

    async fn dimensions(&mut self, t: Resource<NnTensor>) -> wasmtime::Result<Vec<u32>> {
        Ok(self.table.get(&t)?.dimensions.clone())
    }

    async fn ty(&mut self, t: Resource<NnTensor>) -> wasmtime::Result<TensorType> {
        Ok(self.table.get(&t)?.ty)
    }

    async fn data(&mut self, t: Resource<NnTensor>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&t)?.data.clone())
    }

    async fn drop(&mut self, t: Resource<NnTensor>) -> wasmtime::Result<()> {
        self.table.delete(t)?;
        Ok(())
    }
}

impl wasi::nn::graph::Host for NnView<'_> {
    async fn load(
        &mut self,
        _builder: Vec<Vec<u8>>,
        _encoding: GraphEncoding,
        _target: ExecutionTarget,
    ) -> Fallible<Resource<NnGraph>> {
        fail(
            self.table,
            ErrorCode::UnsupportedOperation,
            "this host runs only the graphs it preloads; use load-by-name with VITRINE_NN_GRAPH",
        )
    }

    async fn load_by_name(&mut self, name: String) -> Fallible<Resource<NnGraph>> {
        match &self.state.graph {
            Some((own, model)) if *own == name => {
                let graph = NnGraph(model.clone());
                Ok(Ok(self.table.push(graph)?))
            }
            _ => fail(
                self.table,
                ErrorCode::NotFound,
                format!("no graph named {name:?} is loaded for this instance"),
            ),
        }
    }
}

impl wasi::nn::graph::HostGraph for NnView<'_> {
    async fn init_execution_context(
        &mut self,
        g: Resource<NnGraph>,
    ) -> Fallible<Resource<NnContext>> {
        let model = self.table.get(&g)?.0.clone();
        Ok(Ok(self.table.push(NnContext(model))?))
    }

    async fn drop(&mut self, g: Resource<NnGraph>) -> wasmtime::Result<()> {
        self.table.delete(g)?;
        Ok(())
    }
}

impl wasi::nn::inference::Host for NnView<'_> {}

impl wasi::nn::inference::HostGraphExecutionContext for NnView<'_> {
    async fn compute(
        &mut self,
        ctx: Resource<NnContext>,
        inputs: Vec<(String, Resource<NnTensor>)>,
    ) -> Fallible<Vec<(String, Resource<NnTensor>)>> {
        let called = Instant::now();
        let model = self.table.get(&ctx)?.0.clone();
        let mut tensors = Vec::with_capacity(inputs.len());
        for (_, t) in inputs {
            tensors.push(self.table.delete(t)?);
        }
        let count = tensors.len();
        let (Some(input), 1) = (tensors.pop(), count) else {
            return fail(
                self.table,
                ErrorCode::InvalidArgument,
                format!("expected one input tensor (pixel_values), got {count}"),
            );
        };
        let [c, h, w] = model.image_shape().map(|d| d as u32);
        let rows = match input.dimensions.as_slice() {
            [n, ic, ih, iw] if input.ty == TensorType::Fp32 && [*ic, *ih, *iw] == [c, h, w] => {
                *n as usize
            }
            _ => {
                return fail(
                    self.table,
                    ErrorCode::InvalidArgument,
                    format!(
                        "expected one FP32 tensor [n, {c}, {h}, {w}], got {:?} {:?}",
                        input.ty, input.dimensions
                    ),
                );
            }
        };
        match model.infer(rows, input.data).await {
            Ok((logits, run)) => {
                let data = logits.iter().flat_map(|x| x.to_le_bytes()).collect();
                let out = self.table.push(NnTensor {
                    dimensions: vec![rows as u32, model.num_labels() as u32],
                    ty: TensorType::Fp32,
                    data,
                })?;
                *self.engine_call = Some(EngineCall {
                    called,
                    run,
                    returned: Instant::now(),
                });
                Ok(Ok(vec![("logits".to_string(), out)]))
            }
            Err(NativeError::Invalid(m)) => fail(self.table, ErrorCode::InvalidArgument, m),
            Err(NativeError::Overloaded(m)) => fail(
                self.table,
                ErrorCode::RuntimeError,
                format!("{OVERLOADED_PREFIX} {m}"),
            ),
            Err(NativeError::Failed(m)) => fail(self.table, ErrorCode::RuntimeError, m),
        }
    }

    async fn drop(&mut self, ctx: Resource<NnContext>) -> wasmtime::Result<()> {
        self.table.delete(ctx)?;
        Ok(())
    }
}
