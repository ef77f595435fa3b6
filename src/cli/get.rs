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

/// Where the file goes: (folder for the temp file, final path given the extension).
fn destination(output: Option<&Path>, aweme_id: &str) -> (PathBuf, impl Fn(&str) -> PathBuf) {
    let (dir, fixed) = match output {
        Some(p) if p.is_dir() => (p.to_path_buf(), None),
        Some(p) => (
            p.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
            Some(p.to_path_buf()),
        ),
        None => (PathBuf::from("."), None),
    };
    let id = aweme_id.to_string();
    let folder = dir.clone();
    (dir, move |ext: &str| {
        fixed
            .clone()
            .unwrap_or_else(|| folder.join(format!("{id}.{ext}")))
    })
}

/// Runs `get`; prints a JSON summary of the saved file on success.
pub async fn run(config: Config, link: &str, output: Option<&Path>) -> Result<(), JobError> {
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
    let (dir, final_path) = destination(output, &found.aweme_id);
    // The partial file lives beside the destination, so the final move is a rename; the
    // folder is removed on every way out.
    let tmp = tempfile::Builder::new()
        .prefix(".douyin-worker-get-")
        .tempdir_in(&dir)
        .map_err(|e| {
            JobError::permanent("output", format!("cannot write in {}: {e}", dir.display()))
        })?;
    let reporter = Reporter::new();
    let progress = |done: u64, total: Option<u64>| reporter.update(done, total);
    let file = downloader.download_to(&source, tmp.path(), &progress).await;
    reporter.finish();
    let file = file?;
    let checked = file.clone();
    let info = tokio::task::spawn_blocking(move || FileValidator.validate(&checked))
        .await
        .map_err(|e| JobError::transient("validate-panic", e.to_string()))??;
    let path = final_path(&info.extension);
    std::fs::rename(&file.path, &path).map_err(|e| {
        JobError::permanent("output", format!("cannot write {}: {e}", path.display()))
    })?;
    let summary = serde_json::json!({
        "path": path,
        "aweme_id": found.aweme_id,
        "title": found.title,
        "size": file.size,
        "sha256": file.sha256,
        "mime_type": info.mime_type,
        "media": info.metadata,
        "strategy": found.strategy,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    Ok(())
}
