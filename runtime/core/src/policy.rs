//! Grants, the policy file, and the effective capability of one call:
//! the manifest's ceiling intersected with the operator's grant.
//!
//! ```toml
//! version = 1
//!
//! [limits]               # defaults for every call, also the ceiling for
//! timeout-ms = 5000      # what a manifest may ask for
//! memory-mib = 256
//!
//! [grant]                # granted to every plugin
//! allow-hosts = ["https://api.github.com"]
//! models = ["fast"]      # LLM aliases (from the LLM config); "*" for any
//! memory = ["notes:rw", "docs"]  # memory namespaces, read-only unless :rw
//!
//! [plugins.fs]           # granted to the plugin named "fs" only
//! dirs = [{ host = "./data", guest = "/data", mode = "rw" }]
//! limits = { timeout-ms = 10000 }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::field::FieldError;
use crate::grant::{
    DirGrant, DirMode, Grant, GrantError, ModelName, NamespaceGrant, TenantId, is_valid_plugin_name,
};
use crate::limits::LimitSettings;
use crate::manifest::Manifest;
use crate::net::{HostPattern, NetPolicy};
use crate::signature::PublicKey;

/// The capabilities a call actually gets.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    pub dirs: Vec<DirGrant>,
    pub net: NetPolicy,
    /// The models the plugin may ask; `None` means any.
    pub models: Option<Vec<ModelName>>,
    /// The memory namespaces the plugin may read, or also write.
    pub memory: Vec<NamespaceGrant>,
    /// Grants the manifest's ceiling cut away or narrowed, each with why.
    pub narrowed: Vec<String>,
}

/// Effective capability = manifest ceiling ∩ operator grant. A plugin without
/// a manifest has no ceiling: the grant alone decides.
pub fn effective(
    grant: &Grant,
    manifest: Option<&Manifest>,
    tenant: &TenantId,
    plugin: &str,
) -> Capabilities {
    let mut caps = Capabilities::default();
    for dir in &grant.dirs {
        let Some(manifest) = manifest else {
            caps.dirs.push(dir.clone());
            continue;
        };
        // The widest mode any matching declaration allows.
        let declared = manifest
            .capabilities
            .fs
            .iter()
            .filter(|c| c.path == "*" || c.path == dir.guest)
            .map(|c| c.mode)
            .max();
        match declared {
            None => {
                let why = format!(
                    "dir {} (as {}) dropped: plugin {plugin} declares no filesystem access to {}",
                    dir.host.display(),
                    dir.guest,
                    dir.guest
                );
                tracing::info!(%tenant, plugin, reason = %why, "grant denied by manifest");
                caps.narrowed.push(why);
            }
            Some(mode) => {
                let mode = mode.min(dir.mode);
                if mode < dir.mode {
                    let why = format!(
                        "dir {} (as {}) narrowed to read-only: plugin {plugin} declares only read access",
                        dir.host.display(),
                        dir.guest
                    );
                    tracing::info!(%tenant, plugin, reason = %why, "grant narrowed by manifest");
                    caps.narrowed.push(why);
                }
                caps.dirs.push(DirGrant {
                    mode,
                    ..dir.clone()
                });
            }
        }
    }
    for dir in &caps.dirs {
        tracing::debug!(%tenant, plugin, host = %dir.host.display(), guest = %dir.guest, mode = %dir.mode, "dir granted");
    }
    for pattern in &grant.allow_hosts {
        tracing::debug!(%tenant, plugin, %pattern, "outbound host granted");
    }
    let declared_hosts = manifest.map(Manifest::http_patterns);
    if declared_hosts.as_ref().is_some_and(Vec::is_empty) && !grant.allow_hosts.is_empty() {
        let hosts: Vec<String> = grant.allow_hosts.iter().map(|p| p.to_string()).collect();
        let why = format!(
            "host {} dropped: plugin {plugin} declares no network access (capabilities.http in its manifest)",
            hosts.join(", ")
        );
        tracing::info!(%tenant, plugin, reason = %why, "grant denied by manifest");
        caps.narrowed.push(why);
    }
    caps.net = NetPolicy::new(grant.allow_hosts.clone(), declared_hosts);
    caps.models = effective_models(&grant.models, manifest, tenant, plugin, &mut caps.narrowed);
    caps.memory = effective_memory(&grant.memory, manifest, tenant, plugin, &mut caps.narrowed);
    caps
}

