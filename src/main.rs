//! `douyin-worker`: see the library's documentation and README.md.

fn main() -> std::process::ExitCode {
    douyin_worker::cli::main()
}
