//! `warden serve`, and the operator's commands on its control state:
//! `warden tenants`, `warden keys`, `warden audit`. Each is a thin layer over
//! `warden_server::Operator`, which the admin API uses too.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use warden_server::memories::CountedMemories;
use warden_server::operator::{Actor, KeyInfo, KeySpec, NewTenant, OPERATOR_LOG};
use warden_server::tenant::{Quotas, TenantRecord};
use warden_server::{Hosted, Operator, OperatorError, Scope, Server};

use crate::exit::Failure;
use crate::plugin_files;

#[derive(Args)]
pub struct ServeArgs {
    /// The address to serve HTTP on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Where to find plugins (every `.wasm` file), before
    /// $WARDEN_PLUGIN_DIR, DATA_DIR/plugins and target/plugins. Repeatable.
    #[arg(long, value_name = "DIR")]
    plugin_dir: Vec<PathBuf>,

    /// Sandboxes that may run at once across all tenants.
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_concurrent: u32,

    /// This node's name in a cluster's logs (default: the host name and
    /// the listening port).
    #[arg(long, value_name = "NAME")]
    node_id: Option<String>,

    /// In a cluster: how long a task may go without word from its node
    /// before another node takes it over (30s, 2m).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = warden_server::key::parse_duration)]
    ack_wait: i64,

    /// In a cluster: copies JetStream keeps of each stream and bucket (3
    /// on a three-server NATS cluster).
    #[arg(long, value_name = "N", default_value_t = 1)]
    replicas: usize,
}

#[derive(Subcommand)]
pub enum TenantsCommand {
    /// Add a tenant.
    Add {
        name: String,
        /// A policy file (TOML): the tenant's ceiling. Its directories are
        /// relative to the tenant's files, DATA_DIR/tenants/NAME/files.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// The plugins it may use, by name (default: all).
        #[arg(long, value_name = "NAME,…", value_delimiter = ',')]
        plugins: Vec<String>,
        /// Sustained requests per second.
        #[arg(long, value_name = "N")]
        rps: Option<u32>,
        /// Requests that may arrive at once.
        #[arg(long, value_name = "N")]
        burst: Option<u32>,
        /// Sandboxes running at once.
        #[arg(long, value_name = "N")]
        concurrency: Option<u32>,
        /// Calls that may wait for a sandbox; more are refused.
        #[arg(long, value_name = "N")]
        queue: Option<u32>,
        /// Runs going on at once.
        #[arg(long, value_name = "N")]
        runs: Option<u32>,
        /// Fuel its calls, exec runs and run tasks may use per UTC day.
        #[arg(long, value_name = "N")]
        fuel_per_day: Option<u64>,
        /// Model tokens its runs may use per UTC day.
        #[arg(long, value_name = "N")]
        tokens_per_day: Option<u64>,
        /// US dollars its runs' model calls may cost per UTC day.
        #[arg(long, value_name = "DOLLARS")]
        cost_per_day: Option<f64>,
        /// Memory entries it may hold, all namespaces together.
        #[arg(long, value_name = "N")]
        memory_entries: Option<u64>,
        /// MiB its files and run workspaces may take on disk.
        #[arg(long, value_name = "MIB")]
        workspace_mib: Option<u64>,
    },
    /// List the tenants.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one tenant.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a tenant: its keys are revoked and its data moved aside.
    Remove { name: String },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (the only time it is shown).
    Create {
        /// The tenant the key acts for.
        #[arg(long, value_name = "NAME", required_unless_present = "admin")]
        tenant: Option<String>,
        /// What the key may do: tools:call, exec, runs:read, runs:write,
        /// memory:read, memory:write, audit:read.
        #[arg(
            long,
            value_name = "SCOPE,…",
            value_delimiter = ',',
            required_unless_present = "admin"
        )]
        scope: Vec<Scope>,
        /// An operator key (scope admin, no tenant) for the admin API.
        #[arg(long, conflicts_with_all = ["tenant", "scope"])]
        admin: bool,
        /// Lifetime: 30d, 12h, 90m, 3600s.
        #[arg(long, value_name = "DURATION", value_parser = warden_server::key::parse_duration)]
        expires: Option<i64>,
        /// A note to tell keys apart.
        #[arg(long)]
        label: Option<String>,
    },
    /// List keys (never their secrets).
    List {
        #[arg(long, value_name = "NAME")]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id (the part after `wdn_`, before the next `_`).
    Revoke { id: String },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check tenants' audit logs: every entry present, in order, unedited.
    Verify {
        /// Only this tenant (default: every tenant, and the operator log).
        #[arg(long, value_name = "NAME")]
        tenant: Option<String>,
    },
    /// Write a tenant's audit log as JSON lines to stdout.
    Export {
        #[arg(long, value_name = "NAME")]
        tenant: String,
    },
}

