//! A directory tree as data: a manifest to compare and hash, and a full copy
//! in RAM to carry DATA across a mkfs (`--keep-data`).
//!
//! The manifest lists every entry below a root (the root included, sockets
//! and other filesystems' mount points left out) with its type, mode, owner,
//! mtime, xattrs (ACLs are xattrs here), contents hash or link target or
//! device number, and for a hard link the first path of its inode. [`hash`]
//! is the SHA-256 of that list, so two trees with equal hashes are equal in
//! everything an unpack or a restore must keep.

use super::extract::{ExtractOptions, Extractor};
use super::tar::{Kind, TarEntry, Timestamp};
use super::xattr;
use crate::bytes::hex;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Bookkeeping bytes counted per entry when checking a save against its limit.
const ENTRY_OVERHEAD: u64 = 256;

/// What an entry is, with what identifies its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A regular file: size and SHA-256 of the contents.
    File {
        /// Size in bytes.
        size: u64,
        /// SHA-256 of the contents, hex.
        sha256: String,
    },
    /// A directory.
    Dir,
    /// A symlink and its target.
    Symlink(Vec<u8>),
    /// A character device.
    Char(u64),
    /// A block device.
    Block(u64),
    /// A FIFO.
    Fifo,
    /// Another name of an inode listed earlier under this path.
    HardlinkTo(PathBuf),
}

/// One entry of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Path below the root (empty for the root).
    pub path: PathBuf,
    /// Type and contents.
    pub kind: NodeKind,
    /// Permission bits with setuid/setgid/sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: Timestamp,
    /// Extended attributes, sorted.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Allocated 512-byte blocks of a regular file (shows whether holes
    /// were kept); not part of [`Node::line`] or [`hash`].
    pub blocks: u64,
}

impl Node {
    /// The canonical one-line form (what [`hash`] hashes).
    pub fn line(&self) -> String {
        let kind = match &self.kind {
            NodeKind::File { size, sha256 } => format!("file {size} {sha256}"),
            NodeKind::Dir => "dir".into(),
            NodeKind::Symlink(t) => format!("symlink -> {}", String::from_utf8_lossy(t)),
            NodeKind::Char(d) => format!(
                "char {}:{}",
                nix::sys::stat::major(*d),
                nix::sys::stat::minor(*d)
            ),
            NodeKind::Block(d) => format!(
                "block {}:{}",
                nix::sys::stat::major(*d),
                nix::sys::stat::minor(*d)
            ),
            NodeKind::Fifo => "fifo".into(),
            NodeKind::HardlinkTo(p) => format!("hardlink => {}", p.display()),
        };
        let xattrs: Vec<String> = self
            .xattrs
            .iter()
            .map(|(n, v)| format!("{}={}", String::from_utf8_lossy(n), hex(v)))
            .collect();
        let shown = if self.path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &self.path
        };
        format!(
            "{} {kind} mode={:04o} owner={}:{} mtime={}.{:09} xattrs=[{}]",
            shown.display(),
            self.mode,
            self.uid,
            self.gid,
            self.mtime.sec,
            self.mtime.nsec,
            xattrs.join(",")
        )
    }
}

/// Walks `root` and lists every entry, sorted by path (parents first).
pub fn manifest(root: &Path) -> Result<Vec<Node>> {
    let root_dev = fs::symlink_metadata(root)
        .with_context(|| format!("reading {}", root.display()))?
        .dev();
    let mut out = Vec::new();
    let mut inodes: HashMap<(u64, u64), PathBuf> = HashMap::new();
    walk(root, Path::new(""), root_dev, &mut inodes, &mut out)?;
    Ok(out)
}

