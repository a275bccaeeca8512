//! What an operator can grant a plugin, as typed values checked once where
//! they are read (CLI flags, policy files, workflows): the tenant a call runs
//! for, directories, memory namespaces and model names, and the rules for
//! the names they use.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::net::HostPattern;

/// The tenant a call runs for. Compiled plugins are shared between tenants;
/// data and state never are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub fn new(id: &str) -> Result<TenantId, GrantError> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(TenantId(id.to_string()))
        } else {
            Err(GrantError::Tenant(id.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TenantId {
    fn default() -> Self {
        TenantId("default".into())
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TenantId {
    type Error = GrantError;
    fn try_from(id: String) -> Result<Self, GrantError> {
        TenantId::new(&id)
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> String {
        id.0
    }
}

/// Read-only or read-write access to a directory or a memory namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DirMode {
    #[serde(rename = "ro")]
    ReadOnly,
    #[serde(rename = "rw")]
    ReadWrite,
}

impl fmt::Display for DirMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DirMode::ReadOnly => "ro",
            DirMode::ReadWrite => "rw",
        })
    }
}

/// A host directory made visible to the guest at `guest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    pub host: PathBuf,
    pub guest: String,
    pub mode: DirMode,
}

impl DirGrant {
    /// Parses the CLI form `HOST[::GUEST]`; the guest path defaults to the
    /// host path as written.
    pub fn parse(spec: &str, mode: DirMode) -> Result<DirGrant, GrantError> {
        let (host, guest) = match spec.split_once("::") {
            Some((host, guest)) => (host, guest),
            None => (spec, spec),
        };
        if host.is_empty() || guest.is_empty() {
            return Err(GrantError::DirSpec(spec.to_string()));
        }
        Ok(DirGrant {
            host: PathBuf::from(host),
            guest: guest.to_string(),
            mode,
        })
    }
}

/// A memory namespace granted to a plugin, read-only or read-write. `*`
/// stands for every namespace of the call's tenant. Written `NS`, `NS:ro`
/// or `NS:rw` everywhere: `--memory-ns`, a policy file's and a workflow's
/// `memory = [...]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NamespaceGrant {
    pub namespace: String,
    pub mode: DirMode,
}

impl NamespaceGrant {
    /// Parses `NS`, `NS:ro` or `NS:rw`.
    pub fn parse(spec: &str) -> Result<NamespaceGrant, GrantError> {
        let invalid = |problem: String| GrantError::Namespace {
            spec: spec.to_string(),
            problem,
        };
        let (namespace, mode) = match spec.rsplit_once(':') {
            Some((ns, "rw")) => (ns, DirMode::ReadWrite),
            Some((ns, "ro")) => (ns, DirMode::ReadOnly),
            Some((_, other)) => {
                return Err(invalid(format!(
                    "{other:?} is not an access mode; write NS (read-only), NS:ro or NS:rw"
                )));
            }
            None => (spec, DirMode::ReadOnly),
        };
        if !is_namespace_pattern(namespace) {
            return Err(invalid(format!(
                "{namespace:?} is not a namespace name (1 to 64 letters, digits, '-', '_' or '.', not first) or \"*\""
            )));
        }
        Ok(NamespaceGrant {
            namespace: namespace.to_string(),
            mode,
        })
    }

    /// Whether this grant covers `namespace`.
    pub fn covers(&self, namespace: &str) -> bool {
        self.namespace == "*" || self.namespace == namespace
    }
}

impl fmt::Display for NamespaceGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.namespace, self.mode)
    }
}

impl TryFrom<String> for NamespaceGrant {
    type Error = GrantError;
    fn try_from(spec: String) -> Result<Self, GrantError> {
        NamespaceGrant::parse(&spec)
    }
}

impl From<NamespaceGrant> for String {
    fn from(grant: NamespaceGrant) -> String {
        grant.to_string()
    }
}

/// A model a plugin may ask for: an alias from the LLM config, a
/// `provider/model` name, or `*` for any. The one rule for model names,
/// wherever they are written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ModelName(String);

