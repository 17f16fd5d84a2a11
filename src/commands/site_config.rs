//! `/etc/sysinstall.conf`: site defaults for `install`, one `key = value`
//! per line, keys named like the long options (`layout`, `set`, `device`,
//! `boot-device`, `keep-data`, ...). Repeatable options (`set`,
//! `boot-device`) may appear several times. `#` starts a comment. The
//! command line wins over the file; the file wins over built-in defaults.
//!
//! `yes`, `dry-run` and `config` are not accepted here: confirming a
//! destructive run is a decision for each run, not a site default.
//!
//! Nor is `bearer`: this file is part of the initramfs, readable by anyone
//! who can read the image, and a token in it would be one more copy of a
//! secret. `bearer-file = PATH` names a file holding the token instead; it
//! is refused unless only its owner can read it (mode 0600 or stricter).
//! `SYSINSTALL_BEARER` in the environment is the other way.

#![deny(clippy::indexing_slicing)]

use crate::cli::{InstallArgs, ModeArg, ProgressMode, SocArg};
use crate::rootfs::http::Secret;
use clap::ValueEnum;
use std::path::{Path, PathBuf};

/// Where the site configuration is read from unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/sysinstall.conf";

/// Keys the file may set.
pub const KEYS: &[&str] = &[
    "rootfs",
    "data",
    "layout",
    "set",
    "device",
    "bup",
    "boot-device",
    "soc",
    "mode",
    "rootfs-sha256",
    "keep-data",
    "luks-key-file",
    "luks-key-command",
    "discard-data",
    "reboot",
    "new-machine-id",
    "no-fsck",
    "no-bootloader",
    "capsule",
    "no-capsule",
    "launcher",
    "mkfs-options",
    "progress",
    "tnspec",
    "machine",
    "header",
    "bearer-file",
    "cacert",
    "insecure-tls",
    "retries",
    "stall-timeout",
];

/// Why a key is refused although it names an option.
const REFUSED: &[(&str, &str)] = &[(
    "bearer",
    "a token does not belong in a file others may read: use bearer-file = PATH (mode 0600) or SYSINSTALL_BEARER",
)];

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLine {
    /// 1-based line.
    pub line: u32,
    /// The key.
    pub key: String,
    /// The value, unquoted.
    pub value: String,
}

/// Parses the file's text; errors name the file and line.
pub fn parse(text: &str, file: &str) -> Result<Vec<ConfigLine>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            return Err(format!(
                "{file}:{line}: expected 'key = value', found '{t}'"
            ));
        };
        let key = k.trim().to_owned();
        if let Some((_, why)) = REFUSED.iter().find(|(r, _)| *r == key) {
            return Err(format!(
                "{file}:{line}: '{key}' is not accepted here: {why}"
            ));
        }
        if !KEYS.contains(&key.as_str()) {
            return Err(format!(
                "{file}:{line}: unknown key '{key}' (known: {})",
                KEYS.join(", ")
            ));
        }
        let mut value = v.trim();
        if value.len() >= 2
            && ((value.starts_with('"') && value.ends_with('"'))
                || (value.starts_with('\'') && value.ends_with('\'')))
        {
            value = value.get(1..value.len() - 1).unwrap_or("");
        }
        out.push(ConfigLine {
            line,
            key,
            value: value.to_owned(),
        });
    }
    Ok(out)
}

fn boolean(e: &ConfigLine, file: &str) -> Result<bool, String> {
    match e.value.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" => Ok(false),
        v => Err(format!(
            "{file}:{}: {} = '{v}' is not yes/no",
            e.line, e.key
        )),
    }
}

fn number<T: std::str::FromStr>(e: &ConfigLine, file: &str) -> Result<T, String> {
    e.value.parse().map_err(|_| {
        format!(
            "{file}:{}: {} = '{}' is not a number",
            e.line, e.key, e.value
        )
    })
}

fn choice<T: ValueEnum>(e: &ConfigLine, file: &str) -> Result<T, String> {
    T::from_str(&e.value, true).map_err(|_| {
        format!(
            "{file}:{}: {} = '{}' is not one of its values",
            e.line, e.key, e.value
        )
    })
}

