//! The data of one call's `Store`: the sum of the small per-capability
//! states, each owned by its `host/*` module, and the one place that names
//! them all. A capability the plugin does not import is `None`.

use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::host::exec::{ExecContext, ExecView};
use crate::host::files::{FilesContext, FilesView};
use crate::host::http::OutboundHttp;
use crate::host::llm::{LlmContext, LlmView};
use crate::host::log::{LogContext, LogView};
use crate::host::memory::{MemoryContext, MemoryView};
use crate::host::tools::{ToolsContext, ToolsView};
use crate::limits::CallLimiter;

pub(crate) struct CallState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: WasiHttpCtx,
    pub(crate) outbound: OutboundHttp,
    pub(crate) limiter: CallLimiter,
    pub(crate) files: FilesContext,
    pub(crate) log: LogContext,
    pub(crate) exec: Option<ExecContext>,
    pub(crate) llm: Option<LlmContext>,
    pub(crate) memory: Option<MemoryContext>,
    pub(crate) tools: Option<ToolsContext>,
    /// When the epoch callback stops the guest.
    pub(crate) deadline: Instant,
    /// Set by the epoch callback when it stopped the guest for the deadline.
    pub(crate) deadline_hit: bool,
    /// When the component was instantiated, for [`crate::call::Phases`].
    pub(crate) instantiated: Option<Instant>,
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

impl FilesView for CallState {
    fn files(&mut self) -> &mut FilesContext {
        &mut self.files
    }
}

impl LogView for CallState {
    fn log(&mut self) -> &mut LogContext {
        &mut self.log
    }
}

impl ExecView for CallState {
    fn exec(&mut self) -> Option<&ExecContext> {
        self.exec.as_ref()
    }
}

impl LlmView for CallState {
    fn llm(&mut self) -> Option<&LlmContext> {
        self.llm.as_ref()
    }
}

impl MemoryView for CallState {
    fn memory(&mut self) -> Option<&MemoryContext> {
        self.memory.as_ref()
    }
}

impl ToolsView for CallState {
    fn tools(&mut self) -> Option<&mut ToolsContext> {
        self.tools.as_mut()
    }
}
