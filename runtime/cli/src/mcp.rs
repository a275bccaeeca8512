//! `warden mcp`: serve the tools of plugins to MCP clients, over stdio or
//! streamable HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use warden_mcp::{BearerToken, Catalog, Plugin, WardenMcp};

use crate::exit::Failure;
use crate::sandbox_args::SandboxArgs;

#[derive(Args)]
pub struct McpArgs {
    /// A plugin to serve. Repeatable.
    #[arg(long = "plugin", value_name = "FILE")]
    plugins: Vec<PathBuf>,

    /// Serve every `.wasm` file in this directory too.
    #[arg(long, value_name = "DIR")]
    plugins_dir: Option<PathBuf>,

    /// Serve streamable HTTP at http://ADDR/mcp instead of stdio.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,

    /// A Host header value to accept over HTTP besides the loopback names
    /// (DNS-rebinding protection). Repeatable.
    #[arg(long = "http-host", value_name = "NAME")]
    http_hosts: Vec<String>,

    /// The bearer token HTTP clients must send, from the first line of
    /// this file; without it, warden makes one and prints it at start.
    #[arg(long, value_name = "FILE", requires = "http")]
    token_file: Option<PathBuf>,

    /// Calls that may run at once; more wait their turn.
    #[arg(long, value_name = "N", default_value_t = 16)]
    max_concurrent: u32,

    #[command(flatten)]
    sandbox: SandboxArgs,
}

pub async fn run(args: McpArgs, dirs: &crate::Dirs) -> Result<ExitCode, Failure> {
    let (engine, _memory) =
        dirs.engine_with_services(crate::Capacity::serving(args.max_concurrent))?;
    let mut files = args.plugins.clone();
    if let Some(dir) = &args.plugins_dir {
        files.extend(
            crate::plugin_files::wasm_files(dir)
                .map_err(|f| Failure::bad_input(format!("--plugins-dir {}", f.message)))?,
        );
    }
    let mut plugins = Vec::with_capacity(files.len());
    for file in &files {
        let plugin = engine.load_file(&crate::oci::local(file, dirs.data.as_deref()).await?)?;
        let options = args.sandbox.call_options(&plugin)?;
        plugins.push(Plugin { plugin, options });
    }
    let catalog = Catalog::new(plugins, args.max_concurrent as usize)
        .await
        .map_err(|e| Failure::bad_input(e.to_string()))?;
    let names: Vec<String> = catalog.tools().iter().map(|t| t.name.to_string()).collect();
    tracing::info!(tools = %names.join(", "), "serving {} tools", names.len());
    let server = WardenMcp::new(catalog);
    match args.http {
        Some(addr) => {
            let (token, generated) = match &args.token_file {
                Some(path) => {
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        Failure::bad_input(format!("--token-file {}: {e}", path.display()))
                    })?;
                    let first = text.lines().next().unwrap_or_default();
                    let token = BearerToken::new(first).map_err(|e| {
                        Failure::bad_input(format!("--token-file {}: {e}", path.display()))
                    })?;
                    (token, false)
                }
                None => (BearerToken::generate(), true),
            };
            if !addr.ip().is_loopback() {
                eprintln!(
                    "warden: warning: serving MCP on {addr}, which is not a loopback address: anyone who can reach it and has the token can call these tools"
                );
            }
            let ready = |local| {
                eprintln!("warden: serving MCP at http://{local}/mcp");
                if generated {
                    eprintln!(
                        "warden: clients send `Authorization: Bearer {}` (or give --token-file)",
                        token.as_str()
                    );
                }
            };
            let serve_token = token.clone();
            warden_mcp::serve_http(
                server,
                addr,
                args.http_hosts,
                serve_token,
                ready,
                crate::shutdown::signal(),
            )
            .await
        }
        None => warden_mcp::serve_stdio(server).await,
    }
    .map_err(|e| Failure::internal(e.to_string()))?;
    Ok(ExitCode::SUCCESS)
}
