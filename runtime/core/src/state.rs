//! The data of one call's `Store`: the sum of the small per-capability states,
//! built by hand in [`CallState::new`] and dropped with the store.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::host::exec::ExecContext;
use crate::host::http::OutboundHttp;
use crate::host::llm::LlmContext;
use crate::host::log::LogBudget;
use crate::host::memory::MemoryContext;
use crate::host::tools::ToolsContext;
use crate::limits::CallLimiter;
use crate::policy::TenantId;

/// Who a call runs for and what it runs: the fields every trace and denial
/// carries.
#[derive(Debug, Clone)]
pub(crate) struct CallLabels {
    pub(crate) tenant: TenantId,
    pub(crate) plugin: Arc<str>,
}

pub(crate) struct CallState {
    pub(crate) labels: CallLabels,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: WasiHttpCtx,
    pub(crate) outbound: OutboundHttp,
    pub(crate) limiter: CallLimiter,
    pub(crate) log: LogBudget,
    pub(crate) exec: ExecContext,
    pub(crate) llm: LlmContext,
    pub(crate) memory: MemoryContext,
    pub(crate) tools: ToolsContext,
    /// When the epoch callback stops the guest.
    pub(crate) deadline: Instant,
    /// Set by the epoch callback when it stopped the guest for the deadline.
    pub(crate) deadline_hit: bool,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}
