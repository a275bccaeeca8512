//! The grant and limit flags shared by every command that runs a plugin.

use std::path::PathBuf;

use clap::Args;
use warden_core::{
    CallOptions, CompiledPlugin, DirGrant, DirMode, Grant, HostPattern, LimitSettings, ModelName,
    NamespaceGrant, Policy, TenantId,
};

use crate::exit::Failure;

#[derive(Args, Debug, Clone, Default)]
pub struct SandboxArgs {
    /// Grant read-only access to a host directory, seen by the plugin at
    /// GUEST (default: the host path as written). Repeatable.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    pub dirs: Vec<String>,

    /// Grant read-write access to a host directory. Repeatable.
    #[arg(long = "dir-rw", value_name = "HOST[::GUEST]")]
    pub dirs_rw: Vec<String>,

    /// Allow outbound HTTP to URLs matching scheme://host:port (`*`
    /// wildcards; loopback and private addresses only when named
    /// literally). Repeatable.
    #[arg(long = "allow-host", value_name = "PATTERN")]
    pub allow_hosts: Vec<String>,

    /// Let the plugin ask this model alias (from the LLM config) through
    /// `warden:plugin/llm`; `*` for any. Repeatable.
    #[arg(long = "allow-model", value_name = "ALIAS")]
    pub allow_models: Vec<String>,

    /// Let the plugin use this memory namespace through
    /// `warden:plugin/memory`: NS to read and search, NS:rw to write too;
    /// `*` for every namespace of the tenant. Repeatable.
    #[arg(long = "memory-ns", value_name = "NS[:rw]")]
    pub memory_ns: Vec<String>,

    /// Fuel budget (about one unit per wasm instruction). `warden exec`
    /// also takes `none` (or 0): no fuel metering, so the code runs faster
    /// and only --timeout stops it.
    #[arg(long, value_name = "N", value_parser = parse_fuel)]
    pub fuel: Option<Fuel>,

    /// Linear-memory cap in MiB.
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u64>,

    /// Wall-clock deadline in milliseconds.
    #[arg(long, value_name = "MS")]
    pub timeout: Option<u64>,

    /// Cap on the result (and on any one piece of data the plugin hands the
    /// host), in KiB.
    #[arg(long, value_name = "KIB")]
    pub output_kib: Option<u64>,

    /// Policy file (TOML) with limits and grants; flags add to it.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Tenant the call runs for.
    #[arg(long, value_name = "ID", default_value = "default")]
    pub tenant: String,
}

/// What `--fuel` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fuel {
    Budget(u64),
    /// `none` or `0`: no metering at all.
    Unmetered,
}

fn parse_fuel(text: &str) -> Result<Fuel, String> {
    match text {
        "none" | "0" => Ok(Fuel::Unmetered),
        _ => text.parse().map(Fuel::Budget).map_err(|_| {
            format!("{text:?} is not a number of fuel units; give one, e.g. 1000000000, or `none` (warden exec only)")
        }),
    }
}

impl SandboxArgs {
    /// Whether the engine should meter fuel: not when `--fuel none` asks
    /// it not to.
    pub fn meters_fuel(&self) -> bool {
        self.fuel != Some(Fuel::Unmetered)
    }

    /// The operator's grant and limits for one call of `plugin`.
    pub fn call_options(&self, plugin: &CompiledPlugin) -> Result<CallOptions, Failure> {
        self.options(plugin, self.policy()?)
    }

    /// As [`SandboxArgs::call_options`], for a language runtime from the
    /// operator's runtime directory: trusted as the binary is, so a policy
    /// that requires signed plugins does not refuse it.
    pub fn runtime_options(&self, runtime: &CompiledPlugin) -> Result<CallOptions, Failure> {
        let policy = Policy {
            require_signature: false,
            ..self.policy()?
        };
        self.options(runtime, policy)
    }

    /// The `--policy` file, or none.
    fn policy(&self) -> Result<Policy, Failure> {
        match &self.policy {
            Some(path) => Policy::load(path).map_err(|e| Failure::bad_input(e.to_string())),
            None => Ok(Policy::default()),
        }
    }

    fn options(&self, plugin: &CompiledPlugin, policy: Policy) -> Result<CallOptions, Failure> {
        let (mut grant, policy_limits) = policy
            .for_plugin(plugin.name(), plugin.sha256(), plugin.signer())
            .map_err(|e| Failure::bad_input(e.to_string()))?;
        grant.extend(&self.grant()?);
        let fuel = match self.fuel {
            Some(Fuel::Budget(units)) => Some(units),
            Some(Fuel::Unmetered) if plugin.meters_fuel() => {
                return Err(Failure::bad_input(
                    "--fuel none turns fuel metering off, which only `warden exec` does; give this command a budget, e.g. --fuel 1000000000",
                ));
            }
            Some(Fuel::Unmetered) | None => None,
        };
        let explicit = LimitSettings {
            fuel,
            timeout_ms: self.timeout,
            memory_mib: self.memory,
            output_kib: self.output_kib,
        };
        let limits = plugin
            .limits(policy_limits, explicit)
            .map_err(|e| Failure::bad_input(format!("bad limit: {e}")))?;
        let tenant = TenantId::new(&self.tenant)
            .map_err(|e| Failure::bad_input(format!("--tenant: {e}")))?;
        Ok(CallOptions {
            tenant,
            grant,
            limits,
            ..CallOptions::default()
        })
    }

    fn grant(&self) -> Result<Grant, Failure> {
        let mut grant = Grant::default();
        for (specs, mode, flag) in [
            (&self.dirs, DirMode::ReadOnly, "--dir"),
            (&self.dirs_rw, DirMode::ReadWrite, "--dir-rw"),
        ] {
            for spec in specs {
                let dir = DirGrant::parse(spec, mode)
                    .map_err(|e| Failure::bad_input(format!("{flag}: {e}")))?;
                if !dir.host.is_dir() {
                    return Err(Failure::bad_input(format!(
                        "{flag} {spec}: {} is not a directory on this host",
                        dir.host.display()
                    )));
                }
                grant.dirs.push(dir);
            }
        }
        for pattern in &self.allow_hosts {
            let pattern = HostPattern::parse(pattern).map_err(|e| {
                Failure::bad_input(format!(
                    "--allow-host: {e}; write it as scheme://host:port, e.g. https://api.example.com or http://127.0.0.1:8080"
                ))
            })?;
            grant.allow_hosts.push(pattern);
        }
        for model in &self.allow_models {
            let model = ModelName::new(model)
                .map_err(|e| Failure::bad_input(format!("--allow-model {e}")))?;
            grant.models.push(model);
        }
        for spec in &self.memory_ns {
            let ns = NamespaceGrant::parse(spec)
                .map_err(|e| Failure::bad_input(format!("--memory-ns {e}")))?;
            grant.memory.push(ns);
        }
        Ok(grant)
    }
}