/// The namespaces a plugin may use: each grant cut to the manifest's
/// declarations (the narrower mode wins; a `*` grant becomes the declared
/// names). Without a manifest, the grant alone decides.
fn effective_memory(
    granted: &[NamespaceGrant],
    manifest: Option<&Manifest>,
    tenant: &TenantId,
    plugin: &str,
    narrowed: &mut Vec<String>,
) -> Vec<NamespaceGrant> {
    let Some(manifest) = manifest else {
        return granted.to_vec();
    };
    let mut kept: Vec<NamespaceGrant> = Vec::new();
    for grant in granted {
        let mut matched = false;
        for declared in &manifest.capabilities.memory {
            let namespace = match (grant.namespace.as_str(), declared.namespace.as_str()) {
                ("*", d) => d,
                (g, "*") => g,
                (g, d) if g == d => g,
                _ => continue,
            };
            matched = true;
            let mode = grant.mode.min(declared.mode);
            if mode < grant.mode {
                let why = format!(
                    "memory namespace {namespace} narrowed to read-only: plugin {plugin} declares only read access"
                );
                tracing::info!(%tenant, plugin, reason = %why, "grant narrowed by manifest");
                narrowed.push(why);
            }
            match kept.iter_mut().find(|k| k.namespace == namespace) {
                Some(k) => k.mode = k.mode.max(mode),
                None => kept.push(NamespaceGrant {
                    namespace: namespace.to_string(),
                    mode,
                }),
            }
        }
        if !matched {
            let why = format!(
                "memory namespace {} dropped: plugin {plugin} declares no use of it",
                grant.namespace
            );
            tracing::info!(%tenant, plugin, reason = %why, "grant denied by manifest");
            narrowed.push(why);
        }
    }
    kept
}

/// The models a plugin may ask: the grant, cut to what its manifest
/// declares. `*` on either side means "any the other side allows".
fn effective_models(
    granted: &[ModelName],
    manifest: Option<&Manifest>,
    tenant: &TenantId,
    plugin: &str,
    narrowed: &mut Vec<String>,
) -> Option<Vec<ModelName>> {
    let any_granted = granted.iter().any(ModelName::is_any);
    let Some(manifest) = manifest else {
        return if any_granted {
            None
        } else {
            Some(granted.to_vec())
        };
    };
    let declared: Vec<&str> = manifest
        .capabilities
        .llm
        .iter()
        .map(|c| c.model.as_str())
        .collect();
    let any_declared = declared.contains(&"*");
    match (any_granted, any_declared) {
        (true, true) => None,
        (true, false) => Some(
            declared
                .iter()
                .filter_map(|m| ModelName::new(m).ok())
                .collect(),
        ),
        (false, _) => {
            let mut kept = Vec::new();
            for model in granted {
                if any_declared || declared.contains(&model.as_str()) {
                    kept.push(model.clone());
                } else {
                    let why =
                        format!("model {model} dropped: plugin {plugin} declares no use of it");
                    tracing::info!(%tenant, plugin, reason = %why, "grant denied by manifest");
                    narrowed.push(why);
                }
            }
            Some(kept)
        }
    }
}

/// A policy file, resolved: relative paths are relative to the file.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub limits: LimitSettings,
    pub grant: Grant,
    pub plugins: BTreeMap<String, PluginPolicy>,
    /// The keys whose signatures this policy accepts.
    pub trust: Vec<PublicKey>,
    /// Refuse plugins not signed by a key in `trust`.
    pub require_signature: bool,
}

/// What a policy file grants one plugin, on top of `[grant]`.
#[derive(Debug, Clone, Default)]
pub struct PluginPolicy {
    pub grant: Grant,
    pub limits: LimitSettings,
    /// When set, the section applies only to the component with this
    /// SHA-256: a manifest name is the plugin's own claim, a hash is not.
    pub sha256: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "kebab-case")]
