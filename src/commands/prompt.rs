//! The one confirmation prompt of the writing commands (`install`,
//! `partition`). The contract: `--yes` skips it; without `--yes` and without
//! a terminal on stdin nobody can answer, so the command is refused (exit 3,
//! nothing written); on a terminal, `yes` or `y` (any case) goes on and
//! anything else declines (exit 5).

use anyhow::{bail, Context as _};
use std::io::{BufRead, IsTerminal, Write};

/// Refuses when the question could not be answered: call it before any
/// work that the answer would make useless.
pub fn require_answerable(yes: bool, verb: &str, device: &str) -> anyhow::Result<()> {
    if !yes && !std::io::stdin().is_terminal() {
        bail!(
            "refusing to {verb} {device} without confirmation: no terminal to ask on (give --yes)"
        );
    }
    Ok(())
}

/// Asks `question` on the terminal (stderr, stdin); true to go on.
pub fn ask(question: &str) -> anyhow::Result<bool> {
    let mut err = std::io::stderr();
    let _ = write!(err, "{question} Type 'yes' to go on: ");
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the answer")?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
