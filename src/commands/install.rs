//! `sysinstall install` (and `sysinstall` alone): the technician's command.
//!
//! Here the command line and the site configuration become
//! [`InstallOptions`]; human progress goes to stderr, `--events json` as
//! JSON Lines (`--events console`: framed lines) to stdout or `--events-fd`,
//! and the old tool's last line —
//! `PASS: successful installation of <artifact>` or `FAIL: <reason>` — to
//! stdout (to stderr when stdout carries the JSON events).

use super::{prompt, site_config, Context};
use crate::cli::{EventsFormat, InstallArgs, ProgressMode, SourceArgs};
use crate::events::{ConsoleSink, Events, JsonSink, Sink};
use crate::exit::{self, CommandKind, UsageError};
use crate::install::{self, decide::Refusal, report, InstallOptions};
use crate::layout::subst;
use crate::progress::HumanSink;
use crate::rootfs::http::{self, NetOptions, Secret};
use crate::rootfs::proxy::ProxyConfig;
use crate::sys::board::SysRoot;
use anyhow::{anyhow, bail, Context as _};
use std::io::{Read as _, Write};
use std::os::fd::{AsFd as _, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable that carries the bearer token (out of `ps`).
pub const BEARER_ENV: &str = "SYSINSTALL_BEARER";
/// Registry login for `oci://` sources.
pub const OCI_USERNAME_ENV: &str = "OCI_USERNAME";
/// Registry password for `oci://` sources.
pub const OCI_PASSWORD_ENV: &str = "OCI_PASSWORD";
/// Longest `--stall-timeout` (a day: longer is no timeout at all).
const MAX_STALL_TIMEOUT: u64 = 86_400;
/// Largest bearer token file read.
const MAX_BEARER_FILE: u64 = 64 << 10;

/// Runs `sysinstall install`. Failures are reported here (the FAIL line
/// and the summary event), so the exit code is returned either way.
pub fn run(args: &InstallArgs, ctx: &Context) -> anyhow::Result<u8> {
    crate::interrupt::install().map_err(|e| anyhow!("installing the signal handlers: {e}"))?;
    let events = match events(args, ctx) {
        Ok(e) => e,
        Err(e) => {
            let insecure = args.source_opts.insecure_tls;
            return Ok(finish(args, ctx, &Events::silent(), Err(e), insecure));
        }
    };
    let mut insecure = args.source_opts.insecure_tls;
    let result = resolve(args).and_then(|opts| {
        insecure = opts.net.insecure_tls;
        let device = opts.device.display().to_string();
        install::run(&opts, &ctx.changes, &events, &mut |text| {
            confirm(args.yes, text, &device)
        })
    });
    let reboot = reboot_wanted(args.reboot, &result);
    let code = finish(args, ctx, &events, result, insecure);
    if reboot {
        reboot_now();
    }
    Ok(code)
}

/// `--reboot` reboots only after a pass: never after a failure, a refusal
/// or a dry run.
fn reboot_wanted(asked: bool, result: &anyhow::Result<install::Summary>) -> bool {
    asked && matches!(result, Ok(s) if s.result == report::Outcome::Pass)
}

/// Flushes everything and reboots; on failure says so (the install itself
/// is done, so the exit code stays 0).
fn reboot_now() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    nix::unistd::sync();
    // Returns only when the kernel refused (Result<Infallible, _>).
    let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    eprintln!("warning: --reboot: {e}; reboot the board by hand");
}

