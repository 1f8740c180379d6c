//! Adapters from simple byte sinks/sources to wasmtime-wasi's stdio streams.
//!
//! The runtime does not know where a workload's stdio goes (a CBOR channel in a Keep,
//! a buffer in a test); callers implement [`WorkloadOutput`] and [`WorkloadInput`].
//! Reads and writes block the calling thread: a workload is one synchronous guest.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

/// Where a workload's stdout or stderr bytes go.
pub trait WorkloadOutput: Send + Sync + 'static {
    /// Delivers `bytes`, blocking until they are accepted.
    fn write_all(&self, bytes: &[u8]) -> io::Result<()>;
}

/// Where a workload's stdin bytes come from.
pub trait WorkloadInput: Send + 'static {
    /// Reads at most `buf.len()` bytes, blocking until some arrive; `Ok(0)` is EOF.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

/// Largest single read handed to the guest.
const MAX_READ: usize = 64 << 10;

fn stream_err(e: io::Error) -> StreamError {
    StreamError::LastOperationFailed(wasmtime::Error::msg(e.to_string()))
}

/// A [`StdoutStream`] that writes to a [`WorkloadOutput`].
#[derive(Clone)]
pub(crate) struct OutputAdapter(pub(crate) Arc<dyn WorkloadOutput>);

impl IsTerminal for OutputAdapter {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputAdapter {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for OutputAdapter {
    async fn ready(&mut self) {}
}

impl OutputStream for OutputAdapter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0.write_all(&bytes).map_err(stream_err)
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_READ)
    }
}

impl AsyncWrite for OutputAdapter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.0.write_all(buf).map(|()| buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A [`StdinStream`] that reads from a [`WorkloadInput`]. Clones share one source, as
/// WASI requires.
#[derive(Clone)]
pub(crate) struct InputAdapter(pub(crate) Arc<Mutex<Box<dyn WorkloadInput>>>);

impl InputAdapter {
    fn read_some(&self, max: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; max.clamp(1, MAX_READ)];
        let mut source = self
            .0
            .lock()
            .map_err(|_| io::Error::other("stdin source poisoned"))?;
        let n = source.read(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }
}

impl IsTerminal for InputAdapter {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for InputAdapter {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncRead + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for InputAdapter {
    // Reads block until data arrives, so the stream is always "ready".
    async fn ready(&mut self) {}
}

impl InputStream for InputAdapter {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        let data = self.read_some(size).map_err(stream_err)?;
        if data.is_empty() {
            return Err(StreamError::Closed);
        }
        Ok(data.into())
    }
}

impl AsyncRead for InputAdapter {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let data = self.read_some(buf.remaining())?;
        buf.put_slice(&data);
        Poll::Ready(Ok(()))
    }
}

/// A [`WorkloadOutput`] that collects bytes in memory (for tests and embedding).
#[derive(Clone, Default)]
pub struct MemoryOutput(Arc<Mutex<Vec<u8>>>);

impl MemoryOutput {
    /// Everything written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl WorkloadOutput for MemoryOutput {
    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("output poisoned"))?
            .extend_from_slice(bytes);
        Ok(())
    }
}

/// A [`WorkloadInput`] over fixed bytes (for tests and embedding).
pub struct MemoryInput(io::Cursor<Vec<u8>>);

impl MemoryInput {
    /// Input that yields `data`, then EOF.
    pub fn new(data: Vec<u8>) -> Self {
        Self(io::Cursor::new(data))
    }
}

impl WorkloadInput for MemoryInput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        io::Read::read(&mut self.0, buf)
    }
}