/// Fills in what the command line left unset from the file's entries.
pub fn apply(entries: &[ConfigLine], file: &str, args: &mut InstallArgs) -> Result<(), String> {
    let cli_set = args.layout.set.clone();
    let cli_boot = args.boot_devices.clone();
    let cli_mkfs = args.mkfs_options.clone();
    let cli_headers = args.source_opts.headers.clone();
    let mut headers = Vec::new();
    let mut mkfs = Vec::new();
    let mut set = Vec::new();
    let mut boot = Vec::new();
    for e in entries {
        let v = || e.value.clone();
        match e.key.as_str() {
            "rootfs" => {
                args.rootfs.get_or_insert_with(v);
            }
            "data" => {
                args.data.get_or_insert_with(v);
            }
            "layout" => {
                args.layout.layout.get_or_insert_with(|| PathBuf::from(v()));
            }
            "set" => set.push(v()),
            "mkfs-options" => mkfs.push(v()),
            "device" => {
                args.device.get_or_insert_with(|| PathBuf::from(v()));
            }
            "bup" => {
                args.bup.get_or_insert_with(|| PathBuf::from(v()));
            }
            "boot-device" => boot.push(PathBuf::from(v())),
            "soc" => {
                let s: SocArg = choice(e, file)?;
                args.soc.get_or_insert(s);
            }
            "mode" => {
                let m: ModeArg = choice(e, file)?;
                args.mode.get_or_insert(m);
            }
            "progress" => {
                let p: ProgressMode = choice(e, file)?;
                args.progress.get_or_insert(p);
            }
            "rootfs-sha256" => {
                args.rootfs_sha256.get_or_insert_with(v);
            }
            "keep-data" => args.keep_data |= boolean(e, file)?,
            // A key on the command line wins over either key here.
            "luks-key-file" if args.luks_key_command.is_none() => {
                args.luks_key_file.get_or_insert_with(|| PathBuf::from(v()));
            }
            "luks-key-command" if args.luks_key_file.is_none() => {
                args.luks_key_command.get_or_insert_with(v);
            }
            "luks-key-file" | "luks-key-command" => {}
            "discard-data" => args.discard_data |= boolean(e, file)?,
            "reboot" => args.reboot |= boolean(e, file)?,
            "new-machine-id" => args.new_machine_id |= boolean(e, file)?,
            "no-fsck" => args.no_fsck |= boolean(e, file)?,
            "no-bootloader" => args.no_bootloader |= boolean(e, file)?,
            "no-capsule" => args.no_capsule |= boolean(e, file)?,
            "capsule" => {
                args.capsule.get_or_insert_with(|| PathBuf::from(v()));
            }
            "launcher" => {
                args.launcher.get_or_insert_with(|| PathBuf::from(v()));
            }
            "tnspec" => {
                args.board.tnspec.get_or_insert_with(v);
            }
            "machine" => {
                args.board.machine.get_or_insert_with(v);
            }
            "header" => headers.push(Secret::new(v())),
            "bearer-file" => {
                // A token on the command line or in the environment wins.
                args.source_opts
                    .site_bearer_file
                    .get_or_insert_with(|| PathBuf::from(v()));
            }
            "cacert" => {
                args.source_opts
                    .cacert
                    .get_or_insert_with(|| PathBuf::from(v()));
            }
            "insecure-tls" => args.source_opts.insecure_tls |= boolean(e, file)?,
            "retries" => {
                let n = number(e, file)?;
                args.source_opts.retries.get_or_insert(n);
            }
            "stall-timeout" => {
                let n = number(e, file)?;
                args.source_opts.stall_timeout.get_or_insert(n);
            }
            _ => {}
        }
    }
    // Placeholder values: the file's first, so the command line overrides them.
    if !set.is_empty() {
        set.extend(cli_set);
        args.layout.set = set;
    }
    if !mkfs.is_empty() {
        mkfs.extend(cli_mkfs);
        args.mkfs_options = mkfs;
    }
    // Headers: the file's first; a command-line header of the same name wins.
    if !headers.is_empty() {
        headers.extend(cli_headers);
        args.source_opts.headers = headers;
    }
    if cli_boot.is_empty() && !boot.is_empty() {
        args.boot_devices = boot;
    }
    Ok(())
}

