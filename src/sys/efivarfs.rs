//! UEFI variables through efivarfs (docs: t234-boot-chain.md §3.4), under a
//! root directory that is a parameter: `/sys/firmware/efi/efivars` on a
//! board, a temporary directory in tests. The encodings and every decision
//! are in [`crate::uefi::vars`] and [`crate::uefi::varplan`]; this reads,
//! writes and deletes files.
//!
//! The kernel's rules, which a plain directory does not have:
//! * a variable is written by ONE `write()` of attributes and data: a write
//!   of the attributes alone deletes it, so data written by a second call
//!   is lost (RAN);
//! * the kernel marks variables immutable (`chattr +i`) so that `rm` cannot
//!   brick a board; overwriting or deleting one needs the flag cleared first
//!   (`FS_IOC_SETFLAGS`), and it is set again afterwards, as NVIDIA's OTA
//!   does. Where the ioctl is not supported (some filesystems a test
//!   directory lives on) there is no flag to clear, and that is not an error.

use crate::uefi::vars::{StoreError, Var, VarStore, VarValue, ATTR_LEN, MAX_DATA};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Where Linux mounts efivarfs.
pub const EFIVARS: &str = "/sys/firmware/efi/efivars";
/// `FS_IMMUTABLE_FL` (<linux/fs.h>).
pub const FS_IMMUTABLE_FL: libc::c_int = 0x10;

/// `FS_IOC_GETFLAGS`/`FS_IOC_SETFLAGS` are declared with `long` in
/// <linux/fs.h> (so the request number encodes 8 bytes on 64-bit), but the
/// kernel copies an `int`: the request code uses `c_long`'s size, the
/// argument is a `c_int`.
mod ioctl {
    nix::ioctl_read_bad!(
        fs_ioc_getflags,
        nix::request_code_read!(b'f', 1, std::mem::size_of::<libc::c_long>()),
        libc::c_int
    );
    nix::ioctl_write_ptr_bad!(
        fs_ioc_setflags,
        nix::request_code_write!(b'f', 2, std::mem::size_of::<libc::c_long>()),
        libc::c_int
    );
}

/// What clearing the immutable flag found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Immutable {
    /// It was set and is now cleared.
    Cleared,
    /// It was not set.
    NotSet,
    /// The filesystem has no such flag (`ENOTTY`, `EOPNOTSUPP`, `ENOSYS`).
    Unsupported,
}

fn unsupported(e: nix::errno::Errno) -> bool {
    use nix::errno::Errno;
    matches!(e, Errno::ENOTTY | Errno::EOPNOTSUPP | Errno::ENOSYS)
}

/// The inode flags of an open file; `None` where the filesystem has none.
pub fn flags(file: &File) -> io::Result<Option<libc::c_int>> {
    let mut f: libc::c_int = 0;
    // SAFETY: the fd is open for the duration of the call and `f` is a
    // valid `int` for the kernel to write.
    match unsafe { ioctl::fs_ioc_getflags(file.as_raw_fd(), &mut f) } {
        Ok(_) => Ok(Some(f)),
        Err(e) if unsupported(e) => Ok(None),
        Err(e) => Err(io::Error::from(e)),
    }
}

fn set_flags(file: &File, f: libc::c_int) -> io::Result<()> {
    // SAFETY: as in `flags`; the kernel only reads `f`.
    unsafe { ioctl::fs_ioc_setflags(file.as_raw_fd(), &f) }
        .map(drop)
        .map_err(io::Error::from)
}

/// Clears `FS_IMMUTABLE_FL` on an open file.
pub fn clear_immutable(file: &File) -> io::Result<Immutable> {
    match flags(file)? {
        None => Ok(Immutable::Unsupported),
        Some(f) if f & FS_IMMUTABLE_FL == 0 => Ok(Immutable::NotSet),
        Some(f) => {
            set_flags(file, f & !FS_IMMUTABLE_FL)?;
            Ok(Immutable::Cleared)
        }
    }
}