fn walk(
    root: &Path,
    rel: &Path,
    root_dev: u64,
    inodes: &mut HashMap<(u64, u64), PathBuf>,
    out: &mut Vec<Node>,
) -> Result<()> {
    let full = root.join(rel);
    let md = fs::symlink_metadata(&full).with_context(|| format!("reading {}", full.display()))?;
    let ft = md.file_type();
    if ft.is_socket() {
        return Ok(()); // not archivable (tar skips them too)
    }
    let kind = if ft.is_dir() {
        NodeKind::Dir
    } else if md.nlink() > 1 && inodes.contains_key(&(md.dev(), md.ino())) {
        NodeKind::HardlinkTo(
            inodes
                .get(&(md.dev(), md.ino()))
                .cloned()
                .unwrap_or_default(),
        )
    } else {
        if md.nlink() > 1 {
            inodes.insert((md.dev(), md.ino()), rel.to_path_buf());
        }
        if ft.is_file() {
            NodeKind::File {
                size: md.len(),
                sha256: hash_file(&full)?,
            }
        } else if ft.is_symlink() {
            NodeKind::Symlink(fs::read_link(&full)?.as_os_str().as_bytes().to_vec())
        } else if ft.is_char_device() {
            NodeKind::Char(md.rdev())
        } else if ft.is_block_device() {
            NodeKind::Block(md.rdev())
        } else {
            NodeKind::Fifo
        }
    };
    let xattrs =
        xattr::lget_all(&full).with_context(|| format!("reading xattrs of {}", full.display()))?;
    out.push(Node {
        path: rel.to_path_buf(),
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: Timestamp {
            sec: md.mtime(),
            nsec: u32::try_from(md.mtime_nsec()).unwrap_or(0),
        },
        xattrs,
        blocks: if ft.is_file() { md.blocks() } else { 0 },
    });
    if ft.is_dir() && md.dev() == root_dev {
        let mut names: Vec<_> = fs::read_dir(&full)
            .with_context(|| format!("listing {}", full.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            walk(root, &rel.join(name), root_dev, inodes, out)?;
        }
    }
    Ok(())
}

fn hash_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex(&h.finalize()))
}

/// SHA-256 (hex) of the manifest of `root`.
pub fn hash(root: &Path) -> Result<String> {
    Ok(hash_nodes(&manifest(root)?))
}

/// [`hash`] of a freshly made filesystem's contents, leaving out the
/// top-level `lost+found` that mke2fs creates (its mtime is the moment of
/// mkfs, so two slots filled from one stream would otherwise differ).
pub fn content_hash(root: &Path) -> Result<String> {
    Ok(hash_nodes(&content_manifest(root)?))
}

/// [`manifest`] without the top-level `lost+found` (see [`content_hash`]).
pub fn content_manifest(root: &Path) -> Result<Vec<Node>> {
    Ok(manifest(root)?
        .into_iter()
        .filter(|n| !n.path.starts_with("lost+found"))
        .collect())
}

/// [`hash`] of a manifest.
pub fn manifest_hash(nodes: &[Node]) -> String {
    hash_nodes(nodes)
}

fn hash_nodes(nodes: &[Node]) -> String {
    let mut h = Sha256::new();
    for n in nodes {
        h.update(n.line().as_bytes());
        h.update(b"\n");
    }
    hex(&h.finalize())
}

/// Lines that differ between two manifests (`-` only in `a`, `+` only in `b`).
/// With `blocks`, regular files must also have the same allocation (holes).
pub fn diff(a: &[Node], b: &[Node], blocks: bool) -> Vec<String> {
    let line = |n: &Node| {
        if blocks && matches!(n.kind, NodeKind::File { .. }) {
            format!("{} blocks={}", n.line(), n.blocks)
        } else {
            n.line()
        }
    };
    let la: Vec<String> = a.iter().map(line).collect();
    let lb: Vec<String> = b.iter().map(line).collect();
    let sa: std::collections::HashSet<&String> = la.iter().collect();
    let sb: std::collections::HashSet<&String> = lb.iter().collect();
    la.iter()
        .filter(|l| !sb.contains(l))
        .map(|l| format!("- {l}"))
        .chain(
            lb.iter()
                .filter(|l| !sa.contains(l))
                .map(|l| format!("+ {l}")),
        )
        .collect()
}

/// A tree held in memory.
pub struct SavedTree {
    entries: Vec<(TarEntry, Vec<u8>)>,
    /// Bytes held (contents plus bookkeeping).
    pub bytes: u64,
    /// [`hash`] of the tree when it was saved.
    pub hash: String,
}

