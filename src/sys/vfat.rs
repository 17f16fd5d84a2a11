//! The ESP of a T234 user device: a FAT filesystem made with `mkfs.vfat`
//! (dosfstools, run like mke2fs through [`crate::sys::cmd`]) and the files
//! the firmware reads from it, L4TLauncher and the capsule (docs:
//! t234-boot-chain.md §1.3, §2.1, §8 step 4).
//!
//! [`populate`] mounts the filesystem, writes each file from its source
//! (streamed, not held in memory), `fsync`s every file and every directory
//! on the way to it, and unmounts; [`verify`] mounts it read-only again and
//! compares every byte. The command line is built by a pure function and
//! the relative paths are checked by one, both unit-tested; the rest is
//! exercised on a loop device in the root tier and checked with mtools.

use crate::sys::cmd;
use crate::sys::mount::Mount;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// L4TLauncher, which UEFI runs from the ESP.
pub const LAUNCHER: &str = "EFI/BOOT/BOOTAA64.efi";
/// The capsule UEFI processes when `OsIndications` asks for it (the name
/// NVIDIA's OTA and meta-tegra use).
pub const CAPSULE: &str = "EFI/UpdateCapsule/TEGRA_BL.Cap";
/// Longest FAT volume label.
pub const LABEL_MAX: usize = 11;

/// How the ESP is made.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VfatOptions {
    /// Volume label (none by default, as meta-tegra's ESP image).
    pub label: Option<String>,
}

/// The `mkfs.vfat` arguments for `dev`: FAT32 and `-I` as meta-tegra makes
/// its ESP image (`image_types_tegra_esp.bbclass`), which the firmware reads.
pub fn mkfs_vfat_args(dev: &Path, o: &VfatOptions) -> Result<Vec<OsString>> {
    let mut args: Vec<OsString> = ["-F", "32", "-I"].iter().map(OsString::from).collect();
    if let Some(label) = &o.label {
        if label.is_empty()
            || label.len() > LABEL_MAX
            || !label.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            bail!("FAT label {label:?} must be 1 to {LABEL_MAX} printable ASCII characters");
        }
        args.push("-n".into());
        args.push(label.into());
    }
    args.push(dev.as_os_str().to_owned());
    Ok(args)
}

/// Makes a FAT filesystem on `dev` (a partition or an image file).
pub fn mkfs_vfat(dev: &Path, o: &VfatOptions) -> Result<()> {
    let args = mkfs_vfat_args(dev, o)?;
    cmd::run(Command::new("mkfs.vfat").args(&args))
        .with_context(|| format!("formatting {} as FAT", dev.display()))?;
    Ok(())
}

/// A file to put on the ESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspFile {
    /// Where on the ESP, `/`-separated and relative (e.g. [`CAPSULE`]).
    pub path: String,
    /// The file to copy there.
    pub source: PathBuf,
}

