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

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
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

/// Three JetStream servers routed into one NATS cluster, each with its own
/// store, for replicated streams. Killed when dropped.
pub struct NatsCluster {
    servers: Vec<Option<Child>>,
    /// Each server's `nats://127.0.0.1:PORT`.
    pub urls: Vec<String>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for NatsCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsCluster")
            .field("urls", &self.urls)
            .finish()
    }
}

/// A port nothing listens on now (the OS's pick; taken back at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl NatsCluster {
    /// Starts three servers and waits until each listens. (JetStream's
    /// meta leader is elected a moment later: a first stream creation
    /// should be retried for a few seconds.)
    pub fn start() -> NatsCluster {
        let dir = tempfile::tempdir().expect("a store dir");
        let client: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut servers = Vec::new();
        let mut urls = Vec::new();
        for n in 0..3 {
            let store = dir.path().join(format!("s{n}"));
            let others: Vec<String> = (0..3)
                .filter(|m| *m != n)
                .map(|m| format!("nats-route://127.0.0.1:{}", routes[m]))
                .collect();
            let config = format!(
                "server_name: s{n}\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: {:?} }}\ncluster {{\n  name: warden\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                client[n],
                store.display().to_string(),
                routes[n],
                others.join(", ")
            );
            let file = dir.path().join(format!("s{n}.conf"));
            std::fs::write(&file, config).expect("a config");
            let child = Command::new(binary())
                .arg("-c")
                .arg(&file)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start nats-server");
            servers.push(Some(child));
            urls.push(format!("nats://127.0.0.1:{}", client[n]));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in &client {
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "the NATS cluster did not start listening in 20 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        NatsCluster {
            servers,
            urls,
            _dir: dir,
        }
    }

    /// Every server's URL, comma-separated, as `--cluster` takes them.
    pub fn url(&self) -> String {
        self.urls.join(",")
    }

    /// Kills server `n` with SIGKILL.
    pub fn kill(&mut self, n: usize) {
        if let Some(mut child) = self.servers[n].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for n in 0..self.servers.len() {
            self.kill(n);
        }
    }
}