impl SavedTree {
    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held (not even the root).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Reads the whole tree below `root` into memory, refusing before reading
/// any contents if it would take more than `limit` bytes.
pub fn save(root: &Path, limit: u64) -> Result<SavedTree> {
    let nodes = manifest(root)?;
    let bytes: u64 = nodes
        .iter()
        .map(|n| {
            let content = match &n.kind {
                NodeKind::File { size, .. } => *size,
                _ => 0,
            };
            let meta: u64 = n
                .xattrs
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum();
            content + meta + n.path.as_os_str().len() as u64 + ENTRY_OVERHEAD
        })
        .sum();
    if bytes > limit {
        bail!(
            "{} needs {bytes} bytes to be kept in memory, more than the {limit} allowed; nothing was changed",
            root.display()
        );
    }
    let mut entries = Vec::with_capacity(nodes.len());
    for n in &nodes {
        let full = root.join(&n.path);
        let mut entry = entry_of(n);
        let mut data = Vec::new();
        if entry.kind == Kind::File {
            File::open(&full)
                .and_then(|f| f.take(entry.size).read_to_end(&mut data))
                .with_context(|| format!("reading {}", full.display()))?;
        }
        entry.size = data.len() as u64;
        entries.push((entry, data));
    }
    // The hash of what was read: a file that changed while being read shows
    // up as a mismatch after the restore instead of passing unnoticed.
    Ok(SavedTree {
        entries,
        bytes,
        hash: hash_nodes(&nodes),
    })
}

/// Writes a saved tree into `root` (normally a fresh filesystem) with all
/// its metadata, then checks that the result hashes as the saved tree did.
pub fn restore(saved: &SavedTree, root: &Path) -> Result<()> {
    let mut ex = Extractor::new(root, ExtractOptions::default())?;
    for (entry, data) in &saved.entries {
        ex.extract(entry, &mut data.as_slice())?;
    }
    ex.finish()?;
    let now = hash(root)?;
    if now != saved.hash {
        bail!(
            "restoring into {}: the restored tree hashes {now}, the saved one {}",
            root.display(),
            saved.hash
        );
    }
    Ok(())
}

/// The tar entry that recreates `n` (a regular file's size from the listing).
fn entry_of(n: &Node) -> TarEntry {
    let (kind, size) = match &n.kind {
        NodeKind::File { size, .. } => (Kind::File, *size),
        NodeKind::Dir => (Kind::Dir, 0),
        NodeKind::Symlink(t) => (Kind::Symlink(t.clone()), 0),
        NodeKind::Char(d) => (
            Kind::Char {
                major: major(*d),
                minor: minor(*d),
            },
            0,
        ),
        NodeKind::Block(d) => (
            Kind::Block {
                major: major(*d),
                minor: minor(*d),
            },
            0,
        ),
        NodeKind::Fifo => (Kind::Fifo, 0),
        NodeKind::HardlinkTo(p) => (Kind::Hardlink(p.as_os_str().as_bytes().to_vec()), 0),
    };
    let path = if n.path.as_os_str().is_empty() {
        b".".to_vec()
    } else {
        n.path.as_os_str().as_bytes().to_vec()
    };
    TarEntry {
        path,
        kind,
        mode: n.mode,
        uid: n.uid,
        gid: n.gid,
        mtime: n.mtime,
        size,
        sparse: None,
        xattrs: n.xattrs.clone(),
        acls: None,
        offset: 0,
    }
}

/// Tar block size.
const BLOCK: u64 = 512;

/// One PAX record, `LEN KEY=VALUE\n`, LEN counting the whole record.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while base + len.to_string().len() != len {
        len = base + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// A ustar header block; `octal` fields that do not fit are left zero
/// (the PAX header before it carries every value).
fn ustar_block(name: &[u8], typeflag: u8, e: &TarEntry, size: u64, link: &[u8]) -> [u8; 512] {
    let mut b = [0u8; 512];
    fn put_in(b: &mut [u8; 512], at: usize, len: usize, v: &[u8]) {
        let n = v.len().min(len);
        if let (Some(dst), Some(src)) = (b.get_mut(at..at + n), v.get(..n)) {
            dst.copy_from_slice(src);
        }
    }
    let mut put = |at: usize, len: usize, v: &[u8]| put_in(&mut b, at, len, v);
    let octal = |v: u64, width: usize| {
        let s = format!("{v:0w$o}", w = width - 1);
        if s.len() < width {
            s.into_bytes()
        } else {
            Vec::new()
        }
    };
    put(0, 99, name);
    put(100, 8, &octal(u64::from(e.mode & 0o7777), 8));
    put(108, 8, &octal(u64::from(e.uid), 8));
    put(116, 8, &octal(u64::from(e.gid), 8));
    put(124, 12, &octal(size, 12));
    put(136, 12, &octal(u64::try_from(e.mtime.sec).unwrap_or(0), 12));
    put(148, 8, b"        ");
    put(156, 1, &[typeflag]);
    put(157, 99, link);
    put(257, 8, b"ustar\x0000");
    if let Kind::Char { major, minor } | Kind::Block { major, minor } = e.kind {
        put(329, 8, &octal(u64::from(major), 8));
        put(337, 8, &octal(u64::from(minor), 8));
    }
    let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
    put_in(&mut b, 148, 8, format!("{sum:06o}\0 ").as_bytes());
    b
}

/// The headers of `e` in a PAX archive (an `x` header with path, link,
/// times, owner, size and xattrs, then the ustar header); its data and
/// padding follow.
pub fn tar_headers(e: &TarEntry) -> Vec<u8> {
    let (typeflag, link): (u8, &[u8]) = match &e.kind {
        Kind::File => (b'0', b""),
        Kind::Hardlink(t) => (b'1', t),
        Kind::Symlink(t) => (b'2', t),
        Kind::Char { .. } => (b'3', b""),
        Kind::Block { .. } => (b'4', b""),
        Kind::Dir => (b'5', b""),
        Kind::Fifo => (b'6', b""),
    };
    let mut pax = Vec::new();
    pax_record(&mut pax, b"path", &e.path);
    if !link.is_empty() {
        pax_record(&mut pax, b"linkpath", link);
    }
    let t = e.mtime;
    let mtime = if t.sec < 0 && t.nsec > 0 {
        format!("-{}.{:09}", -(t.sec + 1), 1_000_000_000 - t.nsec)
    } else {
        format!("{}.{:09}", t.sec, t.nsec)
    };
    pax_record(&mut pax, b"mtime", mtime.as_bytes());
    pax_record(&mut pax, b"uid", e.uid.to_string().as_bytes());
    pax_record(&mut pax, b"gid", e.gid.to_string().as_bytes());
    pax_record(&mut pax, b"size", e.size.to_string().as_bytes());
    for (k, v) in &e.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        for &c in k {
            match c {
                b'=' => key.extend_from_slice(b"%3D"),
                b'%' => key.extend_from_slice(b"%25"),
                c => key.push(c),
            }
        }
        pax_record(&mut pax, &key, v);
    }
    let mut out = ustar_block(b"PaxHeader", b'x', e, pax.len() as u64, b"").to_vec();
    out.extend_from_slice(&pax);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&ustar_block(&e.path, typeflag, e, e.size, link));
    out
}

