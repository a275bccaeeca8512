//! warden as an MCP server: every tool of every loaded plugin, each call in a
//! fresh sandbox under the operator's grants and limits. A client can list and
//! call tools; nothing it sends can change a grant.
//!
//! ```no_run
//! use warden_core::{CallOptions, Engine, EngineConfig};
//! use warden_mcp::{Catalog, Plugin, WardenMcp};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::new(&EngineConfig::default())?;
//! let fs = engine.load_file("target/plugins/fs.wasm".as_ref())?;
//! let options = CallOptions {
//!     limits: fs.limits(Default::default(), Default::default())?,
//!     ..CallOptions::default()
//! };
//! let catalog = Catalog::new(vec![Plugin { plugin: fs, options }], 16).await?;
//! warden_mcp::serve_stdio(WardenMcp::new(catalog)).await?;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt};
use tokio::sync::Semaphore;
use warden_core::{CallError, CallOptions, CallOutcome, CompiledPlugin, ToolError};

/// A loaded plugin and what the operator decided for its calls.
#[derive(Debug, Clone)]
pub struct Plugin {
    pub plugin: CompiledPlugin,
    pub options: CallOptions,
}

/// One MCP tool: which plugin and tool it runs, under which options.
struct Entry {
    spec: Tool,
    plugin: CompiledPlugin,
    tool: String,
    options: Arc<CallOptions>,
}

/// Every tool of every plugin under its qualified name, and the gate that
/// keeps concurrent calls within the engine's pool.
pub struct Catalog {
    entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
    permits: Semaphore,
}

/// Why the catalog could not be built. Each is bad input for the operator.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("plugin {plugin}: list-tools failed: {error}")]
    ListTools { plugin: String, error: CallError },
    #[error(
        "tools {first} and {second} both become the MCP name {name:?}; rename one or load only one of the plugins"
    )]
    Collision {
        name: String,
        first: String,
        second: String,
    },
    #[error("plugin {plugin}: tool {tool:?} has an input schema that is not a JSON object")]
    Schema { plugin: String, tool: String },
    #[error("no plugins to serve; pass --plugin FILE or --plugins-dir DIR")]
    Empty,
}

/// The separator between plugin and tool in a qualified name. Plugin names
/// never contain `_`, so the first `__` always splits them back apart.
pub const SEPARATOR: &str = "__";

/// MCP clients accept tool names of `[A-Za-z0-9_-]`, commonly at most 64
/// characters.
pub const MAX_NAME: usize = 64;

/// `plugin__tool`, with characters MCP does not allow replaced by `_` and
/// the whole cut to [`MAX_NAME`].
pub fn qualified_name(plugin: &str, tool: &str) -> String {
    let mut name = String::with_capacity(plugin.len() + SEPARATOR.len() + tool.len());
    name.push_str(plugin);
    name.push_str(SEPARATOR);
    name.extend(tool.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '_'
        }
    }));
    name.truncate(MAX_NAME);
    name
}

impl Catalog {
    /// Lists every plugin's tools (each `list-tools` in its own sandbox) and
    /// names them. At most `max_concurrent` calls run at once; more wait.
    pub async fn new(plugins: Vec<Plugin>, max_concurrent: usize) -> Result<Catalog, CatalogError> {
        if plugins.is_empty() {
            return Err(CatalogError::Empty);
        }
        let mut entries = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        for Plugin { plugin, options } in plugins {
            let listed = plugin.list_tools(&options).await.result.map_err(|error| {
                CatalogError::ListTools {
                    plugin: plugin.name().to_string(),
                    error,
                }
            })?;
            let options = Arc::new(options);
            for spec in listed {
                let name = qualified_name(plugin.name(), &spec.name);
                let serde_json::Value::Object(schema) = spec.input_schema else {
                    return Err(CatalogError::Schema {
                        plugin: plugin.name().to_string(),
                        tool: spec.name,
                    });
                };
                let label = format!("{}/{}", plugin.name(), spec.name);
                if let Some(&existing) = by_name.get(&name) {
                    let first: &Entry = &entries[existing];
                    return Err(CatalogError::Collision {
                        name,
                        first: format!("{}/{}", first.plugin.name(), first.tool),
                        second: label,
                    });
                }
                let mut tool = Tool::new(name.clone(), spec.description, Arc::new(schema));
                tool.title = Some(label);
                by_name.insert(name, entries.len());
                entries.push(Entry {
                    spec: tool,
                    plugin: plugin.clone(),
                    tool: spec.name,
                    options: options.clone(),
                });
            }
        }
        Ok(Catalog {
            entries,
            by_name,
            permits: Semaphore::new(max_concurrent.max(1)),
        })
    }

