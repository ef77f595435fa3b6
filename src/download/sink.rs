//! Where downloaded bytes go: a writer thread that hashes (SHA-256) and writes them to the
//! temp file, fed through a small bounded channel. The network task never blocks on the
//! disk or the hash, the two run on different cores, and memory stays at the channel's few
//! chunks plus the write buffer.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

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
}

fn gone() -> std::io::Error {
    std::io::Error::other("the temp-file writer stopped (a write failed)")
}

impl Sink {
    /// Starts a writer for `file` (already created, owner-only).
    pub(super) fn start(file: File) -> Self {
        let (tx, mut rx) = mpsc::channel::<Cmd>(4);
        std::thread::Builder::new()
            .name("download-writer".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let mut hasher = Sha256::new();
                let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
                let mut failed: Option<std::io::Error> = None;
                while let Some(cmd) = rx.blocking_recv() {
                    match cmd {
                        Cmd::Data(b) => {
                            if failed.is_none() {
                                hasher.update(&b);
                                if let Err(e) = out.write_all(&b) {
                                    failed = Some(e);
                                }
                            }
                        }
                        Cmd::Reset => {
                            hasher = Sha256::new();
                            let r = out.flush().and_then(|_| {
                                let f = out.get_mut();
                                f.set_len(0)?;
                                f.seek(SeekFrom::Start(0)).map(|_| ())
                            });
                            failed = r.err();
                        }
                        Cmd::Finish(reply) => {
                            // No fsync: the temp file is read back from the page cache for
                            // validation and upload, then deleted. A crash loses it either
                            // way, and the job is retried; the store makes the copy durable.
                            let r = match failed.take() {
                                Some(e) => Err(e),
                                None => out.flush().map(|_| format!("{:x}", hasher.finalize())),
                            };
                            let _ = reply.send(r);
                            return;
                        }
                    }
                }
            })
            .expect("spawn the download writer");
        Self {
            tx,
            pending: bytes::BytesMut::with_capacity(BATCH),
        }
    }

    /// Queues bytes for the file.
    pub(super) async fn write(&mut self, bytes: Bytes) -> std::io::Result<()> {
        if self.pending.is_empty() && bytes.len() >= BATCH {
            return self.tx.send(Cmd::Data(bytes)).await.map_err(|_| gone());
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
        self.tx.send(Cmd::Data(batch)).await.map_err(|_| gone())
    }

    /// Empties the file and the hash.
    pub(super) async fn reset(&mut self) -> std::io::Result<()> {
        self.pending.clear();
        self.tx.send(Cmd::Reset).await.map_err(|_| gone())
    }

    /// Waits for every byte to be on disk; the hex SHA-256 of the file.
    pub(super) async fn finish(mut self) -> std::io::Result<String> {
        self.flush().await?;
        let (reply, answer) = oneshot::channel();
        self.tx.send(Cmd::Finish(reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
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