struct PolicyDoc {
    version: Option<u32>,
    #[serde(default)]
    trust: Vec<String>,
    #[serde(default)]
    require_signature: bool,
    #[serde(default)]
    limits: LimitSettings,
    #[serde(default)]
    grant: GrantDoc,
    #[serde(default)]
    plugins: BTreeMap<String, PluginDoc>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct GrantDoc {
    #[serde(default)]
    dirs: Vec<DirDoc>,
    #[serde(default)]
    allow_hosts: Vec<String>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    memory: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PluginDoc {
    #[serde(default)]
    dirs: Vec<DirDoc>,
    #[serde(default)]
    allow_hosts: Vec<String>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    memory: Vec<String>,
    #[serde(default)]
    limits: LimitSettings,
    sha256: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirDoc {
    host: PathBuf,
    guest: Option<String>,
    #[serde(default = "read_only")]
    mode: DirMode,
}

fn read_only() -> DirMode {
    DirMode::ReadOnly
}

impl Policy {
    /// Reads a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Read {
            path: path.to_path_buf(),
            error: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Policy::from_toml(&text, base)
    }

    /// Parses policy text; relative host paths are joined to `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Policy, PolicyError> {
        let doc: PolicyDoc =
            toml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        match doc.version {
            Some(1) => {}
            None => {
                return Err(PolicyError::field(
                    "version",
                    "missing",
                    "add `version = 1`",
                ));
            }
            Some(v) => {
                return Err(PolicyError::field(
                    "version",
                    format!("{v} is not a version this warden reads"),
                    "set `version = 1`",
                ));
            }
        }
        check_limits("limits", &doc.limits)?;
        let trust = doc
            .trust
            .iter()
            .enumerate()
            .map(|(i, key)| {
                PublicKey::parse(key).map_err(|e| {
                    PolicyError::field(
                        format!("trust[{i}]"),
                        e.to_string(),
                        "copy the public key `warden plugin keygen` printed",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if doc.require_signature && trust.is_empty() {
            return Err(PolicyError::field(
                "require-signature",
                "no key is trusted, so every plugin would be refused",
                "list the signers' public keys in `trust = [\"ed25519:…\"]`",
            ));
        }
        let grant = resolve_grant(
            "grant",
            doc.grant.dirs,
            doc.grant.allow_hosts,
            doc.grant.models,
            doc.grant.memory,
            base,
        )?;
        let mut plugins = BTreeMap::new();
        for (name, p) in doc.plugins {
            let field = format!("plugins.{name}");
            if !is_valid_plugin_name(&name) {
                return Err(PolicyError::field(
                    field,
                    format!("{name:?} is not a plugin name"),
                    "use the `name` from the plugin's manifest (see `warden plugin inspect`)",
                ));
            }
            check_limits(&format!("{field}.limits"), &p.limits)?;
            if let Some(hash) = &p.sha256
                && !(hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()))
            {
                return Err(PolicyError::field(
                    format!("{field}.sha256"),
                    format!("{hash:?} is not a SHA-256"),
                    "copy the 64 hex digits `warden plugin inspect` prints",
                ));
            }
            let grant = resolve_grant(&field, p.dirs, p.allow_hosts, p.models, p.memory, base)?;
            plugins.insert(
                name,
                PluginPolicy {
                    grant,
                    limits: p.limits,
                    sha256: p.sha256.map(|h| h.to_ascii_lowercase()),
                },
            );
        }
        Ok(Policy {
            limits: doc.limits,
            grant,
            plugins,
            trust,
            require_signature: doc.require_signature,
        })
    }

    /// The grant and limit settings this policy gives plugin `name`, whose
    /// component has SHA-256 `sha256` and was signed by `signer`. A section
    /// pinned to another hash is an error, not a silent fallback: the
    /// operator meant a specific build; so is a plugin without a trusted
    /// signature when the policy requires one.
    pub fn for_plugin(
        &self,
        name: &str,
        sha256: &str,
        signer: Option<&PublicKey>,
    ) -> Result<(Grant, LimitSettings), PolicyError> {
        if self.require_signature {
            match signer {
                None => {
                    return Err(PolicyError::Unsigned {
                        name: name.to_string(),
                    });
                }
                Some(key) if !self.trust.contains(key) => {
                    return Err(PolicyError::Untrusted {
                        name: name.to_string(),
                        id: key.id(),
                        key: key.to_string(),
                    });
                }
                Some(_) => {}
            }
        }
        let mut grant = self.grant.clone();
        let mut limits = self.limits;
        if let Some(p) = self.plugins.get(name) {
            if let Some(pinned) = &p.sha256
                && !pinned.eq_ignore_ascii_case(sha256)
            {
                return Err(PolicyError::Pinned {
                    name: name.to_string(),
                    pinned: pinned.clone(),
                    actual: sha256.to_string(),
                });
            }
            grant.extend(&p.grant);
            limits = p.limits.or(limits);
        }
        Ok((grant, limits))
    }
}

fn check_limits(field: &str, limits: &LimitSettings) -> Result<(), PolicyError> {
    limits
        .check()
        .map_err(|e| PolicyError::field(field, e.to_string(), "fix the value"))
}

fn resolve_grant(
    field: &str,
    dirs: Vec<DirDoc>,
    hosts: Vec<String>,
    models: Vec<String>,
    memory: Vec<String>,
    base: &Path,
) -> Result<Grant, PolicyError> {
    let mut grant = Grant::default();
    for (i, spec) in memory.iter().enumerate() {
        let ns = NamespaceGrant::parse(spec).map_err(|e| {
            PolicyError::field(
                format!("{field}.memory[{i}]"),
                e.to_string(),
                "write \"NS\" for read-only or \"NS:rw\" for read-write",
            )
        })?;
        grant.memory.push(ns);
    }
    for (i, m) in models.iter().enumerate() {
        let model = ModelName::new(m).map_err(|e| {
            PolicyError::field(
                format!("{field}.models[{i}]"),
                e.to_string(),
                "name an alias from the LLM config, a provider/model, or \"*\"",
            )
        })?;
        grant.models.push(model);
    }
    for (i, d) in dirs.into_iter().enumerate() {
        let guest = match d.guest {
            Some(g) if g.is_empty() => {
                return Err(PolicyError::field(
                    format!("{field}.dirs[{i}].guest"),
                    "is empty",
                    "give the path the plugin should see, e.g. \"/data\", or leave it out",
                ));
            }
            Some(g) => g,
            None => d.host.to_string_lossy().into_owned(),
        };
        grant.dirs.push(DirGrant {
            host: base.join(&d.host),
            guest,
            mode: d.mode,
        });
    }
    for (i, h) in hosts.iter().enumerate() {
        let pattern = HostPattern::parse(h).map_err(|e| {
            PolicyError::field(
                format!("{field}.allow-hosts[{i}]"),
                e.to_string(),
                "write it as scheme://host:port, e.g. \"https://api.example.com\" or \"http://127.0.0.1:8080\"",
            )
        })?;
        grant.allow_hosts.push(pattern);
    }
    Ok(grant)
}

/// A grant or policy that cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("cannot read policy file {}: {error}", path.display())]
    Read { path: PathBuf, error: String },
    #[error("policy file is not valid: {0}")]
    Syntax(String),
    #[error("policy {0}")]
    Field(FieldError),
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error(
        "the policy pins plugin {name} to sha256 {pinned}, but this component is {actual}; update `plugins.{name}.sha256` if the new build is trusted"
    )]
    Pinned {
        name: String,
        pinned: String,
        actual: String,
    },
    #[error(
        "plugin {name} is not signed, and the policy requires a signature (require-signature = true); sign it with `warden plugin sign --key KEY`"
    )]
    Unsigned { name: String },
    #[error(
        "plugin {name} is signed by key {id} ({key}), which the policy does not trust; add that key to `trust` if you trust its owner"
    )]
    Untrusted {
        name: String,
        id: String,
        key: String,
    },
}

