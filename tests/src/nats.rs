//! A real `nats-server` with JetStream on a loopback port, for the cluster
//! suites: Debian's 2.9 package (`scripts/dev setup` installs it), started
//! per test in its own store directory and killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One JetStream server.
pub struct NatsServer {
    child: Child,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsServer")
            .field("url", &self.url)
            .finish()
    }
}

/// Where Debian's package puts the server (`/usr/sbin` is not on every
/// user's PATH), or the first `nats-server` on PATH.
fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("nats-server"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| Some(PathBuf::from("/usr/sbin/nats-server")).filter(|p| p.is_file()))
        .expect("nats-server is not installed: `scripts/dev setup` installs it (apt-get install nats-server)")
}

impl NatsServer {
    /// Starts a server with JetStream on a free port; waits until it
    /// listens.
    pub fn start() -> NatsServer {
        let dir = tempfile::tempdir().expect("a store dir");
        let child = Command::new(binary())
            .args(["-js", "-a", "127.0.0.1", "-p", "-1", "-sd"])
            .arg(dir.path())
            .arg("--ports_file_dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let url = wait_for_port(dir.path(), child.id());
        NatsServer { child, url, dir }
    }

    /// The server's store directory.
    pub fn store(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The client URL the server with `pid` writes to its ports file, once it
/// accepts connections.
fn wait_for_port(dir: &Path, pid: u32) -> String {
    let file = dir.join(format!("nats-server_{pid}.ports"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Ok(ports) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(url) = ports["nats"][0].as_str()
        {
            let addr = url.trim_start_matches("nats://");
            if std::net::TcpStream::connect(addr).is_ok() {
                return url.to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "nats-server did not start listening in 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
