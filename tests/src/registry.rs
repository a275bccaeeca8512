//! A real OCI registry on a loopback port: Debian's `docker-registry` (the
//! CNCF distribution registry, which `scripts/dev setup` installs), storing
//! in its own directory, for the plugin registry suites. Started per test,
//! killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One registry.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`, as a reference names it.
    pub host: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry on a free port; waits until it answers `/v2/`.
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().expect("a store dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
                dir.path().join("store").display()
            ),
        )
        .expect("the registry's config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry: `scripts/dev setup` installs it (apt-get install docker-registry)");
        let registry = Registry {
            child,
            host,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while registry.status("/v2/") != Some(200) {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on {}",
                registry.host
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// The status of a GET of `path`, if the registry answered.
    pub fn status(&self, path: &str) -> Option<u16> {
        crate::http_status(&self.host, "GET", path)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
