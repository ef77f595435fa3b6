//! Where downloaded bytes go: a writer thread that hashes (SHA-256) and writes them to the
//! temp file, fed through a small bounded channel. The network task never blocks on the
//! disk or the hash, the two run on different cores, and memory stays at the channel's few
//! chunks plus the write buffer.
//!
//! The first write that fails (a full disk: `ENOSPC`) stops the writer at once: the next
//! [`Sink::write`] returns that error, so the download stops there instead of reading the
//! rest of the file for nothing.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

enum Cmd {
    Data(Bytes),
    /// Start the file over (a server answered 200 to a resume).
    Reset,
    /// Flush and answer with the hex SHA-256.
    Finish(oneshot::Sender<std::io::Result<String>>),
}

/// Bytes gathered before they go to the writer thread: fewer hand-overs and wake-ups.
const BATCH: usize = 256 * 1024;

/// The writer thread's end of a download.
pub(super) struct Sink {
    tx: mpsc::Sender<Cmd>,
    pending: bytes::BytesMut,
    /// The error that stopped the writer thread.
    failure: Arc<Mutex<Option<std::io::Error>>>,
}

impl Sink {
    /// Starts a writer for `file` (already created, owner-only).
    pub(super) fn start(file: File) -> Self {
        let (tx, mut rx) = mpsc::channel::<Cmd>(4);
        let failure = Arc::new(Mutex::new(None));
        let failed = failure.clone();
        std::thread::Builder::new()
            .name("download-writer".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let mut hasher = Sha256::new();
                let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
                while let Some(cmd) = rx.blocking_recv() {
                    let result = match cmd {
                        Cmd::Data(b) => {
                            hasher.update(&b);
                            out.write_all(&b)
                        }
                        Cmd::Reset => {
                            hasher = Sha256::new();
                            out.flush().and_then(|_| {
                                let f = out.get_mut();
                                f.set_len(0)?;
                                f.seek(SeekFrom::Start(0)).map(|_| ())
                            })
                        }
                        Cmd::Finish(reply) => {
                            // No fsync: the temp file is read back from the page cache for
                            // validation and upload, then deleted. A crash loses it either
                            // way, and the job is retried; the store makes the copy durable.
                            let r = out.flush().map(|_| format!("{:x}", hasher.finalize()));
                            let _ = reply.send(r);
                            return;
                        }
                    };
                    if let Err(e) = result {
                        // Closing the channel (on return) fails the next send at once.
                        *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return;
                    }
                }
            })
            .expect("spawn the download writer");
        Self {
            tx,
            pending: bytes::BytesMut::with_capacity(BATCH),
            failure,
        }
    }

    /// Why the writer stopped: its write error, else a generic one.
    fn stopped(&self) -> std::io::Error {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| std::io::Error::other("the temp-file writer stopped"))
    }

    async fn send(&self, cmd: Cmd) -> std::io::Result<()> {
        match self.tx.send(cmd).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.stopped()),
        }
    }

    /// Queues bytes for the file; fails as soon as the writer has failed.
    pub(super) async fn write(&mut self, bytes: Bytes) -> std::io::Result<()> {
        if self.tx.is_closed() {
            return Err(self.stopped());
        }
        if self.pending.is_empty() && bytes.len() >= BATCH {
            return self.send(Cmd::Data(bytes)).await;
        }
        self.pending.extend_from_slice(&bytes);
        if self.pending.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = self.pending.split().freeze();
        self.pending.reserve(BATCH);
        self.send(Cmd::Data(batch)).await
    }

    /// Empties the file and the hash.
    pub(super) async fn reset(&mut self) -> std::io::Result<()> {
        self.pending.clear();
        self.send(Cmd::Reset).await
    }

    /// Waits for every byte to be on disk; the hex SHA-256 of the file.
    pub(super) async fn finish(mut self) -> std::io::Result<String> {
        self.flush().await?;
        let (reply, answer) = oneshot::channel();
        self.send(Cmd::Finish(reply)).await?;
        match answer.await {
            Ok(r) => r,
            Err(_) => Err(self.stopped()),
        }
    }
}

/// Opens (creating it owner-only, or emptying it for the next mirror) the download file. It
/// lives in the job's private folder under a unique name.
pub(super) fn open_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/dev/full` fails every write with `ENOSPC`, as a full disk does.
    #[tokio::test]
    async fn the_first_failed_write_stops_the_sink_with_its_error() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let mut sink = Sink::start(full);
        let chunk = Bytes::from(vec![7u8; BATCH]);
        let mut accepted = 0;
        let error = loop {
            match sink.write(chunk.clone()).await {
                Ok(()) => accepted += 1,
                Err(e) => break e,
            }
            assert!(accepted < 64, "the sink went on after the disk was full");
        };
        assert!(crate::disk::is_full(&error), "{error}");
        // The channel's few batches at most went in after the failed one.
        assert!(accepted <= 8, "{accepted} batches accepted");
    }

    #[tokio::test]
    async fn a_writer_that_is_fine_hashes_what_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut sink = Sink::start(open_private(&path).unwrap());
        sink.write(Bytes::from_static(b"abc")).await.unwrap();
        let sha = sink.finish().await.unwrap();
        assert_eq!(sha, format!("{:x}", Sha256::digest(b"abc")));
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
    }
}
