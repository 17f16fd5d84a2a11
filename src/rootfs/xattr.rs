//! Extended attributes: thin, safe wrappers over the l*xattr/f*xattr calls
//! (std has none, and nix does not wrap them). Symlinks are never followed.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Largest xattr value Linux stores (`XATTR_SIZE_MAX`).
const XATTR_SIZE_MAX: usize = 64 << 10;
/// Largest xattr name list (`XATTR_LIST_MAX`).
const XATTR_LIST_MAX: usize = 64 << 10;

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn cname(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "xattr name contains a NUL byte",
        )
    })
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `lsetxattr(2)`.
pub fn lset(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let (p, n) = (cpath(path)?, cname(name)?);
    // SAFETY: `p` and `n` are NUL-terminated and outlive the call; `value`
    // is valid for `value.len()` bytes.
    check(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// `fsetxattr(2)`.
pub fn fset(fd: BorrowedFd<'_>, name: &[u8], value: &[u8]) -> io::Result<()> {
    let n = cname(name)?;
    // SAFETY: the fd is open for the borrow; `n` is NUL-terminated; `value`
    // is valid for `value.len()` bytes.
    check(unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// `lremovexattr(2)`; an attribute that is not there is not an error.
pub fn lremove(path: &Path, name: &[u8]) -> io::Result<()> {
    let (p, n) = (cpath(path)?, cname(name)?);
    // SAFETY: both strings are NUL-terminated and outlive the call.
    absent_ok(check(unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) }))
}

/// `fremovexattr(2)`; an attribute that is not there is not an error.
pub fn fremove(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let n = cname(name)?;
    // SAFETY: the fd is open for the borrow; `n` is NUL-terminated.
    absent_ok(check(unsafe {
        libc::fremovexattr(fd.as_raw_fd(), n.as_ptr())
    }))
}

fn absent_ok(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(()),
        // A filesystem without xattr support has nothing to remove either.
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
        r => r,
    }
}

/// The size of one attribute of `path` (`lgetxattr(2)` with no buffer), or
/// `None` when it is not set or the filesystem has no xattrs.
pub fn lget_len(path: &Path, name: &[u8]) -> io::Result<Option<usize>> {
    let (p, n) = (cpath(path)?, cname(name)?);
    // SAFETY: both strings are NUL-terminated; a null buffer of size 0 only
    // asks for the size.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
    if r >= 0 {
        return Ok(Some(usize::try_from(r).unwrap_or(0)));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENODATA) | Some(libc::EOPNOTSUPP) => Ok(None),
        _ => Err(e),
    }
}

/// `llistxattr(2)` + `lgetxattr(2)`: every attribute of `path`, sorted by name.
pub fn lget_all(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let p = cpath(path)?;
    let mut names = vec![0u8; XATTR_LIST_MAX];
    // SAFETY: `p` is NUL-terminated; the buffer is valid for its length.
    let n = unsafe { libc::llistxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
            return Ok(Vec::new());
        }
        return Err(e);
    }
    names.truncate(usize::try_from(n).unwrap_or(0));
    let mut out = Vec::new();
    let mut value = vec![0u8; XATTR_SIZE_MAX];
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cn = cname(name)?;
        // SAFETY: both strings are NUL-terminated; the buffer is valid for its length.
        let len = unsafe {
            libc::lgetxattr(
                p.as_ptr(),
                cn.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENODATA) {
                continue; // removed meanwhile
            }
            return Err(e);
        }
        let len = usize::try_from(len).unwrap_or(0);
        out.push((name.to_vec(), value.get(..len).unwrap_or_default().to_vec()));
    }
    out.sort();
    Ok(out)
}
