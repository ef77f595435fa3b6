//! The wiring of `run`: build the four stages and the store, open the queue, start the HTTP
//! servers, run the worker until a signal, shut everything down in order. Also
//! `setup-storage`, which shares the store's construction.

use crate::config::{Config, QueueBackend};
use crate::pipeline::Pipeline;
use crate::queue;
use crate::worker::{Worker, WorkerOptions};

use super::{CliError, queue_failure, usage, usage_msg};

/// Raises the descriptor limit to the hard limit (the HTTP server, the database pool and the
/// downloads share it) and returns the soft limit in force.
fn raise_nofile() -> Option<u64> {
    match crate::http::fdlimit::raise_nofile() {
        Ok(n) => {
            tracing::info!(
                before = n.before,
                now = n.after,
                hard = n.hard,
                "file descriptor limit"
            );
            Some(n.after)
        }
        Err(e) => {
            let now = crate::http::fdlimit::current_nofile();
            tracing::warn!(error = %e, now, "file descriptor limit not raised");
            now
        }
    }
}

pub(super) async fn run(config: Config) -> Result<(), CliError> {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), settings = %config.summary(), "douyin-worker starting");
    let nofile = raise_nofile();
    let temp = &config.worker.temp_dir;
    crate::disk::check_temp_dir(temp)
        .map_err(|why| usage_msg(format!("TEMP_DIR={}: {why}", temp.display())))?;
    // The stages are built first: a bad setting stops start-up before anything is opened.
    let backend = storage_backend(&config)?;
    let storage = storage_stage(&config, backend.clone())?;
    let covers = covers(&config, storage.clone(), backend.clone())?;
    let queue = queue::open(&config.queue, config.supabase.as_ref())
        .await
        .map_err(queue_failure)?;
    let stats = queue.stats().await.map_err(queue_failure)?;
    tracing::info!(
        backend = queue.backend(),
        pending = stats.pending_jobs,
        running = stats.running_jobs,
        "queue ready"
    );
    let mut extract_opts = crate::extract::ExtractOptions::new(
        &config.extract,
        &config.browser,
        &config.net,
        config.worker.max_concurrent,
    );
    extract_opts.drift_dir = config.extract.drift_dir.folder(&config.queue.data_dir);
    let extractor =
        std::sync::Arc::new(crate::extract::DouyinExtractor::new(extract_opts).map_err(usage_msg)?);
    let downloader = crate::download::HttpDownloader::new(crate::download::DownloadOptions::new(
        &config.download,
        &config.net,
    ))
    .map_err(usage_msg)?;
    let outcome = ensure_bucket(&config, backend.as_ref()).await?;
    tracing::info!(
        bucket = %config.storage.bucket,
        provider = backend.provider(),
        created = outcome == crate::storage::BucketOutcome::Created,
        "storage ready"
    );
    let pipeline = Pipeline::new(
        extractor.clone(),
        std::sync::Arc::new(downloader),
        std::sync::Arc::new(crate::validate::FileValidator),
        storage,
    );
    let pipeline = match covers {
        Some(covers) => pipeline.with_covers(covers),
        None => pipeline,
    };
    let shutdown = crate::shutdown::on_signals()?;
    let readiness = std::sync::Arc::new(crate::readiness::Readiness::new());
    // The servers bind before any job is claimed: a busy port is a start-up error.
    let server = if config.http.http_addr.is_some() || config.http.api_addr.is_some() {
        let state = crate::http::HttpState::new(
            queue.clone(),
            backend.clone(),
            crate::metrics::install(&config.worker.worker_id),
            shutdown.clone(),
            config.http.api_enabled.then(|| {
                crate::http::api::ApiOptions::new(&config.http).with_events(config.events.clone())
            }),
        )
        .with_readiness(readiness.clone())
        .with_disk(crate::disk::FreeSpace::new(
            temp,
            config.worker.min_free_disk,
        ));
        Some(
            crate::http::start(
                &config.http,
                state,
                nofile,
                std::time::Duration::from_secs(5),
            )
            .await
            .map_err(usage_msg)?,
        )
    } else {
        None
    };
    let worker = Worker::new(
        queue,
        std::sync::Arc::new(pipeline),
        WorkerOptions::new(&config.worker),
    )
    .with_readiness(readiness);
    worker.run(shutdown).await;
    // Uploads of cancelled jobs are terminated on the store before the process goes.
    backend.drain().await;
    // The browser, if one was started, closes politely and its profile folder goes.
    extractor.shutdown().await;
    // The server answers (readyz: 503) until the worker is done.
    if let Some(server) = server {
        server.stop().await;
    }
    Ok(())
}