    /// The MCP tool list.
    pub fn tools(&self) -> Vec<Tool> {
        self.entries.iter().map(|e| e.spec.clone()).collect()
    }

    /// Runs a tool by its qualified name. `None` when no tool has that name.
    pub async fn call(&self, name: &str, arguments: &str) -> Option<CallToolResult> {
        Some(to_mcp(self.call_outcome(name, arguments).await?.result))
    }

    /// Runs a tool by its qualified name and returns the whole outcome
    /// (usage, output); `None` when no tool has that name.
    pub async fn call_outcome(
        &self,
        name: &str,
        arguments: &str,
    ) -> Option<CallOutcome<Result<String, ToolError>>> {
        self.call_outcome_within(name, arguments, None).await
    }

    /// The fuel one call of tool `name` may use.
    pub fn fuel(&self, name: &str) -> Option<u64> {
        let entry = &self.entries[*self.by_name.get(name)?];
        Some(entry.options.limits.fuel)
    }

    /// As [`Catalog::call_outcome`], with the call's fuel cut to `fuel`
    /// when that is less than the tool's limit (what a quota has left).
    pub async fn call_outcome_within(
        &self,
        name: &str,
        arguments: &str,
        fuel: Option<u64>,
    ) -> Option<CallOutcome<Result<String, ToolError>>> {
        let entry = &self.entries[*self.by_name.get(name)?];
        // Closed only if the catalog is dropped mid-call, which cannot
        // happen while `self` is borrowed.
        let _permit = self.permits.acquire().await.ok()?;
        let capped;
        let options = match fuel {
            Some(fuel) if fuel < entry.options.limits.fuel => {
                let mut options = CallOptions::clone(&entry.options);
                options.limits.fuel = fuel;
                capped = options;
                &capped
            }
            _ => &*entry.options,
        };
        let outcome = entry
            .plugin
            .call_tool(options, &entry.tool, arguments)
            .await;
        if !outcome.stderr.bytes.is_empty() {
            tracing::debug!(plugin = entry.plugin.name(), tool = %entry.tool, stderr = %outcome.stderr.to_text(), "guest stderr");
        }
        Some(outcome)
    }

    /// The plugin and unqualified tool name behind a qualified name.
    pub fn origin(&self, name: &str) -> Option<(&str, &str)> {
        let entry = &self.entries[*self.by_name.get(name)?];
        Some((entry.plugin.name(), &entry.tool))
    }

    /// Why no tool is called `name` (see [`unknown_tool`]).
    pub fn unknown(&self, name: &str) -> String {
        unknown_tool(name, self.by_name.keys().map(String::as_str))
    }
}

