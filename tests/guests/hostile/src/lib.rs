//! A plugin that tries, on request, every way out of the sandbox and every
//! way to exhaust a limit. The test suites call its tools and check that the
//! host refuses, reports the right limit, and survives.

use std::hint::black_box;

use serde::{Deserialize, Serialize};
use warden_sdk::{JsonSchema, NoArgs, ToolError, Toolbox};

#[derive(Deserialize, JsonSchema)]
struct Mib {
    mib: u64,
}

#[derive(Deserialize, JsonSchema)]
struct Ms {
    ms: u64,
}

#[derive(Deserialize, JsonSchema)]
struct Depth {
    depth: u64,
}

#[derive(Deserialize, JsonSchema)]
struct PathArg {
    path: String,
}

#[derive(Deserialize, JsonSchema)]
struct WriteArg {
    path: String,
    content: String,
}

#[derive(Deserialize, JsonSchema)]
struct Tally {
    /// A file (in a granted directory) to append the call's key to.
    path: String,
    /// How long to sleep afterwards.
    ms: u64,
}

#[derive(Deserialize, JsonSchema)]
struct Code {
    code: i32,
}

#[derive(Deserialize, JsonSchema)]
struct Lines {
    lines: u32,
}

#[derive(Deserialize, JsonSchema)]
struct HoldFiles {
    /// A directory to open files in (a granted one).
    dir: String,
    /// How many to try to hold open at once.
    count: u32,
}

/// How far an open-file flood got.
#[derive(Serialize)]
struct Held {
    held: u32,
    /// The error of the first open that failed, if one did.
    error: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
struct Addr {
    addr: String,
}

/// A raw `wasi:http` request: the authority goes to the host exactly as
/// given, with no URL normalisation on the way.
#[derive(Deserialize, JsonSchema)]
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct RawHttp {
    scheme: String,
    authority: String,
    #[serde(default)]
    path: Option<String>,
}

#[derive(Serialize)]
struct Env {
    vars: Vec<(String, String)>,
    args: Vec<String>,
}

fn toolbox() -> Toolbox {
    Toolbox::new()
        .tool(
            "spin",
            "Loops forever",
            |_: NoArgs| -> Result<u64, ToolError> {
                let mut n: u64 = 0;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            },
        )
        .tool("sleep", "Sleeps in the host (a blocking wait)", |a: Ms| {
            std::thread::sleep(std::time::Duration::from_millis(a.ms));
            Ok(a.ms)
        })
        .tool(
            "tally",
            "Appends its call key to a file (a side effect outside the journal), then sleeps",
            |a: Tally| {
                use std::io::Write;
                let key = warden_sdk::call_key().unwrap_or_else(|| "none".into());
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&a.path)?
                    .write_all(format!("{key}\n").as_bytes())?;
                std::thread::sleep(std::time::Duration::from_millis(a.ms));
                Ok(true)
            },
        )
        .tool("alloc", "Allocates and touches N MiB", |a: Mib| {
            let mut v = vec![0u8; (a.mib * 1024 * 1024) as usize];
            for i in (0..v.len()).step_by(4096) {
                v[i] = 1;
            }
            Ok(black_box(v).len())
        })
        .tool("recurse", "Recurses N deep", |a: Depth| {
            Ok(recurse(a.depth))
        })
        .raw_tool(
            "big_output",
            "Returns a JSON string of N MiB",
            mib_schema,
            |args| {
                let a: Mib = warden_sdk::serde_json::from_str(args)?;
                // Built in place, one allocation: `"xxx…"`.
                let mut json = vec![b'x'; (a.mib * 1024 * 1024) as usize + 2];
                json[0] = b'"';
                let last = json.len() - 1;
                json[last] = b'"';
                String::from_utf8(json).map_err(|e| ToolError::Failed(e.to_string()))
            },
        )
        .tool("read", "Reads a file with std::fs", |a: PathArg| {
            std::fs::read_to_string(&a.path)
                .map_err(|e| ToolError::Failed(format!("{:?}: {e}", e.kind())))
        })
        .tool("write", "Writes a file with std::fs", |a: WriteArg| {
            std::fs::write(&a.path, a.content)
                .map_err(|e| ToolError::Failed(format!("{:?}: {e}", e.kind())))?;
            Ok(true)
        })
        .tool("list", "Lists a directory with std::fs", |a: PathArg| {
            let names: Vec<String> = std::fs::read_dir(&a.path)
                .map_err(|e| ToolError::Failed(format!("{:?}: {e}", e.kind())))?
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect();
            Ok(names)
        })
        .tool(
            "env",
            "Returns the environment and arguments it sees",
            |_: NoArgs| {
                Ok(Env {
                    vars: std::env::vars().collect(),
                    args: std::env::args().collect(),
                })
            },
        )
        .tool(
            "hold_files",
            "Opens files (creating them) and holds them all open",
            |a: HoldFiles| {
                let mut held = Vec::new();
                let mut error = None;
                for i in 0..a.count {
                    match std::fs::File::create(format!("{}/f{i}", a.dir)) {
                        Ok(file) => held.push(file),
                        Err(e) => {
                            error = Some(format!("{:?}: {e}", e.kind()));
                            break;
                        }
                    }
                }
                Ok(Held {
                    held: held.len() as u32,
                    error,
                })
            },
        )
        .raw_tool(
            "big_error",
            "Fails with an error message of N MiB",
            mib_schema,
            |args| {
                let a: Mib = warden_sdk::serde_json::from_str(args)?;
                Err(ToolError::Failed(
                    "e".repeat((a.mib * 1024 * 1024) as usize),
                ))
            },
        )
        .tool("connect", "Opens a raw TCP connection", |a: Addr| {
            std::net::TcpStream::connect(&a.addr)
                .map(|_| "connected".to_string())
                .map_err(|e| ToolError::Failed(format!("{:?}: {e}", e.kind())))
        })
        .tool(
            "http",
            "Sends a raw wasi:http GET, no redirects followed",
            http,
        )
        .tool("panic", "Panics", |_: NoArgs| -> Result<(), ToolError> {
            panic!("hostile guest panicked on purpose")
        })
        .tool("abort", "Aborts", |_: NoArgs| -> Result<(), ToolError> {
            std::process::abort()
        })
        .tool("exit", "Calls exit", |a: Code| -> Result<(), ToolError> {
            std::process::exit(a.code)
        })
        .tool("print", "Prints N MiB to stdout", |a: Mib| {
            let line = "y".repeat(1023) + "\n";
            for _ in 0..a.mib * 1024 {
                print!("{line}");
            }
            Ok(a.mib)
        })
        .tool("log_flood", "Logs N lines", |a: Lines| {
            for i in 0..a.lines {
                warden_sdk::log::info(format!("line {i}"));
            }
            Ok(a.lines)
        })
        .raw_tool(
            "bad_json",
            "Returns text that is not JSON",
            any_schema,
            |_| Ok("this is not json".into()),
        )
        .raw_tool(
            "echo",
            "Returns its arguments unchanged",
            any_schema,
            |args| Ok(args.to_string()),
        )
}

