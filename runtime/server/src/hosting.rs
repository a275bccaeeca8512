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
use tokio::sync::OwnedSemaphorePermit;
use warden_core::{
    CallError, CallOptions, CallOutcome, CompiledPlugin, ComponentKind, LimitSettings, TenantId,
    ToolError,
};
use warden_mcp::{Admission, Admitted as McpAdmitted, CallHook, Catalog, Plugin, WardenMcp};

use crate::audit::AuditEvent;
use crate::control::Counts;
use crate::metrics::Metrics;
use crate::operator::Operator;
use crate::quota::{Admitted, CallGate};
use crate::tenant::{self, TenantRecord};
use crate::usage::{FuelHold, Meter};

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
    metrics: Arc<Metrics>,
    meter: Arc<Meter>,
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
        metrics: Arc<Metrics>,
        meter: Arc<Meter>,
    ) -> Hosting {
        Hosting {
            data_dir: operator.data_dir().to_path_buf(),
            plugins,
            operator,
            gate,
            metrics,
            meter,
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
                .for_plugin(plugin.name(), plugin.sha256(), plugin.signer())
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
            metrics: self.metrics.clone(),
            meter: self.meter.clone(),
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
    metrics: Arc<Metrics>,
    meter: Arc<Meter>,
    catalog: Arc<Catalog>,
}

/// What an MCP call holds while it runs.
type McpHeld = (Admitted, Option<OwnedSemaphorePermit>, FuelHold);

impl CallHook for McpHook {
    fn admit<'a>(&'a self, tool: &'a str) -> Admission<'a> {
        Box::pin(async move {
            let Some(admitted) = self.gate.enter(&self.tenant.name, &self.tenant.quotas) else {
                self.metrics.refused(&self.tenant.name, "busy");
                return Err(format!(
                    "busy: this tenant has {} calls running and {} waiting, its quota; retry when one ends",
                    self.tenant.quotas.concurrent_calls, self.tenant.quotas.queued_calls
                ));
            };
            let sandbox = admitted.sandbox().await;
            let want = self.catalog.fuel(tool).unwrap_or(u64::MAX);
            let hold = match self.meter.hold_fuel(&self.tenant, want).await {
                Ok(hold) => hold,
                Err(spent) => {
                    self.metrics.refused(&self.tenant.name, "quota");
                    return Err(spent.why);
                }
            };
            let fuel = Some(hold.granted());
            let held: McpHeld = (admitted, sandbox, hold);
            Ok(McpAdmitted {
                held: Box::new(held),
                fuel,
            })
        })
    }

    fn finished(
        &self,
        tool: &str,
        admitted: McpAdmitted,
        outcome: &CallOutcome<Result<String, ToolError>>,
    ) {
        let fuel = outcome.usage.fuel_used;
        if let Ok(held) = admitted.held.downcast::<McpHeld>() {
            let (_place, _sandbox, hold) = *held;
            hold.settle(fuel);
        }
        self.meter.add(
            &self.tenant.name,
            "mcp",
            "",
            Counts {
                calls: 1,
                fuel,
                ..Counts::default()
            },
        );
        let (plugin, unqualified) = self.catalog.origin(tool).unwrap_or_default();
        let result = match &outcome.result {
            Ok(Ok(_)) => "ok",
            Ok(Err(_)) => "tool-error",
            Err(CallError::Limit { .. }) => "limit",
            Err(_) => "trap",
        };
        // The time in the sandbox: an MCP call's wait is not seen here.
        self.metrics.call(
            &self.tenant.name,
            "mcp",
            result,
            outcome.usage.duration.as_secs_f64(),
        );
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