/// The storage backend the configuration names (see `storage::configured`); a bad setting is
/// a usage error.
pub(super) fn storage_backend(
    config: &Config,
) -> Result<std::sync::Arc<dyn crate::storage::ObjectBackend>, CliError> {
    crate::storage::configured::backend(&config.storage, config.supabase.as_ref())
        .map_err(usage_msg)
}

/// The storage stage over `backend`; a bad `OBJECT_KEY_TEMPLATE` is a usage error.
fn storage_stage(
    config: &Config,
    backend: std::sync::Arc<dyn crate::storage::ObjectBackend>,
) -> Result<std::sync::Arc<dyn crate::stage::Storage>, CliError> {
    let template = &config.storage.key_template;
    crate::storage::check_key_template(template)
        .map_err(|why| usage_msg(format!("OBJECT_KEY_TEMPLATE={template}: {why}")))?;
    let opts = crate::storage::StorageOptions {
        key_template: template.clone(),
        cache_control: format!("max-age={}", config.storage.cache_control_seconds),
        ..Default::default()
    };
    Ok(std::sync::Arc::new(crate::storage::StorageStage::new(
        backend, opts,
    )))
}

/// What stores covers, when `STORE_COVERS` is on: a downloader with the media's guard and
/// timeouts but a cover's size cap; a bad `COVER_KEY_TEMPLATE` is a usage error.
fn covers(
    config: &Config,
    storage: std::sync::Arc<dyn crate::stage::Storage>,
    backend: std::sync::Arc<dyn crate::storage::ObjectBackend>,
) -> Result<Option<std::sync::Arc<crate::cover::Covers>>, CliError> {
    if !config.storage.store_covers {
        return Ok(None);
    }
    let template = &config.storage.cover_key_template;
    crate::storage::check_key_template(template)
        .and_then(|()| {
            if *template == config.storage.key_template {
                Err("expected a key other than OBJECT_KEY_TEMPLATE's, e.g. \
                     {douyin_id}/{douyin_id}_cover.{ext}"
                    .into())
            } else {
                Ok(())
            }
        })
        .map_err(|why| usage_msg(format!("COVER_KEY_TEMPLATE={template}: {why}")))?;
    let opts = crate::download::DownloadOptions {
        max_bytes: crate::cover::MAX_COVER_BYTES,
        total_timeout: crate::cover::COVER_TIMEOUT / 2,
        ..crate::download::DownloadOptions::new(&config.download, &config.net)
    };
    let downloader = crate::download::HttpDownloader::new(opts).map_err(usage_msg)?;
    Ok(Some(std::sync::Arc::new(crate::cover::Covers::new(
        downloader, storage, backend, template,
    ))))
}

/// Creates the bucket when it is missing; the error says what to do.
async fn ensure_bucket(
    config: &Config,
    backend: &dyn crate::storage::ObjectBackend,
) -> Result<crate::storage::BucketOutcome, CliError> {
    backend
        .ensure_bucket(&config.storage.bucket_spec)
        .await
        .map_err(|e| {
            usage(anyhow::anyhow!(
                "storage bucket {}: {e}",
                config.storage.bucket
            ))
        })
}

pub(super) async fn setup_storage(config: Config) -> Result<(), CliError> {
    let backend = storage_backend(&config)?;
    let outcome = ensure_bucket(&config, backend.as_ref()).await?;
    println!(
        "bucket {} ({}): {}",
        config.storage.bucket,
        backend.provider(),
        match outcome {
            crate::storage::BucketOutcome::Exists => "exists",
            crate::storage::BucketOutcome::Created => "created",
        }
    );
    if !matches!(config.queue.backend, QueueBackend::Sqlite { .. }) {
        let queue = queue::open(&config.queue, config.supabase.as_ref())
            .await
            .map_err(queue_failure)?;
        if queue.ensure_videos_bucket().await? {
            println!("ensure_videos_bucket(): called");
        }
    }
    Ok(())
}