/// Reads `path` (or the default, silently skipped when absent) and applies it.
pub fn load_into(path: Option<&Path>, args: &mut InstallArgs) -> anyhow::Result<Option<PathBuf>> {
    let (path, required) = match path {
        Some(p) => (p.to_owned(), true),
        None => (PathBuf::from(DEFAULT_PATH), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!("reading {}: {e}", path.display()),
    };
    let file = path.display().to_string();
    let entries = parse(&text, &file).map_err(anyhow::Error::msg)?;
    apply(&entries, &file, args).map_err(anyhow::Error::msg)?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# site defaults\nlayout = /usr/share/sysinstall/flash.xml\nset = APPSIZE=1\nset=PPTSIZE=16896\ndevice = \"/dev/mmcblk0\"\nboot-device = /dev/mmcblk0boot0\nboot-device = /dev/mmcblk0boot1\nkeep-data = yes\nmode = update\n";

    #[test]
    fn command_line_wins_and_lists_merge() {
        let mut a = InstallArgs {
            device: Some("/dev/loop0".into()),
            ..Default::default()
        };
        a.layout.set = vec!["APPSIZE=2".into()];
        apply(&parse(TEXT, "s.conf").unwrap(), "s.conf", &mut a).unwrap();
        assert_eq!(a.device.as_deref(), Some(Path::new("/dev/loop0")));
        assert_eq!(
            a.layout.layout.as_deref(),
            Some(Path::new("/usr/share/sysinstall/flash.xml"))
        );
        // The file's values come first so that the command line's later one wins.
        assert_eq!(a.layout.set, ["APPSIZE=1", "PPTSIZE=16896", "APPSIZE=2"]);
        assert_eq!(a.boot_devices.len(), 2);
        assert!(a.keep_data);
        assert_eq!(a.mode, Some(ModeArg::Update));
    }

    #[test]
    fn a_luks_key_on_the_command_line_wins_over_either_in_the_file() {
        let text = "luks-key-command = keystoretool -p\n";
        let mut a = InstallArgs::default();
        apply(&parse(text, "s.conf").unwrap(), "s.conf", &mut a).unwrap();
        assert_eq!(a.luks_key_command.as_deref(), Some("keystoretool -p"));
        let mut a = InstallArgs {
            luks_key_file: Some("/run/k".into()),
            ..Default::default()
        };
        apply(&parse(text, "s.conf").unwrap(), "s.conf", &mut a).unwrap();
        assert_eq!(a.luks_key_command, None);
        assert_eq!(a.luks_key_file.as_deref(), Some(Path::new("/run/k")));
    }

    #[test]
    fn source_options_from_the_file() {
        let text = "header = X-Site: 1\nheader = X-Both: file\ncacert = /etc/ca.pem\ninsecure-tls = no\nretries = 9\nstall-timeout = 120\nbearer-file = /etc/token\n";
        let mut a = InstallArgs::default();
        a.source_opts.headers = vec![Secret::new("X-Both: cli")];
        a.source_opts.retries = Some(2);
        apply(&parse(text, "s.conf").unwrap(), "s.conf", &mut a).unwrap();
        let h: Vec<&str> = a.source_opts.headers.iter().map(Secret::expose).collect();
        // The command line's comes last, so it wins over the file's.
        assert_eq!(h, ["X-Site: 1", "X-Both: file", "X-Both: cli"]);
        assert_eq!(
            a.source_opts.cacert.as_deref(),
            Some(Path::new("/etc/ca.pem"))
        );
        assert!(!a.source_opts.insecure_tls);
        assert_eq!(a.source_opts.retries, Some(2));
        assert_eq!(a.source_opts.stall_timeout, Some(120));
        assert_eq!(a.source_opts.bearer_file, None);
        assert_eq!(
            a.source_opts.site_bearer_file.as_deref(),
            Some(Path::new("/etc/token"))
        );
        let e = parse("bearer = abc\n", "s.conf").unwrap_err();
        assert!(
            e.starts_with("s.conf:1: 'bearer' is not accepted here") && !e.contains("abc"),
            "{e}"
        );
        let e = apply(
            &parse("retries = many\n", "s.conf").unwrap(),
            "s.conf",
            &mut InstallArgs::default(),
        )
        .unwrap_err();
        assert_eq!(e, "s.conf:1: retries = 'many' is not a number");
    }

    #[test]
    fn errors_name_file_and_line() {
        assert_eq!(
            parse("layout = x\nyes = 1\n", "s.conf")
                .unwrap_err()
                .split(" (known")
                .next()
                .unwrap(),
            "s.conf:2: unknown key 'yes'"
        );
        assert_eq!(
            parse("junk\n", "s.conf").unwrap_err(),
            "s.conf:1: expected 'key = value', found 'junk'"
        );
        let e = apply(
            &parse("keep-data = maybe\n", "s.conf").unwrap(),
            "s.conf",
            &mut InstallArgs::default(),
        )
        .unwrap_err();
        assert_eq!(e, "s.conf:1: keep-data = 'maybe' is not yes/no");
        let e = apply(
            &parse("mode = sideways\n", "s.conf").unwrap(),
            "s.conf",
            &mut InstallArgs::default(),
        )
        .unwrap_err();
        assert!(e.starts_with("s.conf:1: mode = 'sideways'"), "{e}");
    }
}