/// Bytes after `n` bytes of data to the next block boundary.
fn padding(n: u64) -> u64 {
    (BLOCK - n % BLOCK) % BLOCK
}

/// Length of the archive [`write_tar`] makes of `nodes` (listed by
/// [`manifest`]): known before a byte of contents is read.
pub fn tar_len(nodes: &[Node]) -> u64 {
    nodes
        .iter()
        .map(|n| {
            let e = entry_of(n);
            tar_headers(&e).len() as u64 + e.size + padding(e.size)
        })
        .sum::<u64>()
        + 2 * BLOCK
}

/// Writes the tree below `root`, as [`manifest`] listed it in `nodes`, as
/// one PAX archive of exactly [`tar_len`] bytes (a file whose size changed
/// since the listing is an error). Returns the bytes written.
pub fn write_tar(root: &Path, nodes: &[Node], w: &mut dyn std::io::Write) -> Result<u64> {
    let mut total = 0u64;
    for n in nodes {
        let e = entry_of(n);
        let h = tar_headers(&e);
        w.write_all(&h)?;
        if e.kind == Kind::File {
            let full = root.join(&n.path);
            let copied = File::open(&full)
                .and_then(|f| std::io::copy(&mut f.take(e.size), w))
                .with_context(|| format!("reading {}", full.display()))?;
            if copied != e.size {
                bail!("{} changed while being copied", full.display());
            }
        }
        let pad = padding(e.size);
        w.write_all(&vec![0u8; pad as usize])?;
        total += h.len() as u64 + e.size + pad;
    }
    w.write_all(&[0u8; 2 * BLOCK as usize])?;
    Ok(total + 2 * BLOCK)
}