/// The summary event and the last line; the exit code.
fn finish(
    args: &InstallArgs,
    ctx: &Context,
    events: &Events,
    result: anyhow::Result<install::Summary>,
    insecure_tls: bool,
) -> u8 {
    // --insecure-tls is recorded wherever the result is read.
    let insecure = |mut v: serde_json::Value| {
        if let (true, Some(o)) = (insecure_tls, v.as_object_mut()) {
            o.insert("insecure_tls".into(), true.into());
        }
        v
    };
    let (code, line) = match result {
        Ok(mut summary) => {
            summary.exit = exit::SUCCESS;
            events.summary(insecure(serde_json::to_value(&summary).unwrap_or_default()));
            if summary.result != report::Outcome::Pass {
                return exit::SUCCESS;
            }
            let mut line =
                report::pass_line(summary.artifact.as_deref(), summary.boot_note.as_deref());
            if insecure_tls {
                line.push_str(INSECURE_NOTE);
            }
            (exit::SUCCESS, line)
        }
        Err(err) => {
            let err = as_interrupted(as_usage(err));
            let code = exit::classify(&err, CommandKind::Writer, &ctx.changes);
            let reason = exit::one_line(&err);
            let why = report::failure_code(&err);
            events.failure(why.as_str(), why.retryable(), &reason);
            events.summary(insecure(serde_json::json!({
                "result": report::Outcome::Fail,
                "exit": code,
                "code": why.as_str(),
                "retryable": why.retryable(),
                "error": reason,
            })));
            (code, report::fail_line(&reason, code))
        }
    };
    // With the JSON events on stdout, the last line goes to stderr.
    if args.events.is_some() && matches!(args.events_fd, None | Some(1)) {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    code
}

/// An error that came while a signal was pending (a blocking call it cut
/// short, a tool it killed, anywhere in the run) is reported as the
/// interruption, so the summary says `interrupted`.
fn as_interrupted(err: anyhow::Error) -> anyhow::Error {
    use crate::interrupt::{self, Interrupted};
    match interrupt::received() {
        Some(s) if report::failure_code(&err) != report::FailCode::Interrupted => {
            err.context(Interrupted(s))
        }
        _ => err,
    }
}

/// A refusal that comes from contradictory options is a usage error.
fn as_usage(err: anyhow::Error) -> anyhow::Error {
    match err.downcast_ref::<Refusal>() {
        Some(r) if r.is_usage() => UsageError(r.to_string()).into(),
        _ => err,
    }
}

/// The event sinks: human progress, JSON, failpoints (tests).
fn events(args: &InstallArgs, ctx: &Context) -> anyhow::Result<Events> {
    if args.events_fd.is_some() && args.events.is_none() {
        return Err(UsageError("--events-fd needs --events json or console".into()).into());
    }
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    let progress = args.progress.unwrap_or(if ctx.quiet {
        ProgressMode::None
    } else {
        ProgressMode::Auto
    });
    if progress != ProgressMode::None {
        sinks.push(Box::new(HumanSink::new(progress.style())));
    }
    match args.events {
        Some(EventsFormat::Json) => sinks.push(Box::new(JsonSink(events_writer(args.events_fd)?))),
        Some(EventsFormat::Console) => {
            sinks.push(Box::new(ConsoleSink(events_file(args.events_fd)?)));
        }
        None => {}
    }
    if std::env::var_os(crate::failpoint::ENV).is_some() {
        sinks.push(install::failpoint_sink());
    }
    Ok(Events::new(sinks))
}

fn events_writer(fd: Option<i32>) -> anyhow::Result<Box<dyn Write + Send>> {
    match fd {
        None | Some(1) => Ok(Box::new(std::io::stdout())),
        Some(2) => Ok(Box::new(std::io::stderr())),
        Some(n) => Ok(Box::new(given_fd(n)?)),
    }
}

/// An unbuffered file for `--events console`: one `write(2)` per line. For
/// stdout and stderr a duplicate, so no buffer of `Stdout` splits a line.
fn events_file(fd: Option<i32>) -> anyhow::Result<std::fs::File> {
    let dup = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .map(std::fs::File::from)
            .context("duplicating the events descriptor")
    };
    match fd {
        None | Some(1) => dup(std::io::stdout().as_fd()),
        Some(2) => dup(std::io::stderr().as_fd()),
        Some(n) => given_fd(n),
    }
}