/// Checks a path on the ESP: relative, plain components only.
pub fn check_esp_path(path: &str) -> Result<()> {
    let p = Path::new(path);
    let plain = !path.is_empty()
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && !path.contains('\\');
    if !plain {
        bail!("ESP path {path:?} is not a relative path of plain names");
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

fn write_one(root: &Path, f: &EspFile) -> Result<u64> {
    check_esp_path(&f.path)?;
    let dest = root.join(&f.path);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut src =
        File::open(&f.source).with_context(|| format!("opening {}", f.source.display()))?;
    let mut out = File::create(&dest).with_context(|| format!("creating {}", dest.display()))?;
    let n = io::copy(&mut src, &mut out)
        .with_context(|| format!("copying {} to {}", f.source.display(), dest.display()))?;
    out.sync_all()
        .with_context(|| format!("syncing {}", dest.display()))?;
    // The directory entry of the file, and of every directory made for it.
    let mut d = dest.parent();
    while let Some(dir) = d {
        sync_dir(dir)?;
        if dir == root {
            break;
        }
        d = dir.parent();
    }
    log::debug!("{}: {n} bytes written and synced", f.path);
    Ok(n)
}

/// Writes `files` into an ESP that is already mounted at `dir` (replacing
/// files of the same names), syncing each file and its directories.
/// Returns the bytes written per file.
pub fn write_into(dir: &Path, files: &[EspFile]) -> Result<Vec<u64>> {
    for f in files {
        check_esp_path(&f.path)?;
    }
    let mut sizes = Vec::new();
    for f in files {
        sizes.push(
            write_one(dir, f)
                .with_context(|| format!("writing {} to the ESP {}", f.path, dir.display()))?,
        );
    }
    Ok(sizes)
}

/// Mounts the FAT filesystem on `device` at `mountpoint`, writes `files`
/// as [`write_into`] does, and unmounts.
pub fn populate(device: &Path, mountpoint: &Path, files: &[EspFile]) -> Result<Vec<u64>> {
    for f in files {
        check_esp_path(&f.path)?;
    }
    let m = Mount::vfat(device, mountpoint, false)?;
    let sizes = write_into(m.path(), files)
        .with_context(|| format!("filling the ESP {}", device.display()))?;
    m.unmount()?;
    Ok(sizes)
}

/// Checks that every file under `dir` holds its source's bytes.
pub fn compare_in(dir: &Path, files: &[EspFile]) -> Result<()> {
    for f in files {
        check_esp_path(&f.path)?;
        let on_esp = dir.join(&f.path);
        if !same_bytes(&on_esp, &f.source)? {
            bail!(
                "{} on the ESP {} does not hold the bytes of {}",
                f.path,
                dir.display(),
                f.source.display()
            );
        }
    }
    Ok(())
}

fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    let mut fa = File::open(a).with_context(|| format!("opening {}", a.display()))?;
    let mut fb = File::open(b).with_context(|| format!("opening {}", b.display()))?;
    let mut ba = vec![0u8; 1 << 16];
    let mut bb = vec![0u8; 1 << 16];
    loop {
        let na = read_full(&mut fa, &mut ba).with_context(|| format!("reading {}", a.display()))?;
        let nb = read_full(&mut fb, &mut bb).with_context(|| format!("reading {}", b.display()))?;
        if na != nb || ba.get(..na) != bb.get(..nb) {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(buf.get_mut(n..).unwrap_or(&mut []))? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Mounts the filesystem on `device` read-only at `mountpoint` and checks
/// that every file holds exactly its source's bytes.
pub fn verify(device: &Path, mountpoint: &Path, files: &[EspFile]) -> Result<()> {
    let m = Mount::vfat(device, mountpoint, true)?;
    compare_in(m.path(), files)
        .with_context(|| format!("verifying the ESP {}", device.display()))?;
    m.unmount()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(o: &VfatOptions) -> Vec<String> {
        mkfs_vfat_args(Path::new("/dev/nvme0n1p10"), o)
            .unwrap()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn mkfs_arguments() {
        assert_eq!(
            args(&VfatOptions::default()),
            ["-F", "32", "-I", "/dev/nvme0n1p10"]
        );
        let o = VfatOptions {
            label: Some("ESP".into()),
        };
        assert_eq!(args(&o), ["-F", "32", "-I", "-n", "ESP", "/dev/nvme0n1p10"]);
        for bad in ["", "TWELVE_CHARS", "tab\there"] {
            let o = VfatOptions {
                label: Some(bad.into()),
            };
            assert!(mkfs_vfat_args(Path::new("/dev/x"), &o).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn esp_paths() {
        for good in [LAUNCHER, CAPSULE, "x"] {
            check_esp_path(good).unwrap();
        }
        for bad in ["", "/EFI/BOOT", "EFI/../x", "./EFI", "EFI\\BOOT"] {
            assert!(check_esp_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn writing_into_a_directory_syncs_and_compares() {
        // The mount is the root tier's; the copy and the syncs work on any
        // directory.
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("cap");
        std::fs::write(&src, b"capsule bytes").unwrap();
        let root = dir.path().join("esp");
        std::fs::create_dir(&root).unwrap();
        let f = EspFile {
            path: CAPSULE.into(),
            source: src.clone(),
        };
        assert_eq!(write_one(&root, &f).unwrap(), 13);
        assert!(same_bytes(&root.join(CAPSULE), &src).unwrap());
        std::fs::write(&src, b"capsule bytez").unwrap();
        assert!(!same_bytes(&root.join(CAPSULE), &src).unwrap());
    }
}
