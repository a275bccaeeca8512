//! The `workspace-mib` quota: what a tenant's files and run workspaces may
//! take on disk. The engine makes every call of the tenant (tool calls,
//! exec, MCP, its runs' tasks and their nested calls) spend each byte it
//! writes from one shared count of what is left, so calls writing at once
//! cannot overshoot; here that count is set from what the tenant's
//! directories take, measured when the tenant is first seen, when its
//! quota changes, and again (at most once a second) while little is left,
//! so deleted files give their room back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use warden_core::Engine;

use crate::tenant::{self, TenantRecord};

const MIB: u64 = 1024 * 1024;
/// How often, at most, a tenant near its quota is measured again.
const REMEASURE: Duration = Duration::from_secs(1);

/// Every tenant's workspace quota, as the engine's calls spend it.
pub struct Workspaces {
    engine: Engine,
    data_dir: PathBuf,
    tenants: Mutex<HashMap<String, Slot>>,
}

impl std::fmt::Debug for Workspaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspaces")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Slot {
    /// Bytes the tenant's calls may still write.
    left: Arc<AtomicU64>,
    quota: u64,
    created: i64,
    /// Done once the first measure has set `left`.
    first: Arc<OnceCell<()>>,
    measured: Instant,
}

impl Slot {
    fn new(quota: u64, created: i64) -> Slot {
        Slot {
            left: Arc::new(AtomicU64::new(0)),
            quota,
            created,
            first: Arc::default(),
            measured: Instant::now(),
        }
    }
}

/// What a tenant's workspace takes, for the usage report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkspaceUse {
    pub quota_bytes: u64,
    pub left_bytes: u64,
}

impl Workspaces {
    pub fn new(engine: Engine, data_dir: &Path) -> Workspaces {
        Workspaces {
            engine,
            data_dir: data_dir.to_path_buf(),
            tenants: Mutex::default(),
        }
    }

    /// Brings `tenant`'s share of the disk up to date before one of its
    /// requests: given, changed or taken away with its quota, and measured
    /// again when it is nearly spent. Requests that come while the first
    /// measure runs wait for it, so none runs before the share is in place.
    pub async fn admit(&self, tenant: &TenantRecord) {
        let Some(mib) = tenant.quotas.workspace_mib else {
            let had = self.lock().remove(&tenant.name).is_some();
            if had {
                self.engine.share_tenant_disk(&tenant.name, None);
            }
            return;
        };
        let quota = mib.saturating_mul(MIB);
        let slot = {
            let mut tenants = self.lock();
            let slot = tenants
                .entry(tenant.name.clone())
                .or_insert_with(|| Slot::new(quota, tenant.created));
            if slot.quota != quota || slot.created != tenant.created {
                *slot = Slot::new(quota, tenant.created);
            }
            slot.clone()
        };
        slot.first
            .get_or_init(|| self.measure(tenant, &slot.left, quota))
            .await;
        let due = {
            let mut tenants = self.lock();
            match tenants.get_mut(&tenant.name) {
                Some(current)
                    if current.measured.elapsed() >= REMEASURE
                        && current.left.load(Ordering::Acquire) < quota / 8 =>
                {
                    // Others go on with the count as it is meanwhile.
                    current.measured = Instant::now();
                    true
                }
                _ => false,
            }
        };
        if due {
            self.measure(tenant, &slot.left, quota).await;
        }
    }

    /// Sets what `tenant` may still write from what its directories take,
    /// and gives it to the engine.
    async fn measure(&self, tenant: &TenantRecord, left: &Arc<AtomicU64>, quota: u64) {
        let first = left.load(Ordering::Acquire);
        let root = tenant::root(&self.data_dir, &tenant.name);
        let used = tokio::task::spawn_blocking(move || {
            [tenant::files(&root), root.join("runs")]
                .iter()
                .map(|dir| disk_use(dir))
                .sum::<u64>()
        })
        .await
        .unwrap_or(quota);
        // What calls spent while the walk went on may not be on disk yet:
        // keep it spent.
        let _ = left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
            let during = first.saturating_sub(now);
            Some(quota.saturating_sub(used).saturating_sub(during))
        });
        self.engine
            .share_tenant_disk(&tenant.name, Some(left.clone()));
    }

    /// The tenant's quota and what is left of it, if it has one.
    pub fn usage(&self, tenant: &str) -> Option<WorkspaceUse> {
        let tenants = self.lock();
        tenants.get(tenant).map(|slot| WorkspaceUse {
            quota_bytes: slot.quota,
            left_bytes: slot.left.load(Ordering::Acquire),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.tenants.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Bytes the files under `dir` take (their lengths; links not followed).
fn disk_use(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_use_adds_up_files_in_every_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("one"), vec![0; 100]).unwrap();
        std::fs::write(dir.path().join("a/b/two"), vec![0; 23]).unwrap();
        assert_eq!(disk_use(dir.path()), 123);
        assert_eq!(disk_use(&dir.path().join("missing")), 0);
    }
}