impl PolicyError {
    fn field(
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> PolicyError {
        PolicyError::Field(FieldError::new(field, problem, fix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{FsCapability, Manifest, PluginKind};

    fn manifest(fs: Vec<(&str, DirMode)>) -> Manifest {
        Manifest {
            manifest_version: 1,
            name: "p".into(),
            version: "0.1.0".into(),
            kind: PluginKind::Tool,
            description: "d".into(),
            capabilities: crate::manifest::Capabilities {
                fs: fs
                    .into_iter()
                    .map(|(path, mode)| FsCapability {
                        path: path.into(),
                        mode,
                        reason: "r".into(),
                    })
                    .collect(),
                ..Default::default()
            },
            limits: Default::default(),
        }
    }

    fn grant(dirs: &[(&str, DirMode)]) -> Grant {
        Grant {
            dirs: dirs
                .iter()
                .map(|(spec, mode)| DirGrant::parse(spec, *mode).unwrap())
                .collect(),
            ..Grant::default()
        }
    }

    fn models(granted: &[&str], declared: Option<&[&str]>) -> (Option<Vec<String>>, Vec<String>) {
        let mut m = manifest(vec![]);
        if let Some(declared) = declared {
            m.capabilities.llm = declared
                .iter()
                .map(|d| crate::manifest::LlmCapability {
                    model: d.to_string(),
                    reason: "r".into(),
                })
                .collect();
        }
        let g = Grant {
            models: granted.iter().map(|s| ModelName::new(s).unwrap()).collect(),
            ..Grant::default()
        };
        let caps = effective(&g, declared.map(|_| &m), &TenantId::default(), "p");
        let names = caps
            .models
            .map(|models| models.iter().map(|m| m.to_string()).collect());
        (names, caps.narrowed)
    }

    #[test]
    fn models_are_the_grant_cut_to_the_manifest() {
        let some = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        // No manifest: the grant decides; `*` means any.
        assert_eq!(models(&["fast"], None).0, some(&["fast"]));
        assert_eq!(models(&["*"], None).0, None);
        assert_eq!(models(&[], None).0, some(&[]));
        // A manifest that declares no model gets none, and says why.
        let (m, why) = models(&["fast", "smart"], Some(&[]));
        assert_eq!(m, some(&[]));
        assert_eq!(why.len(), 2);
        assert!(why[0].contains("model fast dropped"), "{why:?}");
        // Declared ∩ granted, with `*` on either side.
        assert_eq!(
            models(&["fast", "smart"], Some(&["smart"])).0,
            some(&["smart"])
        );
        assert_eq!(models(&["*"], Some(&["smart"])).0, some(&["smart"]));
        assert_eq!(models(&["fast"], Some(&["*"])).0, some(&["fast"]));
        assert_eq!(models(&["*"], Some(&["*"])).0, None);
    }

    #[test]
    fn policy_models_are_checked_and_merged() {
        let text = "version = 1\n[grant]\nmodels = [\"fast\"]\n[plugins.fs]\nmodels = [\"smart\", \"fast\"]\n";
        let policy = Policy::from_toml(text, Path::new(".")).unwrap();
        let (g, _) = policy.for_plugin("fs", "ab", None).unwrap();
        assert_eq!(
            g.models,
            vec![
                ModelName::new("fast").unwrap(),
                ModelName::new("smart").unwrap()
            ]
        );
        let err = Policy::from_toml(
            "version = 1\n[grant]\nmodels = [\"two words\"]\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(err.to_string().contains("`grant.models[0]`"), "{err}");
    }

    #[test]
    fn dir_flag_parsing() {
        let d = DirGrant::parse("./data::/data", DirMode::ReadOnly).unwrap();
        assert_eq!(d.host, PathBuf::from("./data"));
        assert_eq!(d.guest, "/data");
        let d = DirGrant::parse("/srv/x", DirMode::ReadWrite).unwrap();
        assert_eq!(d.guest, "/srv/x");
        assert!(DirGrant::parse("::/data", DirMode::ReadOnly).is_err());
        assert!(DirGrant::parse("./data::", DirMode::ReadOnly).is_err());
    }

    #[test]
    fn no_manifest_means_the_grant_decides() {
        let g = grant(&[("./a::/a", DirMode::ReadWrite)]);
        let caps = effective(&g, None, &TenantId::default(), "p");
        assert_eq!(caps.dirs, g.dirs);
        assert!(caps.narrowed.is_empty());
    }

    #[test]
    fn manifest_ceiling_drops_and_narrows() {
        let m = manifest(vec![
            ("/ro", DirMode::ReadOnly),
            ("/rw", DirMode::ReadWrite),
        ]);
        let g = grant(&[
            ("./a::/ro", DirMode::ReadWrite),
            ("./b::/rw", DirMode::ReadWrite),
            ("./c::/other", DirMode::ReadOnly),
        ]);
        let caps = effective(&g, Some(&m), &TenantId::default(), "p");
        assert_eq!(caps.dirs.len(), 2);
        assert_eq!(caps.dirs[0].mode, DirMode::ReadOnly);
        assert_eq!(caps.dirs[1].mode, DirMode::ReadWrite);
        assert_eq!(caps.narrowed.len(), 2);
        assert!(caps.narrowed[1].contains("declares no filesystem access to /other"));
        // A host granted to a plugin that declares no network access is
        // named as dropped too.
        let mut g = grant(&[]);
        g.allow_hosts = vec![HostPattern::parse("https://api.example.com").unwrap()];
        let caps = effective(&g, Some(&m), &TenantId::default(), "p");
        assert_eq!(caps.narrowed.len(), 1, "{:?}", caps.narrowed);
        assert!(
            caps.narrowed[0].contains(
                "host https://api.example.com dropped: plugin p declares no network access"
            ),
            "{:?}",
            caps.narrowed
        );
        // A manifest can never widen: ro grant under an rw ceiling stays ro.
        let m = manifest(vec![("*", DirMode::ReadWrite)]);
        let caps = effective(
            &grant(&[("./a::/x", DirMode::ReadOnly)]),
            Some(&m),
            &TenantId::default(),
            "p",
        );
        assert_eq!(caps.dirs[0].mode, DirMode::ReadOnly);
    }

    #[test]
    fn policy_file_resolves_relative_paths_and_merges_per_plugin() {
        let text = r#"
version = 1
[limits]
timeout-ms = 2000
[grant]
allow-hosts = ["https://example.com"]
[plugins.fs]
dirs = [{ host = "data", guest = "/data", mode = "rw" }]
limits = { timeout-ms = 9000 }
"#;
        let policy = Policy::from_toml(text, Path::new("/etc/warden")).unwrap();
        let (g, l) = policy.for_plugin("fs", "ab", None).unwrap();
        assert_eq!(g.dirs[0].host, PathBuf::from("/etc/warden/data"));
        assert_eq!(g.dirs[0].mode, DirMode::ReadWrite);
        assert_eq!(g.allow_hosts.len(), 1);
        assert_eq!(l.timeout_ms, Some(9000));
        let (g, l) = policy.for_plugin("other", "ab", None).unwrap();
        assert!(g.dirs.is_empty());
        assert_eq!(l.timeout_ms, Some(2000));
    }

    #[test]
    fn a_section_pinned_to_a_hash_applies_to_that_build_only() {
        let good = "a".repeat(64);
        let text = format!(
            "version = 1\n[plugins.fs]\nsha256 = \"{}\"\nallow-hosts = [\"https://example.com\"]\n",
            good.to_uppercase()
        );
        let policy = Policy::from_toml(&text, Path::new(".")).unwrap();
        let (g, _) = policy.for_plugin("fs", &good, None).unwrap();
        assert_eq!(g.allow_hosts.len(), 1);
        let err = policy
            .for_plugin("fs", &"b".repeat(64), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("the policy pins plugin fs to sha256 aaaa"),
            "{err}"
        );
        let err = Policy::from_toml(
            "version = 1\n[plugins.fs]\nsha256 = \"xyz\"\n",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "policy field `plugins.fs.sha256`: \"xyz\" is not a SHA-256; copy the 64 hex digits `warden plugin inspect` prints"
        );
    }

    #[test]
    fn policy_errors_name_the_field() {
        let cases = [
            ("", "policy field `version`: missing; add `version = 1`"),
            (
                "version = 1\n[grant]\nallow-hosts = [\"example.com\"]",
                "policy field `grant.allow-hosts[0]`: \"example.com\" has no scheme; write it as scheme://host:port, e.g. \"https://api.example.com\" or \"http://127.0.0.1:8080\"",
            ),
            (
                "version = 1\n[plugins.Bad]\n",
                "policy field `plugins.Bad`: \"Bad\" is not a plugin name; use the `name` from the plugin's manifest (see `warden plugin inspect`)",
            ),
            (
                "version = 1\n[limits]\nmemory-mib = 9000",
                "policy field `limits`: `memory-mib = 9000` is above the 4096 MiB a 32-bit wasm memory can address; use at most 4096; fix the value",
            ),
        ];
        for (text, expected) in cases {
            let err = Policy::from_toml(text, Path::new("."))
                .unwrap_err()
                .to_string();
            assert_eq!(err, expected);
        }
        let err = Policy::from_toml("version = 1\n[grnt]\n", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `grnt`"), "{err}");
    }

    #[test]
    fn tenant_ids() {
        assert!(TenantId::new("acme-1").is_ok());
        assert!(TenantId::new("").is_err());
        assert!(TenantId::new("../etc").is_err());
    }

    fn namespaces(
        granted: &[&str],
        declared: Option<&[(&str, DirMode)]>,
    ) -> (Vec<String>, Vec<String>) {
        let mut m = manifest(vec![]);
        if let Some(declared) = declared {
            m.capabilities.memory = declared
                .iter()
                .map(|(ns, mode)| crate::manifest::MemoryCapability {
                    namespace: ns.to_string(),
                    mode: *mode,
                    reason: "r".into(),
                })
                .collect();
        }
        let g = Grant {
            memory: granted
                .iter()
                .map(|s| NamespaceGrant::parse(s).unwrap())
                .collect(),
            ..Grant::default()
        };
        let caps = effective(&g, declared.map(|_| &m), &TenantId::default(), "p");
        (
            caps.memory.iter().map(ToString::to_string).collect(),
            caps.narrowed,
        )
    }

    #[test]
    fn namespace_grants_parse_and_are_cut_to_the_manifest() {
        use DirMode::{ReadOnly as R, ReadWrite as W};
        assert_eq!(NamespaceGrant::parse("notes").unwrap().mode, R);
        assert_eq!(NamespaceGrant::parse("notes:ro").unwrap().mode, R);
        assert_eq!(NamespaceGrant::parse("notes:rw").unwrap().mode, W);
        assert_eq!(NamespaceGrant::parse("*:rw").unwrap().namespace, "*");
        for bad in ["", "a b", "../x", ".hidden", "notes:wx", "a/b:rw"] {
            assert!(NamespaceGrant::parse(bad).is_err(), "{bad:?}");
        }
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(namespaces(&["notes:rw"], None).0, s(&["notes:rw"]));
        assert_eq!(
            namespaces(&["notes:rw"], Some(&[("notes", R)])).0,
            s(&["notes:ro"])
        );
        let (kept, why) = namespaces(&["notes:rw", "docs"], Some(&[("docs", W)]));
        assert_eq!(kept, s(&["docs:ro"]));
        assert!(why[0].contains("notes dropped"), "{why:?}");
        assert_eq!(
            namespaces(&["*:rw"], Some(&[("a", W), ("b", R)])).0,
            s(&["a:rw", "b:ro"])
        );
        assert_eq!(namespaces(&["x:rw"], Some(&[("*", W)])).0, s(&["x:rw"]));
        assert_eq!(namespaces(&["*"], Some(&[("*", W)])).0, s(&["*:ro"]));
    }

    #[test]
    fn policy_memory_is_checked() {
        let g = Policy::from_toml(
            "version = 1\n[grant]\nmemory = [\"notes:rw\", \"docs\"]\n",
            Path::new("."),
        )
        .unwrap()
        .grant;
        assert_eq!(g.memory.len(), 2);
        let err = Policy::from_toml(
            "version = 1\n[plugins.fs]\nmemory = [\"a:x\"]\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(err.to_string().contains("`plugins.fs.memory[0]`"), "{err}");
    }
}
