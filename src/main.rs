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
    // "LEVEL message" lines on stderr: no timestamps (a serial console
    // log has its own, and the board's clock may read 1970).
    env_logger::Builder::new()
        .filter_level(level)
        .parse_env("SYSINSTALL_LOG")
        .format(|buf, record| {
            use std::io::Write as _;
            writeln!(buf, "[{:<5}] {}", record.level(), record.args())
        })
        .init();
    ExitCode::from(sysinstall::commands::run(cli))
}
