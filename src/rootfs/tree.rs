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
        let (kind, data) = match &n.kind {
            NodeKind::File { size, .. } => {
                let mut data = Vec::new();
                File::open(&full)
                    .and_then(|f| f.take(*size).read_to_end(&mut data))
                    .with_context(|| format!("reading {}", full.display()))?;
                (Kind::File, data)
            }
            NodeKind::Dir => (Kind::Dir, Vec::new()),
            NodeKind::Symlink(t) => (Kind::Symlink(t.clone()), Vec::new()),
            NodeKind::Char(d) => (
                Kind::Char {
                    major: major(*d),
                    minor: minor(*d),
                },
                Vec::new(),
            ),
            NodeKind::Block(d) => (
                Kind::Block {
                    major: major(*d),
                    minor: minor(*d),
                },
                Vec::new(),
            ),
            NodeKind::Fifo => (Kind::Fifo, Vec::new()),
            NodeKind::HardlinkTo(p) => (
                Kind::Hardlink(p.as_os_str().as_bytes().to_vec()),
                Vec::new(),
            ),
        };
        let path = if n.path.as_os_str().is_empty() {
            b".".to_vec()
        } else {
            n.path.as_os_str().as_bytes().to_vec()
        };
        let entry = TarEntry {
            path,
            kind,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            mtime: n.mtime,
            size: data.len() as u64,
            sparse: None,
            xattrs: n.xattrs.clone(),
            acls: None,
            offset: 0,
        };
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