/// Unpacks an archive [`write_tar`] made into `root` (normally a fresh
/// filesystem) and checks that the result hashes `tree` ([`hash`] of the
/// tree that was copied). Returns the number of entries. The archive goes
/// through the rootfs unpack's fan-out, so that the tar reader is the one
/// the unpack uses (one copy of it in the binary).
pub fn restore_tar(r: &mut (dyn Read + Send), root: &Path, tree: &str) -> Result<usize> {
    let (fan, readers) = super::fanout::fanout(1);
    let reader = readers
        .into_iter()
        .next()
        .context("making the reader of the copy")?;
    let (done, pumped) = std::thread::scope(|s| {
        let pump = s.spawn(move || fan.pump(r));
        let done = (|| -> Result<usize> {
            let mut reader = super::tar::TarReader::new(reader);
            let mut ex = Extractor::new(root, ExtractOptions::default())?;
            let mut count = 0;
            while let Some(mut entry) = reader.next_entry()? {
                // The xattrs carry the ACLs as they were: set them alone.
                entry.acls = None;
                ex.extract(&entry, &mut reader)?;
                count += 1;
                crate::failpoint::hit("restore-entry");
            }
            ex.finish()?;
            Ok(count)
        })();
        (done, pump.join())
    });
    let count = done?;
    match pumped {
        Ok(r) => r.map(drop)?,
        Err(_) => bail!("reading the copy panicked"),
    }
    let now = hash(root)?;
    if now != tree {
        bail!(
            "restoring into {}: the restored tree hashes {now}, the copied one {tree}",
            root.display()
        );
    }
    Ok(count)
}

fn major(d: u64) -> u32 {
    u32::try_from(nix::sys::stat::major(d)).unwrap_or(u32::MAX)
}

fn minor(d: u64) -> u32 {
    u32::try_from(nix::sys::stat::minor(d)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample(root: &Path) {
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/f"), b"hello").unwrap();
        fs::set_permissions(root.join("a/f"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(root.join("a/f"), root.join("a/b/g")).unwrap();
        std::os::unix::fs::symlink("../f", root.join("a/b/l")).unwrap();
        nix::unistd::mkfifo(
            &root.join("p"),
            nix::sys::stat::Mode::from_bits_truncate(0o640),
        )
        .unwrap();
        let _ = xattr::lset(&root.join("a/f"), b"user.k", b"v");
    }

    #[test]
    fn save_and_restore_reproduce_the_tree() {
        let src = tempfile::tempdir().unwrap();
        sample(src.path());
        let saved = save(src.path(), 1 << 20).unwrap();
        assert_eq!(saved.hash, hash(src.path()).unwrap());
        let dst = tempfile::tempdir().unwrap();
        restore(&saved, dst.path()).unwrap();
        let (a, b) = (manifest(src.path()).unwrap(), manifest(dst.path()).unwrap());
        assert_eq!(diff(&a, &b, false), Vec::<String>::new());
        assert!(a.iter().any(|n| matches!(n.kind, NodeKind::HardlinkTo(_))));
    }

    #[test]
    fn the_tar_copy_has_its_announced_length_and_restores_the_tree() {
        let src = tempfile::tempdir().unwrap();
        sample(src.path());
        fs::write(
            src.path().join(format!("a/{}", "long-name-".repeat(12))),
            [7u8; 1000],
        )
        .unwrap();
        let nodes = manifest(src.path()).unwrap();
        let mut out = Vec::new();
        let n = write_tar(src.path(), &nodes, &mut out).unwrap();
        assert_eq!((n, out.len() as u64), (tar_len(&nodes), tar_len(&nodes)));
        let dst = tempfile::tempdir().unwrap();
        let tree = manifest_hash(&nodes);
        let count = restore_tar(&mut out.as_slice(), dst.path(), &tree).unwrap();
        assert_eq!(count, nodes.len());
        let err = restore_tar(
            &mut out.as_slice(),
            tempfile::tempdir().unwrap().path(),
            "00",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("the copied one 00"), "{err}");
    }

    #[test]
    fn a_tree_over_the_limit_is_refused() {
        let src = tempfile::tempdir().unwrap();
        sample(src.path());
        let err = save(src.path(), 100).err().unwrap().to_string();
        assert!(err.contains("more than the 100 allowed"), "{err}");
    }

    #[test]
    fn the_hash_sees_every_kind_of_change() {
        let d = tempfile::tempdir().unwrap();
        sample(d.path());
        let h0 = hash(d.path()).unwrap();
        fs::write(d.path().join("a/f"), b"hellO").unwrap();
        let h1 = hash(d.path()).unwrap();
        assert_ne!(h0, h1);
        fs::set_permissions(d.path().join("p"), fs::Permissions::from_mode(0o600)).unwrap();
        let h2 = hash(d.path()).unwrap();
        assert_ne!(h1, h2);
        fs::remove_file(d.path().join("a/b/l")).unwrap();
        std::os::unix::fs::symlink("../g", d.path().join("a/b/l")).unwrap();
        assert_ne!(h2, hash(d.path()).unwrap());
    }
}
