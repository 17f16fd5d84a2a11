//! LUKS2 containers through `cryptsetup`: format, open, close, test a key,
//! and the probes the preflight needs (is dm-crypt there, which of our
//! containers an interrupted run left open). No decisions: the install
//! says which partition gets which container (`docs/spec/flash-layout.md` §9).
//!
//! The key is always a file given to `--key-file` (every byte of it is the
//! key, as the old installer passed its retrieved passphrase); nothing here
//! logs or prints it.

use super::cmd;
use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Device-mapper names of the containers an install opens start with this,
/// so that a later run knows which open containers are its own.
pub const MAPPER_PREFIX: &str = "sysinstall-";

/// The cipher of every container (the old installer's, and cryptsetup's
/// LUKS2 default): AES in XTS mode, 512-bit key (two AES-256 keys).
pub const CIPHER: &str = "aes-xts-plain64";
/// Key size in bits for [`CIPHER`].
pub const KEY_BITS: &str = "512";
/// Argon2id memory cost in KiB: 64 MiB, so that opening a container needs
/// little of a 2 GiB Jetson Nano's memory (or of a boot-time initramfs);
/// cryptsetup would otherwise take up to 1 GiB.
pub const PBKDF_MEMORY_KIB: &str = "65536";
/// Argon2id time target in ms for the unlock (cryptsetup's default is 2000).
pub const ITER_TIME_MS: &str = "1000";

/// `luksFormat` arguments for `dev` (LUKS2, [`CIPHER`], argon2id with
/// [`PBKDF_MEMORY_KIB`], one thread).
pub fn format_args(dev: &Path, key: &Path) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = [
        "luksFormat",
        "--batch-mode",
        "--type",
        "luks2",
        "--cipher",
        CIPHER,
        "--key-size",
        KEY_BITS,
        "--pbkdf",
        "argon2id",
        "--pbkdf-memory",
        PBKDF_MEMORY_KIB,
        "--pbkdf-parallel",
        "1",
        "--iter-time",
        ITER_TIME_MS,
        "--key-file",
    ]
    .iter()
    .map(Into::into)
    .collect();
    a.push(key.into());
    a.push(dev.into());
    a
}

/// Creates a new LUKS2 container on `dev` (its old content is lost).
pub fn format(dev: &Path, key: &Path) -> Result<()> {
    cmd::run(Command::new("cryptsetup").args(format_args(dev, key)))
        .with_context(|| format!("creating a LUKS2 container on {}", dev.display()))?;
    Ok(())
}

/// Opens the container on `dev` as `/dev/mapper/NAME`; returns that path.
pub fn open(dev: &Path, name: &str, key: &Path) -> Result<PathBuf> {
    cmd::run(
        Command::new("cryptsetup")
            .arg("open")
            .arg("--type")
            .arg("luks2")
            .arg("--key-file")
            .arg(key)
            .arg(dev)
            .arg(name),
    )
    .with_context(|| format!("opening the LUKS2 container on {}", dev.display()))?;
    Ok(Path::new("/dev/mapper").join(name))
}

/// Closes `/dev/mapper/NAME`.
pub fn close(name: &str) -> Result<()> {
    cmd::run_retrying_busy(Command::new("cryptsetup").arg("close").arg(name), &[])
        .with_context(|| format!("closing /dev/mapper/{name}"))?;
    Ok(())
}

/// Whether the key opens the LUKS container on `dev` (nothing is opened).
/// `Ok(false)`: no key slot takes it (cryptsetup's exit status 2).
pub fn key_opens(dev: &Path, key: &Path) -> Result<bool> {
    match cmd::run(
        Command::new("cryptsetup")
            .arg("open")
            .arg("--test-passphrase")
            .arg("--key-file")
            .arg(key)
            .arg(dev),
    ) {
        Ok(_) => Ok(true),
        Err(e) if e.status.ends_with("exit status 2") => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "trying the key on the container on {}",
            dev.display()
        ))),
    }
}

