//! Shared support for warden's test suites: the paths of the wasm guests
//! (built from source by this crate's build script) and small real servers
//! the network tests point guests at.

#![forbid(unsafe_code)]

/// Paths of the built guests.
pub mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
}

pub mod fake_llm;
pub mod moto;
pub mod nats;
pub mod registry;
pub mod server;

/// The status of one bodiless HTTP/1.1 request to the server at `addr`
/// (`HOST:PORT`), if it answered: how the harness waits for a server it
/// started and pokes it before any client library is involved.
pub fn http_status(addr: &str, method: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split(' ').nth(1)?.parse().ok()
}

/// The Python `scripts/dev setup` prepares (`~/.cache/warden/venv`), with
/// the test tools of `scripts/requirements-dev.txt`; `$WARDEN_PYTHON` names
/// another.
pub fn python() -> std::path::PathBuf {
    std::env::var_os("WARDEN_PYTHON")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(".cache/warden/venv/bin/python"))
        })
        .expect("HOME or WARDEN_PYTHON is set")
}
