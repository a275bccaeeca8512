//! The plugins a server loads and, per tenant, the tools they give it: each
//! plugin the tenant may use, under the tenant's policy (its ceiling) and
//! identity. Built on a tenant's first request and again when its record
//! changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use warden_core::{CallOptions, CompiledPlugin, ComponentKind, LimitSettings, TenantId};
use warden_mcp::{Catalog, Plugin};

use crate::tenant::{self, TenantRecord};

/// What one tenant can call.
pub struct TenantTools {
    /// `None` when the tenant may use no tool plugin.
    pub catalog: Option<Catalog>,
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
    pub fn new(data_dir: &Path, plugins: Vec<CompiledPlugin>) -> Hosting {
        Hosting {
            data_dir: data_dir.to_path_buf(),
            plugins,
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
                inside_root(&dir.host, &root)?;
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
        let catalog = if granted.is_empty() {
            None
        } else {
            Some(
                Catalog::new(granted, record.quotas.concurrent_calls as usize)
                    .await
                    .map_err(|e| e.to_string())?,
            )
        };
        Ok(Arc::new(TenantTools { catalog }))
    }
}

/// `Err` unless `dir`, links followed, is inside the tenant's `root`: a
/// guest may have replaced a granted subdirectory with a link out.
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
            "granted directory {} leads outside the tenant's root (to {})",
            dir.display(),
            dir_real.display()
        ))
    }
}
