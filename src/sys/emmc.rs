//! eMMC boot partitions are write-protected by the kernel unless their
//! sysfs `force_ro` is 0. [`enable_writes`] clears it for the time of a
//! write and the returned guard sets it back: when dropped (also on an
//! error), from a panic hook, and from SIGINT/SIGTERM/SIGHUP handlers, so
//! the boot area is never left writable behind us.
//!
//! Devices without `force_ro` (mtdblock, image files) need nothing.

use super::board::SysRoot;
use super::rawdev::is_block_device;
use std::ffi::CString;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Once;

/// Most devices that can be write-enabled at once (boot0 and boot1 are two).
const MAX_PENDING: usize = 8;

/// `force_ro` files we set to 0 and must set back to 1. Plain pointers to
/// leaked C strings, so a signal handler can read them without locks or
/// allocation. A few bytes leak per device per run.
static PENDING: [AtomicPtr<libc::c_char>; MAX_PENDING] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_PENDING];
static HOOKS: Once = Once::new();

/// The `force_ro` file of a block device node, if it has one.
pub fn force_ro_path(root: &SysRoot, dev: &Path) -> Option<PathBuf> {
    if !is_block_device(dev) {
        return None;
    }
    let real = std::fs::canonicalize(dev).ok()?;
    let name = real.file_name()?.to_str()?;
    let path = root.path(&format!("sys/block/{name}/force_ro"));
    path.exists().then_some(path)
}

/// While alive, the device's `force_ro` is 0; dropping it writes 1 back.
#[derive(Debug)]
pub struct WriteEnabled {
    path: PathBuf,
    slot: Option<usize>,
}

impl Drop for WriteEnabled {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(&self.path, b"1") {
            log::warn!("restoring {}: {e}", self.path.display());
        }
        if let Some(i) = self.slot {
            if let Some(p) = PENDING.get(i) {
                p.store(std::ptr::null_mut(), Ordering::SeqCst);
            }
        }
    }
}

/// Makes a boot device writable if the kernel protects it. `Ok(None)` when
/// there is nothing to do (no `force_ro`, or already writable: then nothing
/// is restored either, as in REF: docs/spec/bup-format.md §3.6).
pub fn enable_writes(root: &SysRoot, dev: &Path) -> io::Result<Option<WriteEnabled>> {
    match force_ro_path(root, dev) {
        Some(path) => enable_writes_at(&path),
        None => Ok(None),
    }
}

/// [`enable_writes`] for a known `force_ro` file.
pub fn enable_writes_at(path: &Path) -> io::Result<Option<WriteEnabled>> {
    let mut state = [0u8; 1];
    std::fs::File::open(path)?.read_exact(&mut state)?;
    if state[0] == b'0' {
        return Ok(None);
    }
    install_hooks();
    let slot = register(path);
    let guard = WriteEnabled {
        path: path.to_owned(),
        slot,
    };
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(b"0")?;
    Ok(Some(guard))
}

fn register(path: &Path) -> Option<usize> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let raw = c.into_raw();
    for (i, p) in PENDING.iter().enumerate() {
        if p.compare_exchange(
            std::ptr::null_mut(),
            raw,
            Ordering::SeqCst,
            Ordering::SeqCst,
        )
        .is_ok()
        {
            return Some(i);
        }
    }
    // No free slot: the drop guard still restores it; only a signal would not.
    None
}

/// Writes 1 to every `force_ro` still pending. Async-signal-safe: only
/// open(2), write(2) and close(2) on strings prepared beforehand.
pub fn restore_pending() {
    for p in &PENDING {
        let path = p.swap(std::ptr::null_mut(), Ordering::SeqCst);
        if !path.is_null() {
            // SAFETY: `path` came from CString::into_raw and is never freed.
            unsafe {
                let fd = libc::open(path, libc::O_WRONLY | libc::O_CLOEXEC);
                if fd >= 0 {
                    let _ = libc::write(fd, b"1".as_ptr().cast(), 1);
                    libc::close(fd);
                }
            }
        }
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    restore_pending();
    // SAFETY: resetting to the default action and re-raising are
    // async-signal-safe; the process then ends as the signal intends.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Installs the panic hook and the signal handlers, once. A signal that
/// already has a handler (someone else's) keeps it; that owner should call
/// [`restore_pending`].
fn install_hooks() {
    HOOKS.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_pending();
            previous(info);
        }));
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: sigaction with a handler that only does
            // async-signal-safe work; the old action is put back if it was
            // not the default one.
            unsafe {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_signal as *const () as usize;
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &new, &mut old) == 0 && old.sa_sigaction != libc::SIG_DFL {
                    libc::sigaction(sig, &old, std::ptr::null_mut());
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test, because `restore_pending` acts on every pending device of
    /// the process and would race with a parallel test.
    #[test]
    fn force_ro_is_cleared_and_restored() {
        let dir = tempfile::tempdir().unwrap();
        let ro = dir.path().join("force_ro");
        std::fs::write(&ro, "1\n").unwrap();
        {
            let guard = enable_writes_at(&ro).unwrap();
            assert!(guard.is_some());
            assert_eq!(std::fs::read(&ro).unwrap()[0], b'0');
        }
        assert_eq!(std::fs::read(&ro).unwrap()[0], b'1');

        // What the panic hook and the signal handlers do.
        let guard = enable_writes_at(&ro).unwrap().unwrap();
        assert_eq!(std::fs::read(&ro).unwrap()[0], b'0');
        restore_pending();
        assert_eq!(std::fs::read(&ro).unwrap()[0], b'1');
        drop(guard);
        assert_eq!(std::fs::read(&ro).unwrap()[0], b'1');

        // Already writable: left alone, nothing restored afterwards.
        std::fs::write(&ro, "0\n").unwrap();
        assert!(enable_writes_at(&ro).unwrap().is_none());
        assert_eq!(std::fs::read(&ro).unwrap()[0], b'0');
    }

    #[test]
    fn image_files_have_no_force_ro() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("boot0.img");
        std::fs::write(&img, [0u8; 512]).unwrap();
        let root = SysRoot::new(dir.path());
        assert!(enable_writes(&root, &img).unwrap().is_none());
    }
}