async fn operator(dirs: &crate::Dirs) -> Result<Operator, Failure> {
    Ok(open(dirs, 1).await?.0)
}

/// The operator over the control state (SQLite in the data dir, or the
/// cluster's bucket), and the cluster's connection if there is one.
async fn open(
    dirs: &crate::Dirs,
    replicas: usize,
) -> Result<(Operator, Option<warden_cluster::Nats>), Failure> {
    let data = dirs.data.as_deref().ok_or_else(|| {
        Failure::bad_input(
            "the server's state lives in the data dir: set --data-dir or $WARDEN_DATA_DIR",
        )
    })?;
    let Some(url) = &dirs.cluster else {
        return Ok((Operator::open(data).map_err(failure)?, None));
    };
    let address = url.clone();
    let nats = tokio::task::spawn_blocking(move || warden_cluster::Nats::connect(&address))
        .await
        .map_err(Failure::internal)?
        .map_err(|e| Failure::bad_input(format!("--cluster {url}: {e}")))?;
    let shared = |e: warden_cluster::ClusterError| {
        Failure::bad_input(format!(
            "--cluster {url}: cannot set up the cluster's streams: {e}"
        ))
    };
    warden_cluster::journal::ensure_stream(&nats, replicas)
        .await
        .map_err(shared)?;
    warden_cluster::work::ensure_dead_letters(&nats, replicas)
        .await
        .map_err(shared)?;
    let operator = Operator::open_cluster(data, &nats, replicas)
        .await
        .map_err(failure)?;
    Ok((operator, Some(nats)))
}

fn failure(e: OperatorError) -> Failure {
    match e {
        OperatorError::Internal(m) => Failure::internal(m),
        other => Failure::bad_input(other.to_string()),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(Failure::internal)?;
    println!("{text}");
    Ok(())
}

pub async fn serve(args: ServeArgs, dirs: &crate::Dirs) -> Result<ExitCode, Failure> {
    let (operator, nats) = open(dirs, args.replicas).await?;
    let operator = Arc::new(operator);
    let data = operator.data_dir().to_path_buf();
    // Every way a tenant reaches memory (the API, MCP, its runs' roles)
    // counts against its memory-entries quota.
    let memory = dirs.memory()?.map(|store| {
        Arc::new(CountedMemories::new(Arc::new(store), operator.clone()))
            as Arc<dyn warden_api::memory::Memories>
    });
    let engine = dirs.engine_with_memory(
        crate::Capacity::serving(args.max_concurrent),
        memory.clone(),
    )?;
    let mut plugins = Vec::new();
    let mut names = HashSet::new();
    let plugin_dirs = plugin_files::plugin_dirs(&args.plugin_dir, &data);
    for dir in &plugin_dirs {
        if !dir.is_dir() {
            continue;
        }
        for file in plugin_files::wasm_files(dir)? {
            let plugin = engine.load_file(&file)?;
            // The first directory with a plugin of that name wins.
            if names.insert(plugin.name().to_string()) {
                tracing::info!(plugin = plugin.name(), file = %file.display(), "loaded");
                plugins.push(plugin);
            }
        }
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Failure::bad_input(format!("cannot listen on {}: {e}", args.listen)))?;
    let local = listener.local_addr().unwrap_or(args.listen);
    if !local.ip().is_loopback() {
        eprintln!(
            "warden: warning: serving on {local}, which is not a loopback address; put TLS in front of it"
        );
    }
    let tenants = operator.tenants().await.map_err(failure)?.len();
    let cluster = nats.map(|nats| {
        let node = args.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("{}:{}", host.trim(), local.port())
        });
        warden_server::cluster::ClusterConfig {
            nats,
            node,
            queue: warden_cluster::work::QueueSettings {
                ack_wait: std::time::Duration::from_secs(args.ack_wait.max(1) as u64),
                replicas: args.replicas.max(1),
                ..Default::default()
            },
            slots: args.max_concurrent.max(1) as usize,
        }
    });
    match &cluster {
        Some(cluster) => eprintln!(
            "warden: node {} of the cluster at {}: serving {} plugin(s) for {tenants} tenant(s) at http://{local}",
            cluster.node,
            dirs.cluster.as_deref().unwrap_or_default(),
            plugins.len()
        ),
        None => eprintln!(
            "warden: serving {} plugin(s) for {tenants} tenant(s) at http://{local}",
            plugins.len()
        ),
    }
    let hosted = Hosted {
        engine,
        plugins,
        plugin_dirs,
        memory,
        cluster,
    };
    Server::new(operator, hosted)
        .serve(listener, crate::shutdown::signal())
        .await
        .map_err(|e| Failure::internal(e.to_string()))?;
    Ok(ExitCode::SUCCESS)
}

