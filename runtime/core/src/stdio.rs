//! Capped capture of a guest's stdout and stderr.
//!
//! Writes never fail and never block: the first `cap` bytes are kept, the rest
//! is counted and dropped. A guest that prints 100 MB costs the host `cap`
//! bytes, and the guest itself carries on as if the write succeeded.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How much a guest may write per `check-write` permit.
const PERMIT: usize = 64 * 1024;

/// A stdout or stderr capture shared between the WASI context and the host.
#[derive(Debug, Clone)]
pub struct CapturedOutput {
    inner: Arc<Mutex<Capture>>,
}

#[derive(Debug, Default)]
struct Capture {
    cap: usize,
    kept: Vec<u8>,
    dropped: u64,
}

/// What a guest wrote, up to the cap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub bytes: Vec<u8>,
    /// Bytes written past the cap and dropped.
    pub dropped: u64,
}

impl Output {
    pub fn truncated(&self) -> bool {
        self.dropped > 0
    }

    /// The text, lossily decoded, with a marker when it was truncated.
    pub fn to_text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.truncated() {
            text.push_str(&format!(
                "\n[warden: output truncated, {} more bytes dropped]\n",
                self.dropped
            ));
        }
        text
    }
}

impl CapturedOutput {
    pub fn new(cap: usize) -> Self {
        CapturedOutput {
            inner: Arc::new(Mutex::new(Capture {
                cap,
                ..Capture::default()
            })),
        }
    }

    fn push(&self, data: &[u8]) {
        let mut capture = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = capture.cap.saturating_sub(capture.kept.len());
        let keep = room.min(data.len());
        capture.kept.extend_from_slice(&data[..keep]);
        capture.dropped += (data.len() - keep) as u64;
    }

    /// Takes what was captured so far.
    pub fn take(&self) -> Output {
        let mut capture = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Output {
            bytes: std::mem::take(&mut capture.kept),
            dropped: std::mem::take(&mut capture.dropped),
        }
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_cap_bytes_and_counts_the_rest() {
        let out = CapturedOutput::new(10);
        let mut stream = out.p2_stream();
        stream.write(Bytes::from_static(b"hello ")).unwrap();
        stream.write(Bytes::from_static(b"world, again")).unwrap();
        let captured = out.take();
        assert_eq!(captured.bytes, b"hello worl");
        assert_eq!(captured.dropped, 8);
        assert!(
            captured
                .to_text()
                .ends_with("[warden: output truncated, 8 more bytes dropped]\n")
        );
    }
}
