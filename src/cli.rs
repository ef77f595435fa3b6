//! The command line: one binary, subcommands sharing one configuration.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod doctor;
mod get;
mod run;

use crate::admin;
use crate::config::{Config, QueueBackend, RawSettings};
use crate::error::{ErrorClass, JobError};
use crate::exit;
use crate::queue;

/// Downloads Douyin videos queued in PostgreSQL, Supabase or SQLite and stores them.
#[derive(Parser, Debug)]
#[command(name = "douyin-worker", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Settings (each also read from its environment variable and from `.env`).
    #[command(flatten)]
    pub settings: RawSettings,

    /// What to do [default: run].
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands: the worker (`run`), operations (`migrate`, `enqueue`, `stats`, `jobs`,
/// `retry`, `gc`, `setup-storage`, `doctor`) and media (`extract`, `get`).
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the worker until SIGINT or SIGTERM.
    Run,
    /// Create or upgrade the database schema (PostgreSQL via DATABASE_URL, or the SQLite file).
    Migrate,
    /// Resolve a Douyin link, share text or id and print what would be downloaded, as JSON.
    /// Exit code 0 found, 2 bad input (not a Douyin link), 3 unavailable (deleted, private,
    /// region blocked, image post), 4 transient failure (network, captcha), 5 drift (Douyin
    /// answered in a shape no parser knows).
    Extract {
        /// The link, share text or aweme id.
        link: String,
        /// Write every strategy's answer to this folder (secrets and cookie values removed),
        /// e.g. to attach to a bug report or to turn into a test fixture.
        #[arg(long, value_name = "FOLDER")]
        save: Option<std::path::PathBuf>,
    },
    /// Queue downloads of Douyin links, share texts, aweme ids or video row ids (UUIDs). A
    /// video already queued is reported, not queued twice; one already stored is reported
    /// as ready unless --force.
    Enqueue {
        /// Links, share texts, aweme ids or `videos.id` UUIDs.
        #[arg(required = true)]
        inputs: Vec<String>,
        /// Claim priority (higher first) [default: from the video's ranking].
        #[arg(long)]
        priority: Option<i32>,
        /// Queue even videos that are already stored.
        #[arg(long)]
        force: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Create the storage bucket if it is missing (public or private, size limit and content
    /// types from the settings) and call `ensure_videos_bucket()` where it exists.
    SetupStorage,
    /// Extract, download and validate to a local file (exit codes as for `extract`; a file
    /// that fails validation is a transient failure).
    Get {
        /// The link, share text or aweme id.
        link: String,
        /// Where to write: a file in an existing folder, or an existing folder [default: the
        /// current folder]. Checked before anything is downloaded.
        #[arg(short = 'o', long = "output", value_name = "FILE|DIR")]
        output: Option<std::path::PathBuf>,
    },
    /// The queue at a glance: the get_worker_stats() figures, jobs due now and how long the
    /// oldest of them has waited, and running jobs per worker.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List jobs, newest first: id, video, status, attempts, worker, progress, times and the
    /// last error.
    Jobs {
        /// Only jobs with this status: pending, running, completed or failed.
        #[arg(long, value_name = "STATUS")]
        status: Option<crate::queue::JobStatus>,
        /// At most this many.
        #[arg(long, value_name = "N", default_value_t = 50,
              value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Queue failed jobs again: a new pending job for each one's video (the failed row stays
    /// as history). Prints each outcome: queued, duplicate (the video already has an active
    /// job), not_failed, marked_for_deletion, superseded (the video was stored since or has a
    /// newer job) or not_found (exit code 2).
    Retry {
        /// Job ids (see `jobs --status failed`).
        #[arg(value_name = "JOB_ID", required_unless_present = "all_failed",
              conflicts_with = "all_failed", value_parser = crate::admin::retry::parse_job_id)]
        ids: Vec<uuid::Uuid>,
        /// Every failed job that is the latest of its video, whose video is neither stored nor
        /// marked for deletion.
        #[arg(long)]
        all_failed: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete stored objects that no video wants (videos deleted, e.g. by
    /// cleanup_old_low_viral(), or marked for deletion; keys replaced by a newer download).
    /// A dry run unless --apply; exit code 1 if a deletion failed.
    Gc {
        /// Delete the orphans (otherwise only list them).
        #[arg(long)]
        apply: bool,
        /// Keep orphans younger than this (an upload in flight is not recorded yet): e.g.
        /// 24h, 90m, 7d, or 0.
        #[arg(long, value_name = "AGE", default_value = crate::admin::gc::DEFAULT_MIN_AGE,
              value_parser = crate::admin::gc::parse_age)]
        min_age: std::time::Duration,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check what works with this configuration: the settings, the queue and its grants, the
    /// store (a small object written, read back, signed and deleted), the temp folder, each
    /// Douyin strategy and the CDN, the browser, the HTTP listeners. Exit code 0 when
    /// everything `run` needs works, 1 otherwise, 2 for a bad configuration.
    Doctor {
        /// The video extraction is tried on: a link, share text or aweme id.
        #[arg(long, value_name = "LINK|ID", default_value = crate::doctor::DEFAULT_VIDEO)]
        video: String,
        /// Longest time one check may take, in seconds.
        #[arg(long, value_name = "S", default_value_t = 60,
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    /// The exit code.
    pub code: u8,
    /// What to tell the user.
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError {
            code: exit::FAILURE,
            error: e.into(),
        }
    }
}

fn usage(e: impl Into<anyhow::Error>) -> CliError {
    CliError {
        code: exit::USAGE,
        error: e.into(),
    }
}

/// Parses the command line and runs it. `main` only maps the result to an exit code.
pub fn main() -> ExitCode {
    // A `.env` in the working directory, as the old worker read; real variables win. A file
    // that cannot be read whole stops start-up: half of it would run the wrong setup.
    if let Err(e) = crate::config::env_file::load() {
        eprintln!("douyin-worker: {e}");
        return ExitCode::from(exit::USAGE);
    }
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let config = match Config::resolve(&cli.settings, Some(&matches)) {
        Ok(c) => c,
        Err(e) => {
            if let Some(Command::Doctor { json, .. }) = &cli.command {
                doctor::print(&crate::doctor::bad_configuration(&e), *json);
            }
            eprintln!("douyin-worker: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    use std::io::IsTerminal;
    crate::telemetry::init(
        config.log.format,
        config.log.debug,
        std::io::stderr().is_terminal(),
        std::io::stderr,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("douyin-worker: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let command = cli.command.unwrap_or(Command::Run);
    match runtime.block_on(execute(command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("douyin-worker: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

/// Runs one subcommand with a validated configuration.
pub async fn execute(command: Command, config: Config) -> Result<(), CliError> {
    match command {
        Command::Run => run::run(config).await,
        Command::Migrate => migrate(config).await,
        Command::Extract { link, save } => extract(config, &link, save).await,
        Command::SetupStorage => run::setup_storage(config).await,
        Command::Enqueue {
            inputs,
            priority,
            force,
            json,
        } => enqueue(config, &inputs, priority, force, json).await,
        Command::Doctor {
            video,
            timeout,
            json,
        } => doctor::run(config, video, timeout, json).await,
        Command::Get { link, output } => {
            get::run(config, &link, output.as_deref())
                .await
                .map_err(|e| CliError {
                    code: exit_code(&e),
                    error: anyhow::anyhow!("{e}"),
                })
        }
        Command::Stats { json } => {
            let queue = queue::open(&config.queue, config.supabase.as_ref())
                .await
                .map_err(queue_failure)?;
            let format = admin::Format::from_json_flag(json);
            admin::stats::run(queue.as_ref(), format, &mut std::io::stdout())
                .await
                .map_err(admin_failure)
        }
        Command::Jobs {
            status,
            limit,
            json,
        } => {
            let queue = queue::open(&config.queue, config.supabase.as_ref())
                .await
                .map_err(queue_failure)?;
            let filter = queue::JobFilter { status, limit };
            let format = admin::Format::from_json_flag(json);
            admin::jobs::run(queue.as_ref(), &filter, format, &mut std::io::stdout())
                .await
                .map_err(admin_failure)
        }
        Command::Retry {
            ids,
            all_failed,
            json,
        } => {
            let queue = queue::open(&config.queue, config.supabase.as_ref())
                .await
                .map_err(queue_failure)?;
            let target = if all_failed {
                queue::RetryTarget::AllFailed
            } else {
                queue::RetryTarget::Jobs(ids)
            };
            let format = admin::Format::from_json_flag(json);
            admin::retry::run(queue.as_ref(), &target, format, &mut std::io::stdout())
                .await
                .map_err(admin_failure)
        }
        Command::Gc {
            apply,
            min_age,
            json,
        } => {
            let queue = queue::open(&config.queue, config.supabase.as_ref())
                .await
                .map_err(queue_failure)?;
            let store = run::storage_backend(&config)?;
            let opts = admin::gc::GcOptions { apply, min_age };
            let format = admin::Format::from_json_flag(json);
            admin::gc::run(
                queue.as_ref(),
                store.as_ref(),
                opts,
                format,
                &mut std::io::stdout(),
            )
            .await
            .map(drop)
            .map_err(admin_failure)
        }
    }
}

fn admin_failure(e: admin::AdminError) -> CliError {
    CliError {
        code: e.exit_code(),
        error: e.into(),
    }
}

async fn migrate(config: Config) -> Result<(), CliError> {
    match &config.queue.backend {
        QueueBackend::Postgres { url } => {
            // One connection, no pool: a database that cannot be reached fails at once.
            let options = crate::config::database_url::connect_options(url.expose())
                .map_err(|e| usage(anyhow::anyhow!("DATABASE_URL: {e}")))?;
            let mut conn = sqlx::ConnectOptions::connect(&options).await.map_err(|e| {
                let error = anyhow::anyhow!("cannot connect to DATABASE_URL: {e}");
                let code = match queue::QueueError::from(e) {
                    e @ queue::QueueError::PermissionDenied(_) => queue_failure(e).code,
                    _ => exit::FAILURE,
                };
                CliError { code, error }
            })?;
            let report = crate::queue::migrate::apply_postgres_on(&mut conn).await?;
            print_report(&report);
        }
        QueueBackend::Sqlite { path } => {
            // Opening applies the schema.
            queue::sqlite::SqliteQueue::open(path).await?;
            println!("SQLite queue ready at {}", path.display());
        }
        QueueBackend::Supabase => {
            return Err(usage(anyhow::anyhow!(
                "migrations cannot run over the Supabase REST API: paste {}, in that order, into \
                 the Supabase SQL editor, or run `douyin-worker migrate` once with DATABASE_URL set to the project's \
                 connection string",
                crate::queue::migrate::postgres_files_in_order()
            )));
        }
    }
    Ok(())
}

async fn extract(
    config: Config,
    link: &str,
    save: Option<std::path::PathBuf>,
) -> Result<(), CliError> {
    use crate::extract::{DouyinExtractor, ExtractOptions};
    let mut opts = ExtractOptions::new(
        &config.extract,
        &config.browser,
        &config.net,
        config.worker.max_concurrent,
    );
    opts.drift_dir = config.extract.drift_dir.folder(&config.queue.data_dir);
    opts.save_answers = save;
    let extractor = DouyinExtractor::new(opts).map_err(usage_msg)?;
    match extractor.extract(link).await {
        Ok(found) => {
            println!("{}", serde_json::to_string_pretty(&found)?);
            Ok(())
        }
        Err(e) => {
            let class = e.class();
            let answer = serde_json::json!({
                "error": {"class": class, "code": e.code(), "message": e.to_string()}
            });
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Err(CliError {
                code: exit_code(&JobError::from(e.clone())),
                error: e.into(),
            })
        }
    }
}

/// The exit code of `extract` and `get` for a failure: 2 bad input, 3 unavailable, 4
/// transient, 5 drift, 130 stopped by a signal.
pub fn exit_code(e: &JobError) -> u8 {
    match e.class {
        _ if e.code == crate::extract::UNSUPPORTED_LINK || e.code == get::BAD_OUTPUT => exit::USAGE,
        _ if e.code == get::INTERRUPTED => exit::INTERRUPTED,
        ErrorClass::Permanent => exit::PERMANENT,
        ErrorClass::Transient => exit::TRANSIENT,
        ErrorClass::Drift => exit::DRIFT,
    }
}

async fn enqueue(
    config: Config,
    inputs: &[String],
    priority: Option<i32>,
    force: bool,
    json: bool,
) -> Result<(), CliError> {
    use crate::extract::{DouyinExtractor, ExtractOptions};
    use crate::queue::EnqueueRequest;
    let queue = queue::open(&config.queue, config.supabase.as_ref())
        .await
        .map_err(queue_failure)?;
    // Short links are resolved with one request to Douyin, as `extract` does.
    let douyin = DouyinExtractor::new(ExtractOptions::new(
        &config.extract,
        &config.browser,
        &config.net,
        config.worker.max_concurrent,
    ))
    .map_err(usage_msg)?;
    let base = EnqueueRequest {
        priority,
        force,
        max_attempts: Some(config.worker.max_attempts),
        ..Default::default()
    };
    let (rows, refused) = admin::enqueue::run(queue.as_ref(), inputs, &base, &douyin)
        .await
        .map_err(queue_failure)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let mut table = admin::table::Table::new(["OUTCOME", "JOB", "VIDEO", "INPUT"]);
        for r in &rows {
            let cell = |k: &str| r[k].as_str().unwrap_or(admin::table::NONE).to_string();
            let detail = if r["error"].is_string() {
                cell("error")
            } else if r["note"].is_string() {
                format!("{} ({})", cell("input"), cell("note"))
            } else {
                cell("input")
            };
            table.row([cell("outcome"), cell("job_id"), cell("video_id"), detail]);
        }
        table.write(&mut std::io::stdout())?;
    }
    if refused > 0 {
        return Err(usage(anyhow::anyhow!(
            "{refused} of {} inputs were refused",
            inputs.len()
        )));
    }
    Ok(())
}

fn usage_msg(msg: String) -> CliError {
    usage(anyhow::anyhow!(msg))
}

fn print_report(report: &crate::queue::migrate::MigrationReport) {
    for name in &report.applied {
        println!("applied    {name}");
    }
    for name in &report.unchanged {
        println!("unchanged  {name}");
    }
}

/// A queue that cannot be opened: its schema, a refused request, or credentials it refuses
/// (a wrong `SUPABASE_SERVICE_ROLE_KEY` or database role) are configuration errors, exit 2, as
/// a key the store refuses is; a database that cannot be reached is a failure, exit 1.
fn queue_failure(e: queue::QueueError) -> CliError {
    let code = match e {
        queue::QueueError::Schema(_)
        | queue::QueueError::Rejected(_)
        | queue::QueueError::PermissionDenied(_) => exit::USAGE,
        _ => exit::FAILURE,
    };
    CliError {
        code,
        error: e.into(),
    }
}
