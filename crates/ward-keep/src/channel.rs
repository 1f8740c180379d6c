//! The Keep channel as stdio: workload output becomes `Stdout`/`Stderr` frames, and
//! workload stdin is read from `Stdin` frames on demand.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

use ward_proto::{read_frame, write_frame, HostToKeep, KeepToHost, CHUNK_LEN};
use ward_runtime::stdio::{WorkloadInput, WorkloadOutput};

/// The sending half of the channel, shared by every writer in the Keep.
pub(crate) struct Sender<W>(Arc<Mutex<W>>);

impl<W> Clone for Sender<W> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<W: Write> Sender<W> {
    pub(crate) fn new(w: W) -> Self {
        Self(Arc::new(Mutex::new(w)))
    }

    /// Sends one message.
    pub(crate) fn send(&self, msg: &KeepToHost) -> io::Result<()> {
        let mut w = self
            .0
            .lock()
            .map_err(|_| io::Error::other("channel poisoned"))?;
        write_frame(&mut *w, msg).map_err(io::Error::other)
    }
}

/// Which output stream a [`ChannelOutput`] carries.
#[derive(Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// Workload stdout or stderr, sent as frames.
pub(crate) struct ChannelOutput<W> {
    pub(crate) sender: Sender<W>,
    pub(crate) stream: Stream,
}

impl<W: Write + Send + 'static> WorkloadOutput for ChannelOutput<W> {
    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        for chunk in bytes.chunks(CHUNK_LEN) {
            let msg = match self.stream {
                Stream::Stdout => KeepToHost::Stdout(chunk.to_vec()),
                Stream::Stderr => KeepToHost::Stderr(chunk.to_vec()),
            };
            self.sender.send(&msg)?;
        }
        Ok(())
    }
}

/// Workload stdin, read from `Stdin` frames as the workload asks for it.
pub(crate) struct ChannelInput<R> {
    reader: R,
    pending: Vec<u8>,
    offset: usize,
    closed: bool,
}

impl<R: Read> ChannelInput<R> {
    pub(crate) fn new(reader: R) -> Self {
        Self {
            reader,
            pending: Vec::new(),
            offset: 0,
            closed: false,
        }
    }
}

impl<R: Read + Send + 'static> WorkloadInput for ChannelInput<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.offset == self.pending.len() {
            if self.closed {
                return Ok(0);
            }
            match read_frame::<_, HostToKeep>(&mut self.reader).map_err(io::Error::other)? {
                Some(HostToKeep::Stdin(data)) => {
                    self.pending = data;
                    self.offset = 0;
                }
                // End of input: either the host said so, hung up, or wants us gone.
                Some(HostToKeep::StdinClosed) | Some(HostToKeep::Cancel) | None => {
                    self.closed = true
                }
                Some(other) => {
                    return Err(io::Error::other(format!(
                        "protocol error: unexpected {} while the workload runs",
                        crate::agent::name_of(&other)
                    )))
                }
            }
        }
        let n = buf.len().min(self.pending.len() - self.offset);
        buf[..n].copy_from_slice(&self.pending[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}