pub async fn tenants(cmd: TenantsCommand, dirs: &crate::Dirs) -> Result<ExitCode, Failure> {
    let operator = operator(dirs).await?;
    match cmd {
        TenantsCommand::Add {
            name,
            policy,
            plugins,
            rps,
            burst,
            concurrency,
            queue,
            runs,
            fuel_per_day,
            tokens_per_day,
            cost_per_day,
            memory_entries,
            workspace_mib,
        } => {
            let policy = match &policy {
                Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                    Failure::bad_input(format!("--policy {}: {e}", path.display()))
                })?),
                None => None,
            };
            let defaults = Quotas::default();
            let quotas = Quotas {
                requests_per_second: rps.unwrap_or(defaults.requests_per_second),
                burst: burst.unwrap_or(defaults.burst),
                concurrent_calls: concurrency.unwrap_or(defaults.concurrent_calls),
                queued_calls: queue.unwrap_or(defaults.queued_calls),
                runs_in_flight: runs.unwrap_or(defaults.runs_in_flight),
                fuel_per_day,
                tokens_per_day,
                cost_per_day,
                memory_entries,
                workspace_mib,
            };
            let record = operator
                .add_tenant(
                    NewTenant {
                        name,
                        policy,
                        plugins,
                        quotas: Some(quotas),
                    },
                    Actor::Shell,
                )
                .await
                .map_err(failure)?;
            eprintln!(
                "warden: added tenant {}; its data lives in {}",
                record.name,
                warden_server::tenant::root(operator.data_dir(), &record.name).display()
            );
        }
        TenantsCommand::List { json: as_json } => {
            let tenants = operator.tenants().await.map_err(failure)?;
            if as_json {
                json(&tenants)?;
            } else {
                for t in &tenants {
                    println!("{}", summary(t));
                }
            }
        }
        TenantsCommand::Show {
            name,
            json: as_json,
        } => {
            let tenant = operator.tenant(&name).await.map_err(failure)?;
            if as_json {
                json(&tenant)?;
            } else {
                println!("{}", summary(&tenant));
                let keys = operator.keys(Some(&name)).await.map_err(failure)?;
                for key in keys {
                    println!("  key {}", key_line(&key));
                }
                if let Some(policy) = &tenant.policy {
                    println!("  policy:");
                    for line in policy.lines() {
                        println!("    {line}");
                    }
                }
            }
        }
        TenantsCommand::Remove { name } => {
            // Its memories first (dropped from a shared bucket): a store that
            // does not answer leaves the tenant to be removed again.
            if operator.tenant(&name).await.is_ok()
                && let Some(memory) = dirs.memory()?
            {
                memory.remove_tenant(&name).await.map_err(|e| {
                    Failure::internal(format!("tenant {name} stays: its memories: {e}"))
                })?;
            }
            let moved = operator
                .remove_tenant(&name, Actor::Shell)
                .await
                .map_err(failure)?;
            eprintln!(
                "warden: removed tenant {name}; its keys are revoked and its data is in {}",
                moved.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(t: &TenantRecord) -> String {
    let q = &t.quotas;
    let mut extra = String::new();
    if let Some(fuel) = q.fuel_per_day {
        extra.push_str(&format!(", {fuel} fuel/day"));
    }
    if let Some(tokens) = q.tokens_per_day {
        extra.push_str(&format!(", {tokens} tokens/day"));
    }
    if let Some(cost) = q.cost_per_day {
        extra.push_str(&format!(", ${cost}/day"));
    }
    if let Some(entries) = q.memory_entries {
        extra.push_str(&format!(", {entries} memories"));
    }
    if let Some(mib) = q.workspace_mib {
        extra.push_str(&format!(", {mib} MiB of files"));
    }
    format!(
        "{}  plugins: {}  quotas: {} req/s (burst {}), {} calls at once (+{} queued), {} runs{extra}{}",
        t.name,
        t.plugins.join(","),
        q.requests_per_second,
        q.burst,
        q.concurrent_calls,
        q.queued_calls,
        q.runs_in_flight,
        if t.policy.is_some() {
            "  policy: yes"
        } else {
            ""
        }
    )
}

fn key_line(k: &KeyInfo) -> String {
    let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
    let state = match (k.revoked, k.expires) {
        (Some(at), _) => format!("revoked {}", utc(at)),
        (None, Some(at)) if at <= warden_server::operator::now() => format!("expired {}", utc(at)),
        (None, Some(at)) => format!("expires {}", utc(at)),
        (None, None) => "no expiry".into(),
    };
    format!(
        "{}  {}  {}  {}{}",
        k.id,
        k.tenant.as_deref().unwrap_or("(operator)"),
        scopes.join(","),
        state,
        k.label
            .as_deref()
            .map(|l| format!("  {l}"))
            .unwrap_or_default()
    )
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM UTC`.
fn utc(secs: i64) -> String {
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = warden_run::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3_600,
        rest % 3_600 / 60
    )
}

pub async fn keys(cmd: KeysCommand, dirs: &crate::Dirs) -> Result<ExitCode, Failure> {
    let operator = operator(dirs).await?;
    match cmd {
        KeysCommand::Create {
            tenant,
            scope,
            admin,
            expires,
            label,
        } => {
            let spec = KeySpec {
                tenant: if admin { None } else { tenant },
                scopes: if admin { vec![Scope::Admin] } else { scope },
                expires_in: expires,
                label,
            };
            let (key, info) = operator
                .create_key(spec, Actor::Shell)
                .await
                .map_err(failure)?;
            eprintln!(
                "warden: created key {} for {}; it is shown once, here:",
                info.id,
                info.tenant.as_deref().unwrap_or("the operator")
            );
            println!("{}", key.token);
        }
        KeysCommand::List {
            tenant,
            json: as_json,
        } => {
            let keys = operator.keys(tenant.as_deref()).await.map_err(failure)?;
            if as_json {
                json(&keys)?;
            } else {
                for key in &keys {
                    println!("{}", key_line(key));
                }
            }
        }
        KeysCommand::Revoke { id } => {
            if !warden_server::key::is_id(&id) {
                return Err(Failure::bad_input(format!(
                    "{id:?} is not a key id; give the 16 hex digits after `wdn_` (see `warden keys list`)"
                )));
            }
            operator
                .revoke_key(&id, None, Actor::Shell)
                .await
                .map_err(failure)?;
            eprintln!("warden: revoked key {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(cmd: AuditCommand, dirs: &crate::Dirs) -> Result<ExitCode, Failure> {
    let operator = operator(dirs).await?;
    match cmd {
        AuditCommand::Verify { tenant } => {
            let logs = match tenant {
                Some(name) => {
                    operator.tenant(&name).await.map_err(failure)?;
                    vec![name]
                }
                None => {
                    let mut all: Vec<String> = operator
                        .tenants()
                        .await
                        .map_err(failure)?
                        .into_iter()
                        .map(|t| t.name)
                        .collect();
                    all.push(OPERATOR_LOG.into());
                    all
                }
            };
            let mut broken = 0;
            for log in &logs {
                let verified = operator.verify_audit(log).await.map_err(failure)?;
                match &verified.problem {
                    None => println!("{log}: ok, {} entries", verified.entries),
                    Some(problem) => {
                        broken += 1;
                        println!("{log}: TAMPERED: {problem}");
                    }
                }
            }
            if broken > 0 {
                return Err(Failure::bad_input(format!(
                    "{broken} of {} audit logs are not whole",
                    logs.len()
                )));
            }
        }
        AuditCommand::Export { tenant } => {
            operator.tenant(&tenant).await.map_err(failure)?;
            export(&operator, &tenant).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn export(operator: &Operator, tenant: &str) -> Result<(), Failure> {
    use std::io::Write;
    let lines =
        operator.audit().entries(tenant).await.map_err(|e| {
            Failure::internal(format!("cannot read the audit log of {tenant}: {e}"))
        })?;
    let mut out = std::io::stdout().lock();
    for (line, entry) in lines {
        let entry = entry.map_err(|e| {
            Failure::bad_input(format!(
                "line {line} of {tenant}'s audit log is not an entry ({e}); `warden audit verify` says more"
            ))
        })?;
        let text = serde_json::to_string(&entry).map_err(Failure::internal)?;
        writeln!(out, "{text}").map_err(|e| Failure::internal(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(super::utc(1_799_050_706), "2027-01-04 08:18 UTC");
    }
}
