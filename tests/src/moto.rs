//! A real S3-compatible object store on a loopback port: moto's server
//! (`moto[server]` from PyPI, which `scripts/dev setup` installs into the
//! venv), for the shared-memory suites. Started per test, killed when
//! dropped. It answers any access key.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One moto server.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl MotoServer {
    /// Starts a server on a free port; waits until it answers.
    pub fn start() -> MotoServer {
        let python = crate::python();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", python.display()));
        let server = MotoServer {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.status("GET", "/").is_none() {
            assert!(
                Instant::now() < deadline,
                "moto did not answer on port {port}; is it installed? `scripts/dev setup` puts `moto[server]` into the venv ({})",
                python.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// Creates bucket `name` (moto needs no signature for it).
    pub fn bucket(&self, name: &str) {
        assert_eq!(self.status("PUT", &format!("/{name}")), Some(200));
    }

    /// The status of one unsigned request, if the server answered.
    fn status(&self, method: &str, path: &str) -> Option<u16> {
        crate::http_status(self.endpoint.trim_start_matches("http://"), method, path)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
