//! The first bytes of a media file, asked with `Range` as the downloader asks for the file
//! (same headers, redirects by hand through the guard, the same timeouts): `doctor` checks
//! with it that the CDN serves what extraction chose, without downloading the whole file.

use super::*;

/// What the CDN answered for the first bytes of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstBytes {
    /// The mirror that answered (1 for the first).
    pub mirror: usize,
    /// Its HTTP status (206, or 200 from a server that ignores `Range`).
    pub status: u16,
    /// The bytes read (at most what was asked).
    pub bytes: Vec<u8>,
    /// The whole file's size, from `Content-Range` (or `Content-Length` of a 200).
    pub total: Option<u64>,
}

impl FirstBytes {
    /// Whether the bytes start like an MP4 (an `ftyp` box first).
    pub(crate) fn looks_like_mp4(&self) -> bool {
        self.bytes.get(4..8) == Some(b"ftyp".as_slice())
    }
}

impl HttpDownloader {
    /// Bytes `0..n` of `source`'s file, from the first mirror that answers 200 or 206
    /// (nothing is written to disk). The error lists each mirror's answer.
    pub(crate) async fn first_bytes(
        &self,
        source: &MediaSource,
        n: u64,
    ) -> Result<FirstBytes, String> {
        let n = n.max(1);
        let deadline = Instant::now() + self.opts.idle_timeout;
        let mut ends = Vec::new();
        for (i, raw) in source.urls.iter().enumerate() {
            let url = Url::parse(raw).map_err(|e| format!("mirror {} is not a URL: {e}", i + 1))?;
            let response = match self.request(&url, source, (0, Some(n - 1)), deadline).await {
                Ok(r) => r,
                Err(MirrorEnd::Next(why, _) | MirrorEnd::Throttled { why, .. }) => {
                    ends.push(format!("mirror {}: {why}", i + 1));
                    continue;
                }
                Err(MirrorEnd::Stop(e)) => return Err(e.message),
            };
            let status = response.status();
            let total = match status {
                StatusCode::PARTIAL_CONTENT => {
                    content_range(response.headers()).and_then(|(_, t)| t)
                }
                StatusCode::OK => response.content_length(),
                s => {
                    ends.push(format!("mirror {}: HTTP {}", i + 1, s.as_u16()));
                    continue;
                }
            };
            let bytes = read_at_most(response, n as usize, deadline)
                .await
                .map_err(|why| format!("mirror {}: {why}", i + 1))?;
            return Ok(FirstBytes {
                mirror: i + 1,
                status: status.as_u16(),
                bytes,
                total,
            });
        }
        if ends.is_empty() {
            return Err("no media URL".into());
        }
        Err(ends.join("; "))
    }
}

/// Up to `n` bytes of the body, by `deadline`; the rest is not read (the connection is
/// dropped).
async fn read_at_most(
    mut response: reqwest::Response,
    n: usize,
    deadline: Instant,
) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(n);
    while bytes.len() < n {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                let take = chunk.len().min(n - bytes.len());
                bytes.extend_from_slice(&chunk[..take]);
            }
            Ok(Ok(None)) => break,
            Ok(Err(e)) => return Err(format!("connection dropped: {}", short(&e))),
            Err(_) => return Err("no data in time".into()),
        }
    }
    Ok(bytes)
}
