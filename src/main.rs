//! The `sysinstall` binary: parse, set up logging, run, exit.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = sysinstall::cli::Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => log::LevelFilter::Error,
        (false, 0) => log::LevelFilter::Warn,
        (false, 1) => log::LevelFilter::Info,
        (false, 2) => log::LevelFilter::Debug,
        (false, _) => log::LevelFilter::Trace,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .parse_env("SYSINSTALL_LOG")
        .format_timestamp(None)
        .format_target(false)
        .init();
    ExitCode::from(sysinstall::commands::run(cli))
}
