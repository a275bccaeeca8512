//! The plugins a server loads and, per tenant, the tools they give it: each
//! plugin the tenant may use, under the tenant's policy (its ceiling) and
//! identity. Built on a tenant's first request and again when its record
//! changes. MCP calls pass the same quota gate and land in the same audit
//! log as REST ones.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::sync::OnceCell;
use warden_core::{
    CallError, CallOptions, CallOutcome, CompiledPlugin, ComponentKind, LimitSettings, TenantId,
    ToolError,
};
use warden_mcp::{CallHook, Catalog, Plugin, WardenMcp};

use crate::audit::AuditEvent;
use crate::operator::Operator;
use crate::quota::CallGate;
use crate::tenant::{self, TenantRecord};

/// The MCP endpoint of one tenant's tools (its own sessions).
pub type TenantMcp = StreamableHttpService<WardenMcp, LocalSessionManager>;

/// What one tenant can call.
pub struct TenantTools {
    /// `None` when the tenant may use no tool plugin.
    pub catalog: Option<Arc<Catalog>>,
    /// The same tools over MCP.
    pub mcp: Option<TenantMcp>,
}

impl std::fmt::Debug for TenantTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantTools").finish_non_exhaustive()
    }
}

type Slot = Arc<OnceCell<Result<Arc<TenantTools>, String>>>;

/// The server's plugins and every tenant's view of them.
pub struct Hosting {
    data_dir: PathBuf,
    plugins: Vec<CompiledPlugin>,
    operator: Arc<Operator>,
    gate: Arc<CallGate>,
    tenants: Mutex<HashMap<String, (TenantRecord, Slot)>>,
}

impl std::fmt::Debug for Hosting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosting")
            .field(
                "plugins",
                &self.plugins.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Hosting {
    pub fn new(
        plugins: Vec<CompiledPlugin>,
        operator: Arc<Operator>,
        gate: Arc<CallGate>,
    ) -> Hosting {
        Hosting {
            data_dir: operator.data_dir().to_path_buf(),
            plugins,
            operator,
            gate,
            tenants: Mutex::default(),
        }
    }

    pub fn plugins(&self) -> &[CompiledPlugin] {
        &self.plugins
    }

    /// The tools of `record`'s tenant. `Err` says why they cannot be
    /// offered (a policy that no longer fits the plugins the server loads).
    pub async fn tools(&self, record: &TenantRecord) -> Result<Arc<TenantTools>, String> {
        let slot = {
            let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
            match tenants.get(&record.name) {
                Some((known, slot)) if known == record => slot.clone(),
                _ => {
                    let slot = Slot::default();
                    tenants.insert(record.name.clone(), (record.clone(), slot.clone()));
                    slot
                }
            }
        };
        slot.get_or_init(|| self.build(record)).await.clone()
    }

    async fn build(&self, record: &TenantRecord) -> Result<Arc<TenantTools>, String> {
        let id = TenantId::new(&record.name).map_err(|e| e.to_string())?;
        let root = tenant::root(&self.data_dir, &record.name);
        let policy = match &record.policy {
            Some(text) => tenant::policy(text, &root).map_err(|e| e.to_string())?,
            None => warden_core::Policy::default(),
        };
        let everything = record.plugins.iter().any(|p| p == "*");
        let mut granted = Vec::new();
        for plugin in &self.plugins {
            if plugin.kind() != ComponentKind::Tool
                || !(everything || record.plugins.iter().any(|p| p == plugin.name()))
            {
                continue;
            }
            let (grant, limits) = policy
                .for_plugin(plugin.name(), plugin.sha256())
                .map_err(|e| e.to_string())?;
            for dir in &grant.dirs {
                inside_root(&dir.host, &tenant::files(&root))?;
            }
            let limits = plugin
                .limits(limits, LimitSettings::default())
                .map_err(|e| format!("plugin {}: {e}", plugin.name()))?;
            granted.push(Plugin {
                plugin: plugin.clone(),
                options: CallOptions {
                    tenant: id.clone(),
                    grant,
                    limits,
                    ..CallOptions::default()
                },
            });
        }
        if granted.is_empty() {
            return Ok(Arc::new(TenantTools {
                catalog: None,
                mcp: None,
            }));
        }
        let catalog = Arc::new(
            Catalog::new(granted, record.quotas.concurrent_calls as usize)
                .await
                .map_err(|e| e.to_string())?,
        );
        let shared = catalog.clone();
        let hook: Arc<dyn CallHook> = Arc::new(McpHook {
            tenant: record.clone(),
            operator: self.operator.clone(),
            gate: self.gate.clone(),
            catalog: catalog.clone(),
        });
        // The key, checked before a request reaches it, is what stops a
        // page on another site from calling in; so any Host is accepted.
        let config = StreamableHttpServerConfig::default().disable_allowed_hosts();
        let mcp = StreamableHttpService::new(
            move || Ok(WardenMcp::shared(shared.clone()).with_hook(hook.clone())),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        Ok(Arc::new(TenantTools {
            catalog: Some(catalog),
            mcp: Some(mcp),
        }))
    }
}

/// A tenant's MCP calls through its quota gate and into its audit log.
struct McpHook {
    tenant: TenantRecord,
    operator: Arc<Operator>,
    gate: Arc<CallGate>,
    catalog: Arc<Catalog>,
}

impl CallHook for McpHook {
    fn admit(&self) -> Result<Box<dyn std::any::Any + Send>, String> {
        match self.gate.enter(&self.tenant.name, &self.tenant.quotas) {
            Some(admitted) => Ok(Box::new(admitted)),
            None => Err(format!(
                "busy: this tenant has {} calls running and {} waiting, its quota; retry when one ends",
                self.tenant.quotas.concurrent_calls, self.tenant.quotas.queued_calls
            )),
        }
    }

    fn finished(&self, tool: &str, outcome: &CallOutcome<Result<String, ToolError>>) {
        let (plugin, unqualified) = self.catalog.origin(tool).unwrap_or_default();
        let result = match &outcome.result {
            Ok(Ok(_)) => "ok",
            Ok(Err(_)) => "tool-error",
            Err(CallError::Limit { .. }) => "limit",
            Err(_) => "trap",
        };
        let event = AuditEvent::new(
            "tool.call",
            None,
            result,
            serde_json::json!({
                "plugin": plugin,
                "tool": unqualified,
                "via": "mcp",
                "fuel": outcome.usage.fuel_used,
                "duration_ms": outcome.usage.duration.as_millis() as u64,
                "narrowed": outcome.narrowed,
            }),
        );
        let (operator, tenant) = (self.operator.clone(), self.tenant.name.clone());
        tokio::spawn(async move { operator.record(&tenant, event).await });
    }
}

/// `Err` unless `dir`, links followed, is inside the tenant's files
/// directory `root`: a guest may have replaced a granted subdirectory with
/// a link out. The message is for the server's log.
fn inside_root(dir: &Path, root: &Path) -> Result<(), String> {
    let (Ok(dir_real), Ok(root_real)) = (dir.canonicalize(), root.canonicalize()) else {
        return Err(format!(
            "granted directory {} does not exist; `warden tenants add` makes them, or create it under {}",
            dir.display(),
            root.display()
        ));
    };
    if dir_real.starts_with(&root_real) {
        Ok(())
    } else {
        Err(format!(
            "granted directory {} leads outside the tenant's files (to {})",
            dir.display(),
            dir_real.display()
        ))
    }
}
