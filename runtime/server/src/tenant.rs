//! A tenant: its name, the policy that is its ceiling, the plugins it may
//! use and its quotas; and its root in the data dir, where everything it
//! owns lives (`tenants/<name>/`: its audit log, the directories its
//! policy grants).

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use warden_core::{Policy, TenantId};

/// A tenant as the control store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub name: String,
    /// The policy file's text (TOML), or `None` for no grants at all.
    /// Relative directories in it are under the tenant's [`files`].
    pub policy: Option<String>,
    /// The plugins (by manifest name) the tenant may use; `*` for all.
    pub plugins: Vec<String>,
    pub quotas: Quotas,
    /// Seconds since the Unix epoch.
    pub created: i64,
}

/// What one tenant may use at once and over time. Enforced per server.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Quotas {
    /// Sustained requests per second (a token bucket refilled at this rate).
    pub requests_per_second: u32,
    /// Requests that may arrive at once before the rate applies.
    pub burst: u32,
    /// Sandboxes (tool calls, exec runs) running at once.
    pub concurrent_calls: u32,
    /// Calls waiting for a sandbox beyond those; more are refused (429).
    pub queued_calls: u32,
    /// Runs going on at once; a workflow's own concurrency is cut to
    /// `concurrent-calls`.
    #[serde(default = "default_runs")]
    pub runs_in_flight: u32,
    /// Fuel its tool calls, exec runs and run tasks may use per UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel_per_day: Option<u64>,
    /// Model tokens (in and out) its runs may use per UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<u64>,
    /// US dollars its runs' model calls may cost per UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_per_day: Option<f64>,
    /// Memory entries it may hold, in all its namespaces together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_entries: Option<u64>,
    /// MiB its files and run workspaces may take on disk together; a
    /// write past it fails in the guest as a full disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_mib: Option<u64>,
}

fn default_runs() -> u32 {
    2
}

impl Default for Quotas {
    fn default() -> Quotas {
        Quotas {
            requests_per_second: 50,
            burst: 100,
            concurrent_calls: 4,
            queued_calls: 16,
            runs_in_flight: default_runs(),
            fuel_per_day: None,
            tokens_per_day: None,
            cost_per_day: None,
            memory_entries: None,
            workspace_mib: None,
        }
    }
}

impl Quotas {
    /// `Err` naming the quota that cannot work.
    pub fn check(&self) -> Result<(), String> {
        for (name, value) in [
            ("requests-per-second", self.requests_per_second),
            ("burst", self.burst),
            ("concurrent-calls", self.concurrent_calls),
            ("runs-in-flight", self.runs_in_flight),
        ] {
            if value == 0 {
                return Err(format!(
                    "{name} is 0, so the tenant could do nothing; give at least 1 (or remove the tenant)"
                ));
            }
        }
        if let Some(cost) = self.cost_per_day
            && !(cost.is_finite() && cost >= 0.0)
        {
            return Err(format!(
                "cost-per-day is {cost}; give a number of dollars, 0 or more"
            ));
        }
        Ok(())
    }
}

/// Why a tenant cannot be added as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("{0}")]
    Name(String),
    #[error("policy: {0}")]
    Policy(String),
    #[error("quotas: {0}")]
    Quotas(String),
}

/// The tenant's name, checked: it becomes a directory name.
pub fn check_name(name: &str) -> Result<TenantId, TenantError> {
    TenantId::new(name).map_err(|_| {
        TenantError::Name(format!(
            "{name:?} is not a tenant name; use 1 to 64 letters, digits, `-` or `_`"
        ))
    })
}

/// Where tenant `name`'s data lives under the data dir.
pub fn root(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("tenants").join(name)
}

/// Where the directories a tenant's policy grants live: `files` under its
/// root, apart from what the server keeps there (runs, the audit log).
pub fn files(root: &Path) -> PathBuf {
    root.join("files")
}

/// `text` read as a tenant's policy: relative directories resolve under
/// its [`files`] directory, and every granted directory must lie inside it.
pub fn policy(text: &str, root: &Path) -> Result<Policy, TenantError> {
    let files = files(root);
    let policy = Policy::from_toml(text, &files).map_err(|e| TenantError::Policy(e.to_string()))?;
    let grants = std::iter::once(&policy.grant).chain(policy.plugins.values().map(|p| &p.grant));
    for grant in grants {
        for dir in &grant.dirs {
            if !lexically_inside(&dir.host, &files) {
                return Err(TenantError::Policy(format!(
                    "directory {} is outside the tenant's files {}; a tenant's directories live there (write them relative, e.g. host = \"data\", or \".\" for all of it)",
                    dir.host.display(),
                    files.display()
                )));
            }
        }
    }
    Ok(policy)
}

/// Whether `path` names something inside `root`, `..` resolved by the
/// letter (symbolic links are checked again when a call opens them).
pub fn lexically_inside(path: &Path, root: &Path) -> bool {
    let mut parts: Vec<Component> = Vec::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return false;
                }
            }
            Component::CurDir => {}
            other => parts.push(other),
        }
    }
    let normal: PathBuf = parts.iter().collect();
    normal.starts_with(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_directories_stay_under_its_root() {
        let root = Path::new("/data/tenants/acme");
        let inside = "version = 1\n[grant]\ndirs = [{ host = \"data\", guest = \"/data\", mode = \"rw\" }]\n";
        let p = policy(inside, root).unwrap();
        assert_eq!(p.grant.dirs[0].host, root.join("files/data"));
        // The server's own files beside them (runs, the audit log) are out
        // of reach too.
        for outside in [
            "version = 1\n[grant]\ndirs = [{ host = \"/etc\" }]\n",
            "version = 1\n[grant]\ndirs = [{ host = \"../runs\" }]\n",
            "version = 1\n[grant]\ndirs = [{ host = \"..\" }]\n",
            "version = 1\n[grant]\ndirs = [{ host = \"x/../../audit.jsonl\" }]\n",
            "version = 1\n[plugins.fs]\ndirs = [{ host = \"/home\" }]\n",
        ] {
            let err = policy(outside, root).unwrap_err().to_string();
            assert!(
                err.contains("outside the tenant's files"),
                "{outside}: {err}"
            );
        }
        assert!(lexically_inside(
            Path::new("/data/tenants/acme/./a/../b"),
            root
        ));
        assert!(!lexically_inside(Path::new("/data/tenants/acme-2"), root));
    }

    #[test]
    fn names_and_quotas_are_checked() {
        assert!(check_name("acme-1").is_ok());
        for bad in ["", "../x", "a/b", ".", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        let zero = Quotas {
            concurrent_calls: 0,
            ..Quotas::default()
        };
        assert!(zero.check().unwrap_err().contains("concurrent-calls"));
    }
}