/// Why no tool of `known` is called `name`, with the qualified names it
/// may have meant: a plugin's tool called by its bare name, or written
/// `plugin.tool` or `plugin/tool`.
fn unknown_tool<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> String {
    let respelled = name.replacen(['.', '/', ':'], SEPARATOR, 1);
    let mut meant: Vec<&str> = known
        .filter(|known| {
            known.eq_ignore_ascii_case(&respelled)
                || known
                    .split_once(SEPARATOR)
                    .is_some_and(|(_, tool)| tool.eq_ignore_ascii_case(name))
        })
        .collect();
    meant.sort_unstable();
    let shape = format!("tools are named PLUGIN{SEPARATOR}TOOL");
    match meant.as_slice() {
        [] => format!("unknown tool {name:?}: {shape}, as tools/list shows them"),
        [one] => format!("unknown tool {name:?}: did you mean {one:?}? ({shape})"),
        many => format!(
            "unknown tool {name:?}: did you mean one of {}? ({shape})",
            many.iter()
                .map(|m| format!("{m:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A tool's result, or its failure as a tool result with `isError: true`:
/// the client sees the message; the protocol stays healthy.
fn to_mcp(result: Result<Result<String, ToolError>, CallError>) -> CallToolResult {
    match result {
        Ok(Ok(json)) => {
            let mut ok = CallToolResult::success(vec![ContentBlock::text(json.clone())]);
            // MCP's structured content must be an object.
            if let Ok(value @ serde_json::Value::Object(_)) = serde_json::from_str(&json) {
                ok.structured_content = Some(value);
            }
            ok
        }
        Ok(Err(tool_error)) => {
            let text = format!("{}: {}", tool_error.kind(), tool_error.message());
            let mut err = CallToolResult::error(vec![ContentBlock::text(text)]);
            err.structured_content = Some(serde_json::json!({ "error": tool_error }));
            err
        }
        Err(CallError::Limit { kind, detail }) => CallToolResult::error(vec![ContentBlock::text(
            format!("limit exceeded: {kind}: {detail}"),
        )]),
        Err(other) => CallToolResult::error(vec![ContentBlock::text(other.to_string())]),
    }
}

/// A call a host let in.
pub struct Admitted {
    /// Held while the call runs (a place in a queue, fuel of a quota),
    /// and handed back to [`CallHook::finished`].
    pub held: Box<dyn std::any::Any + Send>,
    /// The most fuel the call may use, when less than its tool's limit.
    pub fuel: Option<u64>,
}

/// A call's admission: the call let in, or why it may not run.
pub type Admission<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<Admitted, String>> + Send + 'a>>;

/// What a host decides about, and learns of, each tool call a client
/// makes (a server's quotas and audit log).
pub trait CallHook: Send + Sync {
    /// Admits a call of `tool` (its qualified name), waiting for its turn
    /// if need be, or says why not (the client sees the reason as a tool
    /// error).
    fn admit<'a>(&'a self, tool: &'a str) -> Admission<'a>;

    /// Told of each admitted call's end: its qualified name, what its
    /// admission held, and its outcome.
    fn finished(
        &self,
        tool: &str,
        admitted: Admitted,
        outcome: &CallOutcome<Result<String, ToolError>>,
    );
}

/// The MCP server. Cheap to clone: every session shares one catalog.
#[derive(Clone)]
pub struct WardenMcp {
    catalog: Arc<Catalog>,
    hook: Option<Arc<dyn CallHook>>,
}

impl WardenMcp {
    pub fn new(catalog: Catalog) -> WardenMcp {
        WardenMcp::shared(Arc::new(catalog))
    }

    /// A server over a catalog something else uses too (a tenant's REST
    /// tool calls).
    pub fn shared(catalog: Arc<Catalog>) -> WardenMcp {
        WardenMcp {
            catalog,
            hook: None,
        }
    }

    /// Every call admitted by, and reported to, `hook`.
    pub fn with_hook(mut self, hook: Arc<dyn CallHook>) -> WardenMcp {
        self.hook = Some(hook);
        self
    }
}

impl ServerHandler for WardenMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("warden", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Tools are named plugin__tool. Each call runs in a fresh WebAssembly sandbox \
                 with the operator's grants and limits; a refusal or an exceeded limit comes \
                 back as a tool error that says why.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.catalog.tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let arguments = match &request.arguments {
            Some(args) => serde_json::to_string(args)
                .map_err(|e| McpError::invalid_params(format!("arguments: {e}"), None))?,
            None => "{}".to_string(),
        };
        let unknown = || McpError::invalid_params(self.catalog.unknown(&request.name), None);
        let Some(hook) = &self.hook else {
            return match self.catalog.call(&request.name, &arguments).await {
                Some(result) => Ok(result.into()),
                None => Err(unknown()),
            };
        };
        if self.catalog.origin(&request.name).is_none() {
            return Err(unknown());
        }
        let admitted = match hook.admit(&request.name).await {
            Ok(admitted) => admitted,
            Err(why) => return Ok(CallToolResult::error(vec![ContentBlock::text(why)]).into()),
        };
        let outcome = self
            .catalog
            .call_outcome_within(&request.name, &arguments, admitted.fuel)
            .await
            .ok_or_else(unknown)?;
        hook.finished(&request.name, admitted, &outcome);
        Ok(to_mcp(outcome.result).into())
    }
}

/// Why serving stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("MCP session failed to start: {0}")]
    Start(String),
    #[error("cannot listen on {addr}: {error}")]
    Bind { addr: SocketAddr, error: String },
    #[error("MCP server failed: {0}")]
    Io(String),
    #[error("{0}")]
    Token(String),
}

/// Serves one MCP session over stdin/stdout until the client goes away.
/// Nothing else may write to stdout meanwhile.
pub async fn serve_stdio(server: WardenMcp) -> Result<(), ServeError> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| ServeError::Start(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| ServeError::Io(e.to_string()))?;
    Ok(())
}

/// The secret an MCP client must send over HTTP: `Authorization: Bearer
/// TOKEN`. Compared in constant time.
#[derive(Clone)]
pub struct BearerToken(Arc<str>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

impl BearerToken {
    /// 256 random bits, hex.
    pub fn generate() -> BearerToken {
        let bytes: [u8; 32] = rand::random();
        BearerToken(
            bytes
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into(),
        )
    }

    /// A token the operator chose (a file's first line, say): at least 16
    /// characters of printable ASCII.
    pub fn new(token: &str) -> Result<BearerToken, ServeError> {
        let token = token.trim();
        if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ServeError::Token(
                "a bearer token must be at least 16 printable ASCII characters".into(),
            ));
        }
        Ok(BearerToken(token.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether an `Authorization` header value carries this token.
    fn admits(&self, header: Option<&[u8]>) -> bool {
        let Some(given) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        let expected = self.0.as_bytes();
        // Constant time over the token: only its length can leak.
        given.len() == expected.len()
            && given
                .iter()
                .zip(expected)
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

/// Serves the streamable HTTP transport at `http://ADDR/mcp` until
/// `shutdown` resolves; `on_ready` gets the bound address (useful with port
/// 0). Every request must carry `token` (`Authorization: Bearer TOKEN`),
/// else it is answered 401; and only requests whose Host is a loopback name
/// are accepted (DNS-rebinding protection), plus `extra_hosts`.
/// The most of a refused request's body read before answering it.
const REFUSED_BODY_BYTES: usize = 64 * 1024;

pub async fn serve_http(
    server: WardenMcp,
    addr: SocketAddr,
    extra_hosts: Vec<String>,
    token: BearerToken,
    on_ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    };

    let mut config = StreamableHttpServerConfig::default();
    let mut hosts = config.allowed_hosts.clone();
    hosts.extend(extra_hosts);
    config = config.with_allowed_hosts(hosts);
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let router = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let admitted = token.admits(
                    request
                        .headers()
                        .get(header::AUTHORIZATION)
                        .map(|v| v.as_bytes()),
                );
                async move {
                    if admitted {
                        next.run(request).await
                    } else {
                        tracing::info!("MCP request refused: no valid bearer token");
                        // Read what the client sent (a little of it at most)
                        // so the connection stays usable: an unread body
                        // makes hyper close it, racing the client's next
                        // request on it.
                        let _ = axum::body::to_bytes(request.into_body(), REFUSED_BODY_BYTES).await;
                        (
                            StatusCode::UNAUTHORIZED,
                            [(header::WWW_AUTHENTICATE, "Bearer")],
                            "send the token warden printed at start (or the one in --token-file) as `Authorization: Bearer TOKEN`\n",
                        )
                            .into_response()
                    }
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Bind {
            addr,
            error: e.to_string(),
        })?;
    on_ready(listener.local_addr().unwrap_or(addr));
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| ServeError::Io(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_follow_mcp_rules_and_split_back() {
        assert_eq!(qualified_name("fs", "read_file"), "fs__read_file");
        assert_eq!(qualified_name("my-tool", "do.it now"), "my-tool__do_it_now");
        let long = qualified_name("p", &"x".repeat(100));
        assert_eq!(long.len(), MAX_NAME);
        let (plugin, tool) = qualified_name("text-stats", "top_words")
            .split_once(SEPARATOR)
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap_or_default();
        assert_eq!(
            (plugin.as_str(), tool.as_str()),
            ("text-stats", "top_words")
        );
    }

    #[test]
    fn an_unknown_tool_is_answered_with_the_qualified_names_meant() {
        let known = [
            "fs__read_file",
            "fs__write_file",
            "text-stats__count",
            "b__count",
        ];
        let unknown = |name| unknown_tool(name, known.iter().copied());
        assert_eq!(
            unknown("read_file"),
            "unknown tool \"read_file\": did you mean \"fs__read_file\"? (tools are named PLUGIN__TOOL)"
        );
        assert!(unknown("fs.read_file").contains("did you mean \"fs__read_file\"?"));
        assert!(unknown("fs/write_file").contains("did you mean \"fs__write_file\"?"));
        assert!(
            unknown("count").contains("did you mean one of \"b__count\", \"text-stats__count\"?"),
            "{}",
            unknown("count")
        );
        assert_eq!(
            unknown("delete_everything"),
            "unknown tool \"delete_everything\": tools are named PLUGIN__TOOL, as tools/list shows them"
        );
    }

    #[test]
    fn the_bearer_token_admits_only_itself() {
        let token = BearerToken::new("0123456789abcdef-secret").unwrap();
        assert!(token.admits(Some(b"Bearer 0123456789abcdef-secret")));
        for bad in [
            &b"Bearer 0123456789abcdef-secreT"[..],
            b"Bearer 0123456789abcdef-secret ",
            b"bearer 0123456789abcdef-secret",
            b"0123456789abcdef-secret",
            b"Bearer ",
        ] {
            assert!(!token.admits(Some(bad)), "{}", String::from_utf8_lossy(bad));
        }
        assert!(!token.admits(None));
        assert!(BearerToken::new("short").is_err());
        let generated = BearerToken::generate();
        assert_eq!(generated.as_str().len(), 64);
        assert_ne!(generated.as_str(), BearerToken::generate().as_str());
        assert!(!format!("{generated:?}").contains(generated.as_str()));
    }

    #[test]
    fn failures_become_tool_errors_that_say_why() {
        let limit = to_mcp(Err(CallError::Limit {
            kind: warden_core::LimitKind::Fuel,
            detail: "used it all".into(),
        }));
        assert_eq!(limit.is_error, Some(true));
        let json = serde_json::to_value(&limit).unwrap_or_default();
        assert_eq!(
            json["content"][0]["text"],
            "limit exceeded: fuel: used it all"
        );

        let denied = to_mcp(Ok(Err(ToolError::Denied("no grant".into()))));
        assert_eq!(denied.is_error, Some(true));
        let json = serde_json::to_value(&denied).unwrap_or_default();
        assert_eq!(json["content"][0]["text"], "denied: no grant");
        assert_eq!(json["structuredContent"]["error"]["kind"], "denied");

        let ok = to_mcp(Ok(Ok(r#"{"a":1}"#.into())));
        assert_eq!(ok.is_error, Some(false));
        assert_eq!(ok.structured_content, Some(serde_json::json!({"a": 1})));
        let scalar = to_mcp(Ok(Ok("3".into())));
        assert_eq!(scalar.structured_content, None);
    }
}