/// `cryptsetup --version`: fails when it is not installed or does not run
/// (a library missing).
pub fn version() -> Result<String> {
    let out = cmd::run(Command::new("cryptsetup").arg("--version"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Why the kernel cannot hold containers, or `None`: it must have
/// device-mapper and dm-crypt. A module not
/// loaded yet is loaded with `modprobe` (cryptsetup would do that too, but
/// only at the first open, after the disk was written); built into the
/// kernel, it is listed in `modules.builtin`.
pub fn dm_crypt_missing(sys_root: &Path) -> Option<String> {
    let present = |m: &str| sys_root.join("sys/module").join(m).exists() || builtin(sys_root, m);
    for (module, what) in [("dm_mod", "device-mapper"), ("dm_crypt", "dm-crypt")] {
        if !present(module) {
            // Best effort: a missing modprobe or module shows in the check below.
            let _ = cmd::run(Command::new("modprobe").arg(module));
        }
        if !present(module) {
            return Some(format!(
                "the kernel has no {what} ({module}), needed for the crypt- partitions"
            ));
        }
    }
    None
}

/// Runs the key command (`sh -c CMD`) and returns its standard output: the
/// key. Its standard error is kept for the message when it fails; its
/// output never goes into a message or the log.
pub fn run_key_command(c: &str) -> Result<Vec<u8>> {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(c)
        .stdin(std::process::Stdio::null())
        .output()
        .context("starting /bin/sh")?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        anyhow::bail!(
            "the key command {} ({})",
            match out.status.code() {
                Some(code) => format!("failed with exit status {code}"),
                None => format!("was killed ({})", out.status),
            },
            said.trim()
        );
    }
    Ok(out.stdout)
}

/// True when `module` is built into the running kernel.
fn builtin(sys_root: &Path, module: &str) -> bool {
    let Ok(release) = std::fs::read_to_string(sys_root.join("proc/sys/kernel/osrelease")) else {
        return false;
    };
    let list = sys_root
        .join("lib/modules")
        .join(release.trim())
        .join("modules.builtin");
    let file = format!("/{}.ko", module.replace('_', "-"));
    std::fs::read_to_string(list).is_ok_and(|t| t.lines().any(|l| l.ends_with(&file)))
}

/// The device-mapper names of our containers (named [`MAPPER_PREFIX`]…,
/// uuid `CRYPT-…`) that hold a partition of disk `disk` (kernel name).
pub fn ours_open(sys_root: &Path, disk: &str) -> Vec<String> {
    let mut out = Vec::new();
    let ddir = sys_root.join("sys/block").join(disk);
    let Ok(parts) = std::fs::read_dir(&ddir) else {
        return out;
    };
    for part in parts.flatten() {
        let Ok(holders) = std::fs::read_dir(part.path().join("holders")) else {
            continue;
        };
        for h in holders.flatten() {
            let dm = sys_root
                .join("sys/class/block")
                .join(h.file_name())
                .join("dm");
            let read = |f: &str| std::fs::read_to_string(dm.join(f)).unwrap_or_default();
            let name = read("name").trim().to_owned();
            if name.starts_with(MAPPER_PREFIX) && read("uuid").starts_with("CRYPT-") {
                out.push(name);
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_arguments_name_luks2_and_the_key_file() {
        let a = format_args(Path::new("/dev/mmcblk0p1"), Path::new("/run/k"));
        let s: Vec<&str> = a.iter().map(|x| x.to_str().unwrap()).collect();
        assert_eq!(s.first(), Some(&"luksFormat"));
        assert_eq!(s.last(), Some(&"/dev/mmcblk0p1"));
        let after = |k: &str| s[s.iter().position(|x| *x == k).unwrap() + 1];
        assert_eq!(after("--type"), "luks2");
        assert_eq!(after("--cipher"), "aes-xts-plain64");
        assert_eq!(after("--key-size"), "512");
        assert_eq!(after("--key-file"), "/run/k");
        assert!(s.contains(&"--batch-mode"));
    }

    #[test]
    fn our_open_containers_are_found_by_name_and_uuid() {
        let root = tempfile::tempdir().unwrap();
        let w = |p: &str, t: &str| {
            let p = root.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, t).unwrap();
        };
        for (part, dm, name, uuid) in [
            (
                "mmcblk0p1",
                "dm-0",
                "sysinstall-APP",
                "CRYPT-LUKS2-abc-sysinstall-APP",
            ),
            ("mmcblk0p2", "dm-1", "APP_b", "CRYPT-LUKS2-def-APP_b"),
            ("mmcblk0p3", "dm-2", "sysinstall-vg", "LVM-xyz"),
        ] {
            std::fs::create_dir_all(
                root.path()
                    .join(format!("sys/block/mmcblk0/{part}/holders/{dm}")),
            )
            .unwrap();
            w(
                &format!("sys/class/block/{dm}/dm/name"),
                &format!("{name}\n"),
            );
            w(
                &format!("sys/class/block/{dm}/dm/uuid"),
                &format!("{uuid}\n"),
            );
        }
        assert_eq!(ours_open(root.path(), "mmcblk0"), ["sysinstall-APP"]);
        assert!(ours_open(root.path(), "sda").is_empty());
    }
}
