//! The install: preflight, plan, confirmation, then the ordered steps, each
//! idempotent, with a journal so that a re-run after a power cut finishes
//! the job.

pub mod config;
pub mod journal;
