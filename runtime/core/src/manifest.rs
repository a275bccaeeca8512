//! The plugin manifest: what a plugin is and the most it may ever be granted.
//!
//! A manifest is TOML, written by the plugin's author, and travels inside the
//! `.wasm` as a custom section named [`SECTION`]. The Rust SDK embeds it at
//! build time (it lands in the component's core module); `warden plugin pack`
//! adds it to any component at the top level. Both places are read here.
//!
//! ```toml
//! manifest-version = 1
//! name = "fs"
//! version = "0.1.0"
//! kind = "tool"
//! description = "Read, write, list and search files in the directories you grant"
//!
//! [[capabilities.fs]]
//! path = "*"
//! mode = "rw"
//! reason = "works on whatever directories the operator mounts"
//!
//! [[capabilities.http]]
//! host = "https://*:443"
//! reason = "fetches pages the user asks for"
//!
//! [[capabilities.llm]]
//! model = "*"
//! reason = "summarises what it read"
//!
//! [[capabilities.memory]]
//! namespace = "*"
//! mode = "rw"
//! reason = "remembers what it read, in the namespaces the operator grants"
//!
//! [limits]
//! timeout-ms = 10000
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::field::FieldError;
use crate::grant::{DirMode, ModelName, is_namespace_pattern, is_valid_plugin_name};
use crate::limits::LimitSettings;
use crate::net::HostPattern;
use crate::sections;

/// Name of the custom section that carries the manifest.
pub const SECTION: &str = "warden:manifest";

/// The manifest format this warden reads.
pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    /// Format version; must be 1.
    pub manifest_version: u32,
    /// Lowercase letters, digits and `-`; names the plugin in policies,
    /// traces and qualified tool names.
    pub name: String,
    /// The plugin's own version (semver).
    pub version: String,
    pub kind: PluginKind,
    pub description: String,
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Defaults the plugin asks for; never above the operator's limits.
    #[serde(default)]
    pub limits: LimitSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    Tool,
    Role,
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginKind::Tool => "tool",
            PluginKind::Role => "role",
        })
    }
}

/// The most a plugin may be granted. Each entry says why it is needed, so an
/// operator can judge the request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fs: Vec<FsCapability>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpCapability>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub llm: Vec<LlmCapability>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory: Vec<MemoryCapability>,
}

/// Access to a directory as the guest sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsCapability {
    /// A guest path such as `/data`, or `*` for any directory the operator
    /// grants.
    pub path: String,
    pub mode: DirMode,
    pub reason: String,
}

/// Outbound HTTP to hosts matching a pattern (`scheme://host:port`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCapability {
    pub host: String,
    pub reason: String,
}

/// Asking a model through `warden:plugin/llm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmCapability {
    /// A model alias such as `planner`, or `*` for any the operator grants.
    pub model: String,
    pub reason: String,
}

/// Using a namespace of `warden:plugin/memory`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryCapability {
    /// A namespace name, or `*` for any the operator grants.
    pub namespace: String,
    pub mode: DirMode,
    pub reason: String,
}

/// A manifest that cannot be used, with the field at fault and the fix.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest is not valid TOML for warden: {0}")]
    Syntax(String),
    #[error("manifest is not UTF-8 text")]
    NotUtf8,
    #[error(
        "manifest field `manifest-version`: {0} is not a version this warden reads; set `manifest-version = 1` (or upgrade warden if the plugin needs a newer format)"
    )]
    Version(u32),
    #[error("manifest {0}")]
    Field(FieldError),
    #[error(
        "the plugin carries two different manifests in nested modules; rebuild it, or set one with `warden plugin pack`"
    )]
    Conflicting,
}