impl ModelName {
    pub fn new(name: &str) -> Result<ModelName, GrantError> {
        let ok = !name.is_empty()
            && name.len() <= 256
            && !name.chars().any(|c| c.is_whitespace() || c.is_control());
        if ok {
            Ok(ModelName(name.to_string()))
        } else {
            Err(GrantError::Model(name.to_string()))
        }
    }

    /// `*`: any model the router knows.
    pub fn any() -> ModelName {
        ModelName("*".into())
    }

    pub fn is_any(&self) -> bool {
        self.0 == "*"
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ModelName {
    type Error = GrantError;
    fn try_from(name: String) -> Result<Self, GrantError> {
        ModelName::new(&name)
    }
}

impl From<ModelName> for String {
    fn from(name: ModelName) -> String {
        name.0
    }
}

/// A namespace name, or `*`.
pub fn is_namespace_pattern(name: &str) -> bool {
    name == "*" || warden_api::memory::is_valid_name(name)
}

/// Whether `name` is a usable plugin name: 1–64 of `a-z`, `0-9`, `-`,
/// starting with a letter.
pub fn is_valid_plugin_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 64
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
}

/// What the operator grants a plugin. Only ever built by the host, from CLI
/// flags, policy files and workflows: nothing a guest says reaches it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    pub dirs: Vec<DirGrant>,
    pub allow_hosts: Vec<HostPattern>,
    /// Models the plugin may ask through `warden:plugin/llm`.
    pub models: Vec<ModelName>,
    /// Memory namespaces (`warden:plugin/memory`).
    pub memory: Vec<NamespaceGrant>,
}

impl Grant {
    pub fn extend(&mut self, other: &Grant) {
        self.dirs.extend(other.dirs.iter().cloned());
        self.allow_hosts.extend(other.allow_hosts.iter().cloned());
        for model in &other.models {
            if !self.models.contains(model) {
                self.models.push(model.clone());
            }
        }
        self.memory.extend(other.memory.iter().cloned());
    }
}

/// A grant written wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("{0:?} is not a directory grant; write HOST or HOST::GUEST, e.g. ./data::/data")]
    DirSpec(String),
    #[error("{0:?} is not a tenant id; use 1-64 letters, digits, '-' or '_'")]
    Tenant(String),
    #[error("{spec:?}: {problem}")]
    Namespace { spec: String, problem: String },
    #[error(
        "{0:?} is not a model name; name an alias from the LLM config, a provider/model, or \"*\""
    )]
    Model(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_grants_parse_and_print_alike() {
        let g = NamespaceGrant::parse("notes:rw").unwrap();
        assert_eq!(g.mode, DirMode::ReadWrite);
        assert_eq!(g.to_string(), "notes:rw");
        assert_eq!(
            NamespaceGrant::parse("notes").unwrap().mode,
            DirMode::ReadOnly
        );
        assert!(NamespaceGrant::parse("*").unwrap().covers("anything"));
        for bad in ["", "a:rx", ".hidden", "a b", "../x"] {
            assert!(NamespaceGrant::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn model_names_have_one_rule() {
        assert!(ModelName::new("fast").is_ok());
        assert!(ModelName::new("openai/gpt-4o-mini").is_ok());
        assert!(ModelName::new("*").unwrap().is_any());
        for bad in ["", " ", "a b", "x\n"] {
            assert_eq!(ModelName::new(bad), Err(GrantError::Model(bad.into())));
        }
    }

    #[test]
    fn typed_grants_deserialize_through_their_rules() {
        #[derive(Deserialize)]
        struct Doc {
            memory: Vec<NamespaceGrant>,
            model: ModelName,
        }
        let doc: Doc = toml::from_str("memory = [\"a:rw\"]\nmodel = \"fast\"").unwrap();
        assert_eq!(doc.memory[0].mode, DirMode::ReadWrite);
        assert_eq!(doc.model.as_str(), "fast");
        let bad = toml::from_str::<Doc>("memory = [\"a:xx\"]\nmodel = \"fast\"")
            .err()
            .unwrap()
            .to_string();
        assert!(bad.contains("not an access mode"), "{bad}");
    }
}
