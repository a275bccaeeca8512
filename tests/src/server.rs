//! A real HTTP/1.1 server on 127.0.0.1 that records every request it gets,
//! so a test can assert that a guest's request never arrived.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// What the server answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with this body (text/html).
    Body(String),
    /// 302 to this location.
    Redirect(String),
}

/// A loopback HTTP server that runs until dropped.
pub struct RecordingServer {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<String>>>,
}

impl RecordingServer {
    pub fn start(reply: Reply) -> RecordingServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let hits = Arc::new(Mutex::new(Vec::new()));
        let seen = hits.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let seen = seen.clone();
                let reply = reply.clone();
                thread::spawn(move || serve(stream, &reply, &seen));
            }
        });
        RecordingServer { addr, hits }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    /// Request lines received so far, e.g. `GET /path HTTP/1.1`.
    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

fn serve(stream: TcpStream, reply: &Reply, seen: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    if let Ok(mut hits) = seen.lock() {
        hits.push(request_line.trim_end().to_string());
    }
    // Drain the headers, then the body, so that the client has sent all it
    // meant to before the answer and the close.
    let mut line = String::new();
    let mut length = 0usize;
    while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
        line.clear();
    }
    let mut body = vec![0u8; length.min(1 << 20)];
    if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
        return;
    }
    let response = match reply {
        Reply::Body(body) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        Reply::Redirect(location) => format!(
            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    };
    let mut stream = stream;
    let _ = stream.write_all(response.as_bytes());
}