fn mib_schema() -> warden_sdk::schemars::Schema {
    warden_sdk::schemars::schema_for!(Mib)
}

fn any_schema() -> warden_sdk::schemars::Schema {
    warden_sdk::schemars::json_schema!({ "type": "object" })
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    let pad = black_box([depth; 16]);
    1 + recurse(black_box(depth - 1)) + black_box(pad[3]) - depth
}

#[cfg(target_arch = "wasm32")]
fn http(a: RawHttp) -> Result<String, ToolError> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, OutgoingRequest, Scheme};

    let request = OutgoingRequest::new(Fields::new());
    let scheme = match a.scheme.as_str() {
        "https" => Scheme::Https,
        _ => Scheme::Http,
    };
    let _ = request.set_scheme(Some(&scheme));
    request.set_authority(Some(&a.authority)).map_err(|_| {
        ToolError::InvalidArguments("authority rejected by the guest-side API".into())
    })?;
    let _ = request.set_path_with_query(Some(a.path.as_deref().unwrap_or("/")));
    let pending =
        outgoing_handler::handle(request, None).map_err(|e| ToolError::Denied(format!("{e:?}")))?;
    loop {
        match pending.get() {
            Some(Ok(Ok(response))) => return Ok(format!("status {}", response.status())),
            Some(Ok(Err(code))) => return Err(ToolError::Denied(format!("{code:?}"))),
            Some(Err(())) => return Err(ToolError::Failed("taken".into())),
            None => pending.subscribe().block(),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn http(_: RawHttp) -> Result<String, ToolError> {
    Err(ToolError::Failed("wasm only".into()))
}

warden_sdk::export!(toolbox);
