//! One handler per subcommand: turn parsed arguments into calls on the
//! library, print the result, and let [`run`] turn errors into exit codes.

mod bup;
mod install;
mod layout;
mod partition;
mod plan;
mod prompt;
pub mod site_config;
mod status;
mod unpack;

use crate::cli::{BupCommand, Cli, Command};
use crate::exit::{self, Changes, CommandKind};

/// What every handler gets besides its arguments.
pub struct Context {
    /// Set by the device layer before the first write to a target.
    pub changes: Changes,
    /// `-v` count.
    pub verbose: u8,
    /// `-q` given.
    pub quiet: bool,
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    let ctx = Context {
        changes: Changes::new(),
        verbose: cli.verbose,
        quiet: cli.quiet,
    };
    let command = cli
        .command
        .unwrap_or_else(|| Command::Install(Box::new(cli.install)));
    let (kind, result) = match &command {
        Command::Install(a) => (CommandKind::Writer, install::run(a, &ctx)),
        Command::Layout(a) => (CommandKind::ReadOnly, layout::run(a, &ctx)),
        Command::Partition(a) => (CommandKind::Writer, partition::run(a, &ctx)),
        Command::Plan(a) => (CommandKind::ReadOnly, plan::run(a, &ctx)),
        Command::Unpack(a) => (CommandKind::Writer, unpack::run(a, &ctx)),
        Command::Bup(BupCommand::List { file, format }) => {
            (CommandKind::ReadOnly, bup::list(file, *format, &ctx))
        }
        Command::Bup(BupCommand::Check(a)) => (CommandKind::ReadOnly, bup::check(a, &ctx)),
        Command::Bup(BupCommand::Write(a)) => (CommandKind::Writer, bup::write(a, &ctx)),
        Command::Status(a) if a.stage.is_some() => (CommandKind::Writer, status::run(a, &ctx)),
        Command::Status(a) => (CommandKind::ReadOnly, status::run(a, &ctx)),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            let code = exit::classify(&err, kind, &ctx.changes);
            eprintln!("sysinstall: error: {}", exit::one_line(&err));
            code
        }
    }
}