/// The descriptor `--events-fd N` names, which must be open.
fn given_fd(n: i32) -> anyhow::Result<std::fs::File> {
    // The descriptor must be open; fcntl tells without side effects.
    nix::fcntl::fcntl(
        // SAFETY: borrowed only for this call; `n` is checked by fcntl itself.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(n) },
        nix::fcntl::FcntlArg::F_GETFD,
    )
    .map_err(|e| UsageError(format!("--events-fd {n}: {e}")))?;
    // SAFETY: the descriptor is open (checked above) and handed to us
    // by the caller for exactly this use; we own it from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(n) };
    Ok(std::fs::File::from(fd))
}

/// Shows the report; asks on the terminal unless `--yes` (see [`prompt`]).
fn confirm(yes: bool, text: &str, device: &str) -> anyhow::Result<bool> {
    eprintln!("{text}\n");
    prompt::require_answerable(yes, "write", device)?;
    Ok(yes || prompt::ask(&format!("Erase and install onto {device}?"))?)
}

fn first_existing(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Appended to the PASS line of a run with `--insecure-tls`.
pub const INSECURE_NOTE: &str = " (WARNING: --insecure-tls: server certificates were NOT checked)";

/// The http(s) and OCI options: the command line (and site configuration,
/// already merged into `args`) and the environment (`env`): the bearer
/// token, the registry login, the proxies.
pub fn net_options(
    args: &SourceArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<NetOptions> {
    let mut headers: Vec<(String, Secret)> = Vec::new();
    for h in &args.headers {
        let (name, value) = http::parse_header(h.expose()).map_err(UsageError)?;
        // A later one of the same name (the command line's over the file's) wins.
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        headers.push((name, value));
    }
    // The command line, then the environment, then the site configuration.
    let bearer = match (&args.bearer, &args.bearer_file, env(BEARER_ENV)) {
        (Some(b), _, _) => Some(b.clone()),
        (None, Some(f), _) => Some(read_bearer_file(f)?),
        (None, None, Some(b)) if !b.is_empty() => Some(Secret::new(b)),
        _ => args
            .site_bearer_file
            .as_deref()
            .map(read_bearer_file)
            .transpose()?,
    };
    if let Some(b) = &bearer {
        if b.expose().contains(['\r', '\n', '\0']) || b.expose().trim().is_empty() {
            return Err(UsageError("the bearer token is empty or has a line break".into()).into());
        }
    }
    if bearer.is_some()
        && headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
    {
        return Err(UsageError(
            "--header 'Authorization: ...' and a bearer token: give one of them".into(),
        )
        .into());
    }
    let registry_login = match (env(OCI_USERNAME_ENV), env(OCI_PASSWORD_ENV)) {
        (Some(u), Some(p)) if !u.is_empty() => Some((u, Secret::new(p))),
        (None, None) => None,
        _ => {
            return Err(UsageError(format!(
                "{OCI_USERNAME_ENV} and {OCI_PASSWORD_ENV} go together"
            ))
            .into())
        }
    };
    let ca_certs = match &args.cacert {
        Some(f) => http::load_ca_certs(f).context("--cacert")?,
        None => Vec::new(),
    };
    let stall = args.stall_timeout.unwrap_or(30);
    if !(1..=MAX_STALL_TIMEOUT).contains(&stall) {
        return Err(UsageError(format!(
            "--stall-timeout {stall}: between 1 and {MAX_STALL_TIMEOUT} seconds"
        ))
        .into());
    }
    let defaults = NetOptions::default();
    Ok(NetOptions {
        headers,
        bearer,
        ca_certs,
        insecure_tls: args.insecure_tls,
        proxy: ProxyConfig::from_env(env).map_err(UsageError)?,
        retries: args.retries.unwrap_or(defaults.retries),
        stall_timeout: Duration::from_secs(stall),
        registry_login,
        ..defaults
    })
}

/// A token file: a regular file no one but its owner can read.
fn read_bearer_file(path: &Path) -> anyhow::Result<Secret> {
    let shown = path.display();
    let f = std::fs::File::open(path).with_context(|| format!("opening {shown}"))?;
    let md = f.metadata().with_context(|| format!("reading {shown}"))?;
    if !md.is_file() {
        bail!("{shown}: the bearer token file is not a regular file");
    }
    if md.permissions().mode() & 0o077 != 0 {
        bail!(
            "{shown}: the bearer token file can be read by others (mode {:o}): chmod 600 it",
            md.permissions().mode() & 0o777
        );
    }
    let mut text = String::new();
    f.take(MAX_BEARER_FILE)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {shown}"))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("{shown}: the bearer token file is empty");
    }
    Ok(Secret::new(token))
}

/// `--image NAME=SOURCE`: the slots' image (`APP=`), and the others.
#[allow(clippy::type_complexity)]
fn split_images(a: &InstallArgs) -> anyhow::Result<(Option<String>, Vec<(String, String)>)> {
    let mut slots = None;
    let mut others: Vec<(String, String)> = Vec::new();
    for spec in &a.images {
        let Some((name, source)) = spec
            .split_once('=')
            .filter(|(n, s)| !n.is_empty() && !s.is_empty())
        else {
            return Err(UsageError(format!("--image {spec:?}: expected NAME=SOURCE")).into());
        };
        if name == install::images::SLOTS {
            if a.rootfs.is_some() {
                return Err(UsageError(format!(
                    "--image {spec}: the slots are filled from a tarball (ROOTFS) or an image, not both"
                ))
                .into());
            }
            if slots.replace(source.to_owned()).is_some() {
                return Err(UsageError("--image APP= is given twice".into()).into());
            }
        } else if name.starts_with("APP_") || others.iter().any(|(n, _)| n == name) {
            return Err(UsageError(format!(
                "--image {spec}: {} (APP fills every slot the run writes)",
                if name.starts_with("APP_") {
                    "a slot is named APP"
                } else {
                    "given twice"
                }
            ))
            .into());
        } else {
            others.push((name.to_owned(), source.to_owned()));
        }
    }
    Ok((slots, others))
}

/// `--disk-image`, which replaces the layout, the rootfs and the payload:
/// an option that only those use is a usage error, not silently ignored.
fn disk_image(a: &InstallArgs) -> anyhow::Result<Option<install::disk_image::DiskImage>> {
    let Some(source) = a.disk_image.clone() else {
        return Ok(None);
    };
    let clash = [
        (a.rootfs.is_some(), "ROOTFS"),
        (a.data.is_some(), "DATA"),
        (!a.images.is_empty(), "--image"),
        (a.layout.layout.is_some(), "--layout"),
        (a.bup.is_some(), "--bup"),
        (a.capsule.is_some(), "--capsule"),
        (a.keep_data, "--keep-data"),
        (a.mode.is_some(), "--mode"),
        (a.luks_key_file.is_some(), "--luks-key-file"),
        (a.luks_key_command.is_some(), "--luks-key-command"),
    ]
    .into_iter()
    .find_map(|(set, name)| set.then_some(name));
    if let Some(name) = clash {
        return Err(UsageError(format!(
            "--disk-image replaces the layout, the rootfs and the payload: {name} cannot go with it"
        ))
        .into());
    }
    Ok(Some(install::disk_image::DiskImage {
        source,
        sha256: a.disk_image_sha256.clone(),
        bmap: a.bmap.clone(),
    }))
}

/// The command line, over the site configuration, over the defaults.
pub fn resolve(cli: &InstallArgs) -> anyhow::Result<InstallOptions> {
    let mut a = cli.clone();
    site_config::load_into(cli.config.as_deref(), &mut a)
        .map_err(report::or_code(report::FailCode::InputInvalid))?;
    let net = net_options(&a.source_opts, &|k| std::env::var(k).ok())
        .map_err(report::or_code(report::FailCode::InputInvalid))?;
    let (slot_image, images) = split_images(&a)?;
    // The command line only: a site configuration names a layout for every run.
    let disk_image = disk_image(cli)?;
    let rootfs = match slot_image.clone().or_else(|| a.rootfs.clone()) {
        Some(r) => r,
        None if disk_image.is_some() => String::new(),
        None => first_existing(install::DEFAULT_ROOTFS)
            .map(|p| p.display().to_string())
            .ok_or_else(|| {
                anyhow!(
                    "no rootfs tarball given and none of {} exists",
                    install::DEFAULT_ROOTFS.join(", ")
                )
            })?,
    };
    let data = a.data.clone().or_else(|| {
        Path::new(install::DEFAULT_DATA)
            .exists()
            .then(|| install::DEFAULT_DATA.to_owned())
    });
    let layout = match a.layout.layout.clone() {
        Some(l) => l,
        None if disk_image.is_some() => PathBuf::new(),
        None => first_existing(install::DEFAULT_LAYOUTS).ok_or_else(|| {
            anyhow!(
                "no layout given (--layout, or layout= in {}) and none of {} exists",
                site_config::DEFAULT_PATH,
                install::DEFAULT_LAYOUTS.join(", ")
            )
        })?,
    };
    let layout_path = layout.clone();
    let luks_key = match (a.luks_key_file.clone(), a.luks_key_command.clone()) {
        (Some(_), Some(_)) => {
            return Err(UsageError(
                "--luks-key-file and --luks-key-command both given (the site configuration sets one of them?): give one".into(),
            )
            .into())
        }
        (Some(f), None) => install::LuksKey::File(f),
        (None, Some(c)) => install::LuksKey::Command(c),
        (None, None) => install::LuksKey::None,
    };
    Ok(InstallOptions {
        rootfs,
        rootfs_sha256: a.rootfs_sha256.clone(),
        slot_image: slot_image.is_some(),
        images,
        net,
        data,
        layout,
        set: subst::parse_assignments(&a.layout.set).map_err(UsageError)?,
        device: a
            .device
            .clone()
            .unwrap_or_else(|| install::default_device(&layout_path)),
        bup: a.bup.clone(),
        capsule: a.capsule.clone(),
        no_capsule: a.no_capsule,
        launcher: a.launcher.clone(),
        boot_devices: a.boot_devices.clone(),
        soc: a.soc.map(Into::into),
        mode: a.mode.unwrap_or_default().into(),
        keep_data: a.keep_data,
        discard_data: a.discard_data,
        new_machine_id: a.new_machine_id,
        dry_run: a.dry_run,
        no_fsck: a.no_fsck,
        no_bootloader: a.no_bootloader,
        mkfs_options: a.mkfs_options.clone(),
        verify_slots: a.verify_slots,
        restart: a.restart,
        tnspec: a.board.tnspec.clone(),
        machine: a.board.machine.clone(),
        disk_image,
        no_bmap: a.no_bmap,
        luks_key,
        sysroot: SysRoot::new(a.sysroot.clone().unwrap_or_else(|| PathBuf::from("/"))),
        rundir: std::env::var_os("SYSINSTALL_RUNDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(install::DEFAULT_RUNDIR)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reboot_only_after_a_pass() {
        let with = |r| {
            let mut s = install::Summary::new("/dev/mmcblk0".into());
            s.result = r;
            Ok(s)
        };
        assert!(reboot_wanted(true, &with(report::Outcome::Pass)));
        assert!(!reboot_wanted(false, &with(report::Outcome::Pass)));
        assert!(!reboot_wanted(true, &with(report::Outcome::DryRun)));
        assert!(!reboot_wanted(true, &Err(anyhow!("refused"))));
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn token_file(dir: &Path, mode: u32) -> PathBuf {
        let p = dir.join(format!("token-{mode:o}"));
        std::fs::write(&p, "file-token\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn bearer_token_precedence() {
        let d = tempfile::tempdir().unwrap();
        let f = token_file(d.path(), 0o600);
        let a = |bearer: Option<&str>, file: Option<&Path>, site: Option<&Path>| SourceArgs {
            bearer: bearer.map(Secret::new),
            bearer_file: file.map(Path::to_owned),
            site_bearer_file: site.map(Path::to_owned),
            ..SourceArgs::default()
        };
        let with_env = env(&[(BEARER_ENV, "env-token")]);
        let got = |args: SourceArgs, e: &dyn Fn(&str) -> Option<String>| {
            net_options(&args, e)
                .unwrap()
                .bearer
                .map(|b| b.expose().to_owned())
        };
        assert_eq!(
            got(a(Some("cli"), None, Some(&f)), &with_env).as_deref(),
            Some("cli")
        );
        assert_eq!(
            got(a(None, Some(&f), None), &with_env).as_deref(),
            Some("file-token")
        );
        assert_eq!(
            got(a(None, None, Some(&f)), &with_env).as_deref(),
            Some("env-token")
        );
        assert_eq!(
            got(a(None, None, Some(&f)), &env(&[])).as_deref(),
            Some("file-token")
        );
        assert_eq!(got(a(None, None, None), &env(&[])), None);
        let open = token_file(d.path(), 0o644);
        let e = net_options(&a(None, Some(&open), None), &env(&[])).unwrap_err();
        assert!(format!("{e:#}").contains("chmod 600"), "{e:#}");
        // A token and an Authorization header contradict each other.
        let both = SourceArgs {
            headers: vec![Secret::new("Authorization: Basic x")],
            ..a(Some("t"), None, None)
        };
        assert!(net_options(&both, &env(&[]))
            .unwrap_err()
            .is::<UsageError>());
    }

    #[test]
    fn the_rest_of_the_options() {
        let args = SourceArgs {
            headers: vec![
                Secret::new("X-Key: from-file"),
                Secret::new("x-key: from-cli"),
                Secret::new("X-Other: 1"),
            ],
            retries: Some(9),
            stall_timeout: Some(5),
            ..SourceArgs::default()
        };
        let n = net_options(
            &args,
            &env(&[
                (OCI_USERNAME_ENV, "u"),
                (OCI_PASSWORD_ENV, "p"),
                ("https_proxy", "http://proxy:3128"),
            ]),
        )
        .unwrap();
        let h: Vec<(&str, &str)> = n
            .headers
            .iter()
            .map(|(a, b)| (a.as_str(), b.expose()))
            .collect();
        assert_eq!(h, [("x-key", "from-cli"), ("X-Other", "1")]);
        assert_eq!((n.retries, n.stall_timeout), (9, Duration::from_secs(5)));
        assert_eq!(
            n.registry_login.as_ref().map(|(u, _)| u.as_str()),
            Some("u")
        );
        assert_eq!(n.proxy.https.as_ref().map(|p| p.port), Some(3128));
        let d = NetOptions::default();
        let n = net_options(&SourceArgs::default(), &env(&[])).unwrap();
        assert_eq!((n.retries, n.stall_timeout), (d.retries, d.stall_timeout));
        for (args, e) in [
            (
                SourceArgs {
                    stall_timeout: Some(0),
                    ..SourceArgs::default()
                },
                env(&[]),
            ),
            (SourceArgs::default(), env(&[(OCI_USERNAME_ENV, "u")])),
            (
                SourceArgs {
                    headers: vec![Secret::new("Host: x")],
                    ..SourceArgs::default()
                },
                env(&[]),
            ),
            (SourceArgs::default(), env(&[("http_proxy", "socks5://x")])),
        ] {
            assert!(net_options(&args, &e).unwrap_err().is::<UsageError>());
        }
        let e = net_options(
            &SourceArgs {
                cacert: Some("/nonexistent/ca.pem".into()),
                ..SourceArgs::default()
            },
            &env(&[]),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/ca.pem"), "{e:#}");
    }
}
