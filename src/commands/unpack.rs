//! `sysinstall unpack SOURCE DIR [DIR...]`: one verified, decompressed stream
//! into every directory at once.

use super::Context;
use crate::cli::{ProgressMode, UnpackArgs};
use crate::events::{Events, Phase, Verdict};
use crate::progress::HumanSink;
use crate::rootfs::{self, Source, SourceOptions, UnpackOptions};

/// Runs `sysinstall unpack`.
pub fn run(args: &UnpackArgs, ctx: &Context) -> anyhow::Result<u8> {
    let mode = if ctx.quiet {
        ProgressMode::None
    } else {
        args.progress
    };
    let events = Events::new(vec![Box::new(HumanSink::new(mode.style()))]);
    let net = super::install::net_options(&args.source_opts, &|k| std::env::var(k).ok())?;
    let insecure = net.insecure_tls;
    let opts = SourceOptions {
        sha256: args.rootfs_sha256.clone(),
        net,
        events: events.clone(),
        ..SourceOptions::default()
    };
    let source = Source::open(&args.source, &opts)?;
    let what = source.describe();
    if source.expected_sha256().is_some() && source.local_path().is_some() {
        // A local file is checked whole before the first byte is written.
        events.step_start(Phase::Preflight, &format!("verify {what}"), None);
        let checked = source.verify_local(&events);
        events.step_end(if checked.is_ok() {
            Verdict::Ok
        } else {
            Verdict::Failed
        });
        checked?;
    }
    let dirs = args
        .dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let options = UnpackOptions {
        keep_newer_files: args.keep_newer_files,
        sync: !args.no_sync,
        ..UnpackOptions::default()
    };
    ctx.changes.mark();
    events.step_start(Phase::Unpack, &format!("unpack into {dirs}"), None);
    let result = rootfs::unpack(source, &args.dirs, &options, &events);
    events.step_end(if result.is_ok() {
        Verdict::Ok
    } else {
        Verdict::Failed
    });
    let r = result?;
    let e = &r.entries;
    println!(
        "unpacked {what} into {dirs}: {} entries ({} files, {} dirs, {} symlinks, {} hard links, {} devices, {} fifos), {} bytes of files",
        e.total(), e.files, e.dirs, e.symlinks, e.hardlinks, e.devices, e.fifos, e.file_bytes
    );
    println!(
        "{}: {} compressed bytes, {} tar bytes, sha256 {}{}",
        r.format,
        r.compressed_bytes,
        r.tar_bytes,
        r.sha256,
        if r.verified { " (verified)" } else { "" }
    );
    if insecure {
        println!("{}", super::install::INSECURE_NOTE.trim());
    }
    if r.kept_newer > 0 {
        println!(
            "kept {} existing files that were newer than the archive's",
            r.kept_newer
        );
    }
    Ok(crate::exit::SUCCESS)
}