/// Sets `FS_IMMUTABLE_FL` on an open file (where the filesystem has it).
pub fn set_immutable(file: &File) -> io::Result<()> {
    match flags(file)? {
        Some(f) if f & FS_IMMUTABLE_FL == 0 => set_flags(file, f | FS_IMMUTABLE_FL),
        _ => Ok(()),
    }
}

/// The variables in one efivarfs directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Efivarfs {
    root: PathBuf,
}

impl Default for Efivarfs {
    fn default() -> Self {
        Efivarfs::new(EFIVARS)
    }
}

fn io_err(what: String, e: io::Error) -> StoreError {
    StoreError::Io(format!("{what}: {e}"))
}

impl Efivarfs {
    /// The variables under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Efivarfs {
        Efivarfs { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True when the directory exists (efivarfs is mounted).
    pub fn present(&self) -> bool {
        self.root.is_dir()
    }

    /// The file of a variable.
    pub fn path(&self, var: Var) -> PathBuf {
        self.root.join(var.file_name())
    }

    /// The file's bytes, or `None` if it does not exist; at most one byte
    /// more than a variable we know can hold, so the decoder sees the excess.
    pub fn read_raw(&self, var: Var) -> io::Result<Option<Vec<u8>>> {
        match File::open(self.path(var)) {
            Ok(f) => {
                let mut b = Vec::new();
                f.take((ATTR_LEN + MAX_DATA + 1) as u64)
                    .read_to_end(&mut b)?;
                Ok(Some(b))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Clears the immutable flag of an existing variable; `None` when the
    /// variable does not exist.
    fn make_mutable(&self, path: &Path) -> io::Result<Option<Immutable>> {
        match File::open(path) {
            Ok(f) => clear_immutable(&f).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl VarStore for Efivarfs {
    fn read(&mut self, var: Var) -> Result<Option<VarValue>, StoreError> {
        let path = self.path(var);
        let raw = self
            .read_raw(var)
            .map_err(|e| io_err(format!("reading {}", path.display()), e))?;
        raw.map(|b| VarValue::decode(var.name(), &b).map_err(StoreError::from))
            .transpose()
    }

    fn write(&mut self, var: Var, value: &VarValue) -> Result<(), StoreError> {
        let path = self.path(var);
        let what = || format!("writing {}", path.display());
        let was = self.make_mutable(&path).map_err(|e| {
            io_err(
                format!("clearing the immutable flag of {}", path.display()),
                e,
            )
        })?;
        let bytes = value.encode();
        // O_TRUNC as dd and the shell do (NVIDIA's OTA writes with dd). A
        // plain file must not keep the tail of a longer old value; on
        // efivarfs the truncation only sets the inode size (INFER from the
        // kernel's simple_setattr: the variable itself is changed only by
        // the write below), which the qemu tier checks on a real efivarfs.
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io_err(what(), e))?;
        let n = f.write(&bytes).map_err(|e| io_err(what(), e))?;
        if n != bytes.len() {
            // A second write would be a new variable write of the rest: fail.
            return Err(StoreError::Io(format!(
                "{}: the kernel took {n} of {} bytes in one write",
                what(),
                bytes.len()
            )));
        }
        if was == Some(Immutable::Cleared) {
            if let Err(e) = set_immutable(&f) {
                log::warn!(
                    "setting the immutable flag of {} again: {e}",
                    path.display()
                );
            }
        }
        Ok(())
    }

    fn delete(&mut self, var: Var) -> Result<(), StoreError> {
        let path = self.path(var);
        let what = || format!("deleting {}", path.display());
        match self.make_mutable(&path) {
            Ok(None) => return Ok(()),
            Ok(Some(_)) => {}
            Err(e) => {
                return Err(io_err(
                    format!("clearing the immutable flag of {}", path.display()),
                    e,
                ))
            }
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(what(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bup::board::Slot;
    use crate::uefi::varplan::{self, Applied, Finish, PlanInput};

    #[test]
    fn read_write_delete_in_a_plain_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Efivarfs::new(dir.path());
        assert!(s.present());
        assert_eq!(s.read(Var::BootChainFwNext).unwrap(), None);
        s.write(Var::RootfsStatusSlotB, &VarValue::nv_u64(0x1122))
            .unwrap();
        s.write(Var::RootfsStatusSlotB, &VarValue::nv_u32(0))
            .unwrap();
        let path = dir
            .path()
            .join("RootfsStatusSlotB-781e084c-a330-417c-b678-38e696380cb9");
        // The shorter value replaced the longer one entirely.
        assert_eq!(std::fs::read(&path).unwrap(), [7, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            s.read(Var::RootfsStatusSlotB).unwrap(),
            Some(VarValue::nv_u32(0))
        );
        s.delete(Var::RootfsStatusSlotB).unwrap();
        assert!(!path.exists());
        s.delete(Var::RootfsStatusSlotB).unwrap();
        std::fs::write(s.path(Var::BootChainFwStatus), [7, 0]).unwrap();
        assert_eq!(
            s.read(Var::BootChainFwStatus).unwrap_err().to_string(),
            "BootChainFwStatus: 2 bytes, shorter than the 4-byte attribute word"
        );
    }

    #[test]
    fn a_missing_directory_fails_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Efivarfs::new(dir.path().join("efivars"));
        assert!(!s.present());
        assert_eq!(s.read(Var::OsIndications).unwrap(), None);
        let err = s
            .write(Var::OsIndications, &VarValue::nv_u64(4))
            .unwrap_err();
        assert!(err.to_string().starts_with("writing "), "{err}");
        assert!(
            err.to_string().contains("efivars/OsIndications-8be4df61"),
            "{err}"
        );
    }

    #[test]
    fn a_plan_applied_to_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Efivarfs::new(dir.path());
        s.write(Var::BootChainFwStatus, &VarValue::nv_u32(3))
            .unwrap();
        s.write(Var::BootChainFwNext, &VarValue::nv_u32(0)).unwrap();
        s.write(Var::RootfsStatusSlotA, &VarValue::nv_u32(0xFF))
            .unwrap();
        let ops = varplan::plan(&PlanInput {
            written_slots: vec![Slot::A, Slot::B],
            platform_spec: Some("3767-300-0005-K.2-1-0-jetson-orin-nano-devkit-".into()),
            compat_spec: Some("3767--0005--1--jetson-orin-nano-devkit-".into()),
            finish: Finish::Capsule,
            current_chain: Some(Slot::A),
        });
        for op in &ops {
            assert_eq!(
                varplan::apply(&mut s, op).unwrap(),
                Applied::Changed,
                "{op}"
            );
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .map(|n| n.split('-').next().unwrap().to_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "OsIndications",
                "RootfsStatusSlotA",
                "RootfsStatusSlotB",
                "TegraPlatformCompatSpec",
                "TegraPlatformSpec"
            ]
        );
        for op in &ops {
            assert_ne!(
                varplan::apply(&mut s, op).unwrap(),
                Applied::Changed,
                "{op}"
            );
        }
    }

    #[test]
    fn no_flags_on_a_pipe_is_not_an_error() {
        // A pipe has no inode flags (ENOTTY), like files on filesystems
        // without FS_IOC_GETFLAGS.
        let (r, _w) = nix::unistd::pipe().unwrap();
        let f = File::from(r);
        assert_eq!(flags(&f).unwrap(), None);
        assert_eq!(clear_immutable(&f).unwrap(), Immutable::Unsupported);
        set_immutable(&f).unwrap();
    }

    #[test]
    fn flags_of_a_plain_file() {
        // Reading flags needs no privilege; the immutable case (which needs
        // CAP_LINUX_IMMUTABLE) is in the root tier (tests/bup_loop.rs).
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let f = File::open(&p).unwrap();
        match flags(&f).unwrap() {
            Some(fl) => {
                assert_eq!(fl & FS_IMMUTABLE_FL, 0);
                assert_eq!(clear_immutable(&f).unwrap(), Immutable::NotSet);
            }
            None => assert_eq!(clear_immutable(&f).unwrap(), Immutable::Unsupported),
        }
    }
}
