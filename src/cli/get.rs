//! `douyin-worker get`: extract, download and validate one link to a local file, with a
//! progress bar on a terminal and plain lines otherwise.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::download::{DownloadOptions, HttpDownloader};
use crate::error::JobError;
use crate::extract::{DouyinExtractor, ExtractOptions};
use crate::stage::Validator;
use crate::validate::FileValidator;

/// Progress for people: a bar on a terminal, a line every few seconds elsewhere.
enum Reporter {
    Bar(ProgressBar),
    Lines(Mutex<Instant>),
}

impl Reporter {
    fn new() -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            Reporter::Bar(bar)
        } else {
            Reporter::Lines(Mutex::new(Instant::now()))
        }
    }

    fn update(&self, done: u64, total: Option<u64>) {
        match self {
            Reporter::Bar(bar) => {
                if let Some(total) = total {
                    bar.set_length(total);
                }
                bar.set_position(done);
            }
            Reporter::Lines(last) => {
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() >= Duration::from_secs(2) || total == Some(done) {
                    *last = Instant::now();
                    match total {
                        Some(t) if t > 0 => {
                            eprintln!("downloaded {done} of {t} bytes ({}%)", done * 100 / t)
                        }
                        _ => eprintln!("downloaded {done} bytes"),
                    }
                }
            }
        }
    }

    fn finish(&self) {
        if let Reporter::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// The error code of an `--output` that cannot be written (exit code 2: bad input).
pub(crate) const BAD_OUTPUT: &str = "bad-output";

/// The error code when a signal stopped `get` (exit code 130).
pub(crate) const INTERRUPTED: &str = "interrupted";

/// Where the file goes, checked before anything is downloaded: the folder (for the temp
/// file: the final move is a rename) and the fixed file name, if one was given. `-o DIR` and
/// `-o DIR/` need an existing folder; `-o FILE` a folder to put it in.
fn destination(output: Option<&Path>) -> Result<(PathBuf, Option<PathBuf>), JobError> {
    let Some(p) = output else {
        return Ok((PathBuf::from("."), None));
    };
    let bad =
        |why: String| JobError::permanent(BAD_OUTPUT, format!("--output {}: {why}", p.display()));
    if p.is_dir() {
        return Ok((p.to_path_buf(), None));
    }
    if p.as_os_str().to_string_lossy().ends_with('/') {
        return Err(bad("no such folder (create it first)".into()));
    }
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    if !dir.is_dir() {
        return Err(bad(format!("the folder {} does not exist", dir.display())));
    }
    Ok((dir, Some(p.to_path_buf())))
}

/// Runs `get`; prints a JSON summary of the saved file on success. SIGINT or SIGTERM stops it
/// and removes the partial download.
pub async fn run(config: Config, link: &str, output: Option<&Path>) -> Result<(), JobError> {
    let (dir, fixed) = destination(output)?;
    // The partial file lives beside the destination, so the final move is a rename; the
    // folder is made first (a folder we cannot write in fails before any download) and is
    // removed on every way out, a signal included.
    let tmp = tempfile::Builder::new()
        .prefix(".douyin-worker-get-")
        .tempdir_in(&dir)
        .map_err(|e| {
            JobError::permanent(
                BAD_OUTPUT,
                format!("cannot write in {}: {e}", dir.display()),
            )
        })?;
    let saved = tokio::select! {
        saved = fetch(config, link, &dir, fixed, tmp.path()) => saved,
        signal = crate::shutdown::interrupted() => Err(JobError::permanent(
            INTERRUPTED,
            format!("interrupted by {signal}: nothing was saved"),
        )),
    };
    drop(tmp);
    let summary = saved?;
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    Ok(())
}

/// Extracts, downloads into `tmp`, validates, and moves the file into place with the mode of
/// a new file (`0o666` less the umask, not the download's owner-only mode); its summary.
async fn fetch(
    config: Config,
    link: &str,
    dir: &Path,
    fixed: Option<PathBuf>,
    tmp: &Path,
) -> Result<serde_json::Value, JobError> {
    let setup = |e: String| JobError::permanent("config", e);
    let extractor = DouyinExtractor::new(ExtractOptions::new(
        &config.extract,
        &config.browser,
        &config.net,
        config.worker.max_concurrent,
    ))
    .map_err(setup)?;
    let downloader =
        HttpDownloader::new(DownloadOptions::new(&config.download, &config.net)).map_err(setup)?;
    let found = extractor.extract(link).await?;
    eprintln!(
        "{}: {} (via {})",
        found.aweme_id,
        found.title.as_deref().unwrap_or("untitled"),
        found.strategy
    );
    let source = found.media_source()?;
    let reporter = Reporter::new();
    let progress = |done: u64, total: Option<u64>| reporter.update(done, total);
    let file = downloader.download_to(&source, tmp, &progress).await;
    reporter.finish();
    let file = file?;
    let checked = file.clone();
    let info = tokio::task::spawn_blocking(move || FileValidator.validate(&checked))
        .await
        .map_err(|e| JobError::transient("validate-panic", e.to_string()))??;
    let path = fixed.unwrap_or_else(|| dir.join(format!("{}.{}", found.aweme_id, info.extension)));
    let cannot = |e: std::io::Error| {
        JobError::permanent("output", format!("cannot write {}: {e}", path.display()))
    };
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::Permissions::from_mode(crate::disk::shared_file_mode());
    std::fs::set_permissions(&file.path, mode).map_err(cannot)?;
    std::fs::rename(&file.path, &path).map_err(cannot)?;
    Ok(serde_json::json!({
        "path": path,
        "aweme_id": found.aweme_id,
        "title": found.title,
        "size": file.size,
        "sha256": file.sha256,
        "mime_type": info.mime_type,
        "media": info.metadata,
        "strategy": found.strategy,
    }))
}
