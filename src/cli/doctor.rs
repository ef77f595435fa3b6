//! `doctor` on the command line: the checks run, the report printed (text or JSON), the exit
//! code it maps to.

use std::time::Duration;

use super::CliError;
use crate::config::Config;
use crate::doctor::{DoctorOptions, Report};

pub(super) async fn run(
    config: Config,
    video: String,
    timeout: u64,
    json: bool,
) -> Result<(), CliError> {
    let opts = DoctorOptions {
        video,
        timeout: Duration::from_secs(timeout),
    };
    let report = crate::doctor::run(&config, &opts).await;
    print(&report, json);
    match report.exit_code() {
        0 => Ok(()),
        code => Err(CliError {
            code,
            error: anyhow::anyhow!(
                "not ready: {} of {} checks failed",
                report
                    .checks
                    .iter()
                    .filter(|c| c.status == crate::doctor::Status::Fail)
                    .count(),
                report.checks.len()
            ),
        }),
    }
}

/// Prints the report on standard output.
pub(super) fn print(report: &Report, json: bool) {
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
}