fn field_error(
    field: impl Into<String>,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> ManifestError {
    ManifestError::Field(FieldError::new(field, problem, fix))
}

impl Manifest {
    /// Parses and checks a manifest.
    pub fn from_toml(text: &str) -> Result<Manifest, ManifestError> {
        // Read the version first: a newer format should say "upgrade", not
        // "unknown field".
        #[derive(Deserialize)]
        struct VersionOnly {
            #[serde(rename = "manifest-version")]
            manifest_version: Option<u32>,
        }
        let probe: VersionOnly =
            toml::from_str(text).map_err(|e| ManifestError::Syntax(e.to_string()))?;
        match probe.manifest_version {
            None => {
                return Err(field_error(
                    "manifest-version",
                    "missing",
                    "add `manifest-version = 1` as the first line",
                ));
            }
            Some(MANIFEST_VERSION) => {}
            Some(other) => return Err(ManifestError::Version(other)),
        }
        let manifest: Manifest =
            toml::from_str(text).map_err(|e| ManifestError::Syntax(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Parses the bytes of a manifest custom section.
    pub fn from_section(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let text = std::str::from_utf8(bytes).map_err(|_| ManifestError::NotUtf8)?;
        Manifest::from_toml(text)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    fn validate(&self) -> Result<(), ManifestError> {
        if !is_valid_plugin_name(&self.name) {
            return Err(field_error(
                "name",
                format!("{:?} is not a valid plugin name", self.name),
                "use 1-64 lowercase letters, digits and '-', starting with a letter (e.g. \"my-tool\")",
            ));
        }
        if !is_semver(&self.version) {
            return Err(field_error(
                "version",
                format!("{:?} is not a semantic version", self.version),
                "use MAJOR.MINOR.PATCH, e.g. \"0.1.0\"",
            ));
        }
        if self.description.trim().is_empty() {
            return Err(field_error(
                "description",
                "is empty",
                "say in one sentence what the plugin does",
            ));
        }
        for (i, fs) in self.capabilities.fs.iter().enumerate() {
            let field = format!("capabilities.fs[{i}]");
            if fs.path != "*" && !fs.path.starts_with('/') {
                return Err(field_error(
                    format!("{field}.path"),
                    format!("{:?} is neither `*` nor an absolute guest path", fs.path),
                    "write the directory as the plugin sees it, e.g. \"/data\", or \"*\" for any granted directory",
                ));
            }
            if fs.path.split('/').any(|part| part == "..") {
                return Err(field_error(
                    format!("{field}.path"),
                    format!("{:?} contains `..`", fs.path),
                    "name the directory directly",
                ));
            }
            require_reason(&field, &fs.reason)?;
        }
        for (i, http) in self.capabilities.http.iter().enumerate() {
            let field = format!("capabilities.http[{i}]");
            if let Err(e) = HostPattern::parse(&http.host) {
                return Err(field_error(
                    format!("{field}.host"),
                    e.to_string(),
                    "write it as scheme://host:port, e.g. \"https://api.example.com:443\" or \"https://*.example.com\"",
                ));
            }
            require_reason(&field, &http.reason)?;
        }
        for (i, memory) in self.capabilities.memory.iter().enumerate() {
            let field = format!("capabilities.memory[{i}]");
            if !is_namespace_pattern(&memory.namespace) {
                return Err(field_error(
                    format!("{field}.namespace"),
                    format!("{:?} is not a namespace name", memory.namespace),
                    "use 1 to 64 letters, digits, '-', '_' or '.' (not first), or \"*\" for any the operator grants",
                ));
            }
            require_reason(&field, &memory.reason)?;
        }
        for (i, llm) in self.capabilities.llm.iter().enumerate() {
            let field = format!("capabilities.llm[{i}]");
            if ModelName::new(&llm.model).is_err() {
                return Err(field_error(
                    format!("{field}.model"),
                    format!("{:?} is not a model name", llm.model),
                    "name the alias the plugin asks for, e.g. \"planner\", or \"*\" for any the operator grants",
                ));
            }
            require_reason(&field, &llm.reason)?;
        }
        if let Err(e) = self.limits.check() {
            return Err(field_error("limits", e.to_string(), "fix the value"));
        }
        Ok(())
    }

    /// The manifest's host patterns, parsed (they were validated on load).
    pub fn http_patterns(&self) -> Vec<HostPattern> {
        self.capabilities
            .http
            .iter()
            .filter_map(|c| HostPattern::parse(&c.host).ok())
            .collect()
    }
}

fn require_reason(field: &str, reason: &str) -> Result<(), ManifestError> {
    if reason.trim().is_empty() {
        return Err(field_error(
            format!("{field}.reason"),
            "is empty",
            "say why the plugin needs this, so an operator can judge the request",
        ));
    }
    Ok(())
}

fn is_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// What the custom sections of a `.wasm` file say about it.
#[derive(Debug, Clone)]
pub struct SectionScan {
    /// Whether the file is a component (not a core module).
    pub is_component: bool,
    /// The manifest, if the file carries one.
    pub manifest: Option<Manifest>,
    /// Whether the file carries a signature (not yet checked: see
    /// [`crate::signature::signer`]).
    pub signed: bool,
}

/// Reads the manifest out of a component without compiling it. A manifest at
/// the top level (from `warden plugin pack`) wins over one in a nested core
/// module (from the SDK); the last top-level one wins over earlier ones.
pub fn scan(bytes: &[u8]) -> Result<SectionScan, ScanError> {
    use wasmparser::{Encoding, Parser, Payload};

    let mut top: Option<&[u8]> = None;
    let mut nested: Option<&[u8]> = None;
    let mut is_component = false;
    let mut signed = false;
    // Depth of the module or component each payload belongs to; the outermost
    // is 1 once its header is read.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| ScanError::Invalid(e.to_string()))?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 {
                    is_component = encoding == Encoding::Component;
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::CustomSection(section)
                if depth <= 1 && section.name() == sections::SIGNATURE =>
            {
                signed = true;
            }
            Payload::CustomSection(section) if section.name() == SECTION => {
                let data = section.data();
                if depth <= 1 {
                    top = Some(data);
                } else {
                    match nested {
                        Some(prev) if prev != data => {
                            return Err(ScanError::Manifest(ManifestError::Conflicting));
                        }
                        _ => nested = Some(data),
                    }
                }
            }
            _ => {}
        }
    }
    let manifest = top
        .or(nested)
        .map(Manifest::from_section)
        .transpose()
        .map_err(ScanError::Manifest)?;
    Ok(SectionScan {
        is_component,
        manifest,
        signed,
    })
}

/// Why a `.wasm` file could not be scanned.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ScanError {
    #[error("not a valid WebAssembly file: {0}")]
    Invalid(String),
    #[error(transparent)]
    Manifest(ManifestError),
}

/// Returns `component` with `manifest` as its top-level manifest section,
/// replacing any earlier top-level one. A signature goes too: it signed
/// other bytes.
pub fn pack(component: &[u8], manifest: &Manifest) -> Result<Vec<u8>, ScanError> {
    let (mut out, _) = sections::without_top_level(component, &[SECTION, sections::SIGNATURE])
        .map_err(ScanError::Invalid)?;
    let section = wasm_encoder::CustomSection {
        name: SECTION.into(),
        data: manifest.to_toml().into_bytes().into(),
    };
    wasm_encoder::Section::append_to(&section, &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
manifest-version = 1
name = "fs"
version = "0.1.0"
kind = "tool"
description = "files"

[[capabilities.fs]]
path = "*"
mode = "rw"
reason = "works on granted dirs"

[[capabilities.http]]
host = "https://*.example.com"
reason = "docs"

[limits]
timeout-ms = 1000
"#;

    #[test]
    fn parses_a_good_manifest() {
        let m = Manifest::from_toml(GOOD).unwrap();
        assert_eq!(m.name, "fs");
        assert_eq!(m.kind, PluginKind::Tool);
        assert_eq!(m.capabilities.fs[0].mode, DirMode::ReadWrite);
        assert_eq!(m.limits.timeout_ms, Some(1000));
        // Round-trips through the section form.
        let again = Manifest::from_section(m.to_toml().as_bytes()).unwrap();
        assert_eq!(again, m);
    }

    /// Bad inputs against the exact text the user sees.
    #[test]
    fn errors_name_the_field_and_the_fix() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "name = \"fs\"",
                "name = \"Files Tool\"",
                "manifest field `name`: \"Files Tool\" is not a valid plugin name; use 1-64 lowercase letters, digits and '-', starting with a letter (e.g. \"my-tool\")",
            ),
            (
                "version = \"0.1.0\"",
                "version = \"one\"",
                "manifest field `version`: \"one\" is not a semantic version; use MAJOR.MINOR.PATCH, e.g. \"0.1.0\"",
            ),
            (
                "manifest-version = 1",
                "manifest-version = 2",
                "manifest field `manifest-version`: 2 is not a version this warden reads; set `manifest-version = 1` (or upgrade warden if the plugin needs a newer format)",
            ),
            (
                "path = \"*\"",
                "path = \"data\"",
                "manifest field `capabilities.fs[0].path`: \"data\" is neither `*` nor an absolute guest path; write the directory as the plugin sees it, e.g. \"/data\", or \"*\" for any granted directory",
            ),
            (
                "reason = \"docs\"",
                "reason = \" \"",
                "manifest field `capabilities.http[0].reason`: is empty; say why the plugin needs this, so an operator can judge the request",
            ),
            (
                "host = \"https://*.example.com\"",
                "host = \"example.com\"",
                "manifest field `capabilities.http[0].host`: \"example.com\" has no scheme; write it as scheme://host:port, e.g. \"https://api.example.com:443\" or \"https://*.example.com\"",
            ),
            (
                "timeout-ms = 1000",
                "timeout-ms = 0",
                "manifest field `limits`: `timeout-ms` must be greater than 0; fix the value",
            ),
        ];
        for (from, to, expected) in cases {
            let text = GOOD.replacen(from, to, 1);
            let err = Manifest::from_toml(&text).unwrap_err().to_string();
            assert_eq!(&err, expected, "after replacing {from:?} with {to:?}");
        }
    }

    #[test]
    fn unknown_fields_and_missing_version_are_refused() {
        let err = Manifest::from_toml(&GOOD.replacen("kind = \"tool\"", "knd = \"tool\"", 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `knd`"), "{err}");
        let err = Manifest::from_toml(&GOOD.replacen("manifest-version = 1", "", 1))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "manifest field `manifest-version`: missing; add `manifest-version = 1` as the first line"
        );
    }

    #[test]
    fn plugin_names() {
        assert!(is_valid_plugin_name("fs"));
        assert!(is_valid_plugin_name("text-stats2"));
        assert!(!is_valid_plugin_name(""));
        assert!(!is_valid_plugin_name("2fs"));
        assert!(!is_valid_plugin_name("Fs"));
        assert!(!is_valid_plugin_name("a_b"));
        assert!(!is_valid_plugin_name(&"a".repeat(65)));
    }
}
