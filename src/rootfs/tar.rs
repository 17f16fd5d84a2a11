//! A streaming tar reader with GNU tar's view of the format.
//!
//! # Why not `tar::Archive`
//!
//! The `tar` crate's [`tar::Header`] is used where it is right: the member
//! name (with the ustar `prefix` joined only for real ustar headers, not GNU
//! ones, whose prefix field holds times) and the link name. Its numeric
//! getters are stricter than GNU tar (an all-NUL uid field is an error there,
//! 0 for GNU tar), so numbers go through [`parse_numeric`], which reads them
//! as GNU tar does, base-256 included. Its archive loop is not enough for a
//! rootfs (see
//! `docs/spec/toolchain.md` §1): it has no PAX sparse formats, drops
//! sub-second mtimes, ignores `SCHILY.acl.*`, keeps PAX records and GNU long
//! names in unbounded buffers and gives no stream offsets for errors. So the
//! loop over blocks is ours: it reads from any [`BufRead`] (the decompressor's
//! output, shared between slots), folds the metadata headers (`x`, `g`, `L`,
//! `K`, old-GNU sparse extensions, the PAX 1.0 sparse map) into one
//! [`TarEntry`], and hands out the member's data without copying it.
//!
//! # Bounds
//!
//! Nothing is allocated at a size the archive claims. A PAX header is at most
//! [`MAX_PAX_HEADER`] bytes, a GNU long name or link [`MAX_LONG_NAME`], a
//! sparse map [`MAX_SPARSE_REGIONS`] regions; larger ones are refused with the
//! offset of the header. Member data is streamed, so a 10 GiB sparse file
//! costs its map, not its size.
#![deny(clippy::indexing_slicing)]

use anyhow::{anyhow, bail, Context, Result};
use std::io::{self, BufRead, Read};

/// The tar block size.
pub const BLOCK: u64 = 512;
/// Largest PAX extended header accepted (real ones are a few KiB: paths,
/// xattrs up to the kernel's 64 KiB value limit, ACL text).
pub const MAX_PAX_HEADER: u64 = 4 << 20;
/// Largest GNU `L`/`K` long name accepted (Linux paths stop at 4096).
pub const MAX_LONG_NAME: u64 = 64 << 10;
/// Most regions a sparse map may have (16 bytes each in memory).
pub const MAX_SPARSE_REGIONS: usize = 1 << 18;

// Offsets in the old GNU header (GNU tar's `struct oldgnu_header`).
const GNU_SPARSE_OFFSET: usize = 386;
const GNU_SPARSE_IN_HEADER: usize = 4;
const GNU_ISEXTENDED: usize = 482;
const GNU_REALSIZE: usize = 483;
const SPARSE_ENTRY_LEN: usize = 24;
// `struct sparse_header` (the extension blocks): 21 entries, then the flag.
const GNU_EXT_ENTRIES: usize = 21;
const GNU_EXT_ISEXTENDED: usize = 504;
const TYPEFLAG: usize = 156;
// Numeric fields of the ustar/GNU header (POSIX `struct posix_header`).
const MODE: std::ops::Range<usize> = 100..108;
const UID: std::ops::Range<usize> = 108..116;
const GID: std::ops::Range<usize> = 116..124;
const SIZE: std::ops::Range<usize> = 124..136;
const MTIME: std::ops::Range<usize> = 136..148;
const DEVMAJOR: std::ops::Range<usize> = 329..337;
const DEVMINOR: std::ops::Range<usize> = 337..345;
const CHKSUM: std::ops::Range<usize> = 148..156;

/// A point in time as tar records it (PAX gives nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp {
    /// Seconds since the epoch (may be negative).
    pub sec: i64,
    /// Nanoseconds, 0..1e9.
    pub nsec: u32,
}

/// One data region of a sparse file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Where the region starts in the file.
    pub offset: u64,
    /// How many bytes of data follow in the archive for it.
    pub len: u64,
}

/// What kind of file an entry makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file (possibly sparse, see [`TarEntry::sparse`]).
    File,
    /// A directory.
    Dir,
    /// A symbolic link to this target (stored verbatim).
    Symlink(Vec<u8>),
    /// A hard link to this earlier member (a path in the archive).
    Hardlink(Vec<u8>),
    /// A character device.
    Char {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    Block {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
}

/// POSIX ACLs as GNU tar stores them (`SCHILY.acl.*`, acl_to_text form).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TarAcls {
    /// The access ACL, if the archive has one.
    pub access: Option<String>,
    /// The default ACL (directories), if the archive has one.
    pub default: Option<String>,
}

/// One member, with every header that described it folded in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    /// The path as stored (not yet sanitised; see [`super::path`]).
    pub path: Vec<u8>,
    /// File type and link target or device numbers.
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: Timestamp,
    /// Size of the file (the real size for a sparse file).
    pub size: u64,
    /// Data regions of a sparse file, in order; `None` for a dense file.
    pub sparse: Option<Vec<Region>>,
    /// Extended attributes (`SCHILY.xattr.*`), name and raw value.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// ACLs with GNU tar `--acls` semantics, or `None` to leave whatever
    /// `xattrs` sets alone (used when restoring a saved tree).
    pub acls: Option<TarAcls>,
    /// Offset of the entry's first header in the uncompressed stream.
    pub offset: u64,
}

/// Keywords and values of a PAX header, in order (duplicates kept: the
/// sparse 0.0 format repeats `GNU.sparse.offset`/`numbytes`).
type Records = Vec<(String, Vec<u8>)>;

/// Reads entries one after the other from an uncompressed tar stream.
pub struct TarReader<R> {
    r: R,
    /// Bytes consumed from `r`.
    pos: u64,
    /// Data bytes of the current entry not yet consumed.
    remaining: u64,
    /// Padding after the current entry's data.
    padding: u64,
    /// Global PAX records (`g` headers) in force.
    global: Records,
    /// Warnings (unknown keywords and the like), each reported once.
    warnings: Vec<String>,
    finished: bool,
}

impl<R: BufRead> TarReader<R> {
    /// A reader at the start of an archive.
    pub fn new(r: R) -> TarReader<R> {
        TarReader {
            r,
            pos: 0,
            remaining: 0,
            padding: 0,
            global: Vec::new(),
            warnings: Vec::new(),
            finished: false,
        }
    }

    /// Bytes of the uncompressed stream consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Warnings collected so far (each text once), for the caller to report.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Gives back the underlying reader (e.g. to drain what follows the
    /// end-of-archive marker).
    pub fn into_inner(self) -> R {
        self.r
    }

    fn warn(&mut self, text: String) {
        if !self.warnings.contains(&text) {
            self.warnings.push(text);
        }
    }

    /// The next entry, or `None` after the end-of-archive marker. Data of the
    /// previous entry that was not read is skipped.
    pub fn next_entry(&mut self) -> Result<Option<TarEntry>> {
        if self.finished {
            return Ok(None);
        }
        self.skip_data()?;
        let mut local: Records = Vec::new();
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut first_offset = None;
        loop {
            let offset = self.pos;
            first_offset.get_or_insert(offset);
            let Some(block) = self.read_block()? else {
                bail!("tar: the archive ends at byte {offset} without an end-of-archive marker (truncated?)");
            };
            if block.iter().all(|&b| b == 0) {
                // GNU tar stops at the first zero block; a second one normally
                // follows. Whatever comes after is drained by the caller.
                self.finished = true;
                if local.is_empty() && long_name.is_none() && long_link.is_none() {
                    return Ok(None);
                }
                bail!(
                    "tar: extended header at byte {} is not followed by a member",
                    first_offset.unwrap_or(offset)
                );
            }
            verify_checksum(&block).with_context(|| format!("tar: header at byte {offset}"))?;
            let header = tar::Header::from_byte_slice(&block);
            let typeflag = block.get(TYPEFLAG).copied().unwrap_or(0);
            let size = field(&block, SIZE, "size")
                .map_err(|e| anyhow!("tar: header at byte {offset}: {e}"))?;
            match typeflag {
                b'x' | b'g' | b'X' => {
                    let data =
                        self.read_meta(size, MAX_PAX_HEADER, offset, "PAX extended header")?;
                    let records = parse_pax(&data)
                        .with_context(|| format!("tar: PAX header at byte {offset}"))?;
                    if typeflag == b'g' {
                        merge_global(&mut self.global, records);
                    } else {
                        local.extend(records);
                    }
                }
                b'L' => {
                    let data = self.read_meta(size, MAX_LONG_NAME, offset, "GNU long name")?;
                    long_name = Some(trim_nuls(data));
                }
                b'K' => {
                    let data = self.read_meta(size, MAX_LONG_NAME, offset, "GNU long link name")?;
                    long_link = Some(trim_nuls(data));
                }
                b'V' => {
                    // A volume label: GNU tar notes it and extracts nothing.
                    self.remaining = size;
                    self.padding = padding(size);
                    self.skip_data()?;
                }
                _ => {
                    let entry = self.build_entry(
                        &block,
                        header,
                        size,
                        first_offset.unwrap_or(offset),
                        local,
                        long_name,
                        long_link,
                    )?;
                    return Ok(Some(entry));
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn build_entry(
        &mut self,
        block: &[u8; 512],
        header: &tar::Header,
        header_size: u64,
        offset: u64,
        local: Records,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
    ) -> Result<TarEntry> {
        let typeflag = block.get(TYPEFLAG).copied().unwrap_or(0);
        let at = |what: &str| format!("tar: member at byte {offset}: {what}");
        // Local records override global ones, keyword by keyword.
        let mut records: Records = self
            .global
            .iter()
            .filter(|(k, _)| !local.iter().any(|(l, _)| l == k))
            .cloned()
            .collect();
        records.extend(local);
        let get = |key: &str| {
            records
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_slice())
        };
        let pax_num = |key: &str| -> Result<Option<u64>> {
            get(key)
                .map(|v| {
                    parse_decimal(v)
                        .ok_or_else(|| anyhow!(at(&format!("PAX {key} is not a number"))))
                })
                .transpose()
        };

        let mut path = if let Some(p) = get("GNU.sparse.name") {
            p.to_vec()
        } else if let Some(p) = get("path") {
            p.to_vec()
        } else if let Some(p) = long_name {
            p
        } else {
            header.path_bytes().into_owned()
        };
        let link = if let Some(l) = get("linkpath") {
            l.to_vec()
        } else if let Some(l) = long_link {
            l
        } else {
            header
                .link_name_bytes()
                .map(|c| c.into_owned())
                .unwrap_or_default()
        };
        let size = pax_num("size")?.unwrap_or(header_size);
        let num = |range: std::ops::Range<usize>, name: &str| {
            field(block, range, name).map_err(|e| anyhow!(at(&e)))
        };
        let id = |key: &str, hdr: Result<u64>| -> Result<u32> {
            let v = match pax_num(key)? {
                Some(v) => v,
                None => hdr?,
            };
            u32::try_from(v).map_err(|_| anyhow!(at(&format!("{key} {v} does not fit in 32 bits"))))
        };
        let uid = id("uid", num(UID, "uid"))?;
        let gid = id("gid", num(GID, "gid"))?;
        let mtime = match get("mtime") {
            Some(v) => parse_pax_time(v).ok_or_else(|| anyhow!(at("PAX mtime is not a time")))?,
            None => {
                let s = num(MTIME, "mtime")?;
                Timestamp {
                    sec: i64::try_from(s).unwrap_or(i64::MAX),
                    nsec: 0,
                }
            }
        };
        let mode = u32::try_from(num(MODE, "mode")? & 0o7777).unwrap_or(0);
        let dev = |key: &str, range: std::ops::Range<usize>| -> Result<u32> {
            let v = match pax_num(key)? {
                Some(v) => v,
                None => num(range, key)?,
            };
            u32::try_from(v).map_err(|_| anyhow!(at(&format!("{key} {v} too large"))))
        };

        let kind = match typeflag {
            b'0' | 0 | b'7' | b'S' if path.ends_with(b"/") && typeflag != b'S' => Kind::Dir,
            b'0' | 0 | b'7' | b'S' => Kind::File,
            b'1' => Kind::Hardlink(link),
            b'2' => Kind::Symlink(link),
            b'3' => Kind::Char {
                major: dev("SCHILY.devmajor", DEVMAJOR)?,
                minor: dev("SCHILY.devminor", DEVMINOR)?,
            },
            b'4' => Kind::Block {
                major: dev("SCHILY.devmajor", DEVMAJOR)?,
                minor: dev("SCHILY.devminor", DEVMINOR)?,
            },
            b'5' | b'D' => Kind::Dir,
            b'6' => Kind::Fifo,
            other => bail!(
                "tar: member at byte {offset} ({}) has type {:?}, which is not supported (multi-volume or unknown)",
                String::from_utf8_lossy(&path),
                char::from(other)
            ),
        };

        let mut xattrs = Vec::new();
        let mut acls = TarAcls::default();
        for (key, value) in &records {
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                xattrs.retain(|(n, _): &(Vec<u8>, Vec<u8>)| n != &decode_xattr_name(name));
                xattrs.push((decode_xattr_name(name), value.clone()));
            } else if key == "SCHILY.acl.access" {
                acls.access = Some(String::from_utf8_lossy(value).into_owned());
            } else if key == "SCHILY.acl.default" {
                acls.default = Some(String::from_utf8_lossy(value).into_owned());
            } else if !is_known_keyword(key) {
                self.warn(format!(
                    "ignoring unknown PAX keyword {key:?} (as GNU tar does)"
                ));
            }
        }

        // Data that follows this header in the archive.
        self.remaining = size;
        self.padding = padding(size);
        let mut file_size = size;
        let mut sparse = None;
        if typeflag == b'S' {
            let (map, real) = self.read_old_gnu_sparse(block, offset)?;
            sparse = Some(map);
            file_size = real;
        } else if get("GNU.sparse.major").is_some()
            || get("GNU.sparse.map").is_some()
            || get("GNU.sparse.offset").is_some()
            || get("GNU.sparse.size").is_some()
        {
            let major = pax_num("GNU.sparse.major")?;
            let real = match major {
                Some(1) => pax_num("GNU.sparse.realsize")?,
                Some(m) => bail!(at(&format!("sparse format {m}.x is not supported"))),
                None => pax_num("GNU.sparse.size")?,
            }
            .ok_or_else(|| anyhow!(at("sparse member without its real size")))?;
            let map = if major == Some(1) {
                self.read_pax1_sparse_map(offset)?
            } else if let Some(m) = get("GNU.sparse.map") {
                parse_sparse_map_01(m)
                    .ok_or_else(|| anyhow!(at("GNU.sparse.map is malformed or too long")))?
            } else {
                sparse_map_00(&records).ok_or_else(|| {
                    anyhow!(at(
                        "GNU.sparse.offset/numbytes records are malformed or too many"
                    ))
                })?
            };
            sparse = Some(map);
            file_size = real;
            // GNU tar 0.1/1.0 put "GNUSparseFile.PID/name" in the header; the
            // real name came from GNU.sparse.name above. 0.0 has only `path`.
            if get("GNU.sparse.name").is_none() && get("path").is_none() {
                path = header.path_bytes().into_owned();
            }
        }
        if let Some(map) = &sparse {
            check_sparse_map(map, file_size, self.remaining)
                .map_err(|e| anyhow!(at(&format!("sparse map: {e}"))))?;
        }
        if kind != Kind::File && sparse.is_some() {
            bail!(at("sparse map on a member that is not a regular file"));
        }

        Ok(TarEntry {
            path,
            kind,
            mode,
            uid,
            gid,
            mtime,
            size: file_size,
            sparse,
            xattrs,
            acls: Some(acls),
            offset,
        })
    }

    /// Old GNU sparse (`--format=gnu -S`): four regions in the header, more
    /// in extension blocks that follow it.
    fn read_old_gnu_sparse(
        &mut self,
        block: &[u8; 512],
        offset: u64,
    ) -> Result<(Vec<Region>, u64)> {
        let bad = |what: &str| anyhow!("tar: sparse member at byte {offset}: {what}");
        let mut map = Vec::new();
        let head = block
            .get(GNU_SPARSE_OFFSET..GNU_SPARSE_OFFSET + GNU_SPARSE_IN_HEADER * SPARSE_ENTRY_LEN)
            .ok_or_else(|| bad("short header"))?;
        push_sparse_entries(&mut map, head).map_err(&bad)?;
        let real = block
            .get(GNU_REALSIZE..GNU_REALSIZE + 12)
            .and_then(parse_numeric)
            .ok_or_else(|| bad("realsize field"))?;
        let mut extended = block.get(GNU_ISEXTENDED).copied().unwrap_or(0) != 0;
        while extended {
            let at = self.pos;
            let ext = self.read_block()?.ok_or_else(|| {
                bad(&format!(
                    "archive ends in the sparse extension at byte {at}"
                ))
            })?;
            let entries = ext
                .get(..GNU_EXT_ENTRIES * SPARSE_ENTRY_LEN)
                .ok_or_else(|| bad("short extension block"))?;
            push_sparse_entries(&mut map, entries).map_err(&bad)?;
            extended = ext.get(GNU_EXT_ISEXTENDED).copied().unwrap_or(0) != 0;
        }
        Ok((map, real))
    }

    /// PAX sparse 1.0: the map is at the start of the member's data, as
    /// decimal numbers one per line, padded to a block.
    fn read_pax1_sparse_map(&mut self, offset: u64) -> Result<Vec<Region>> {
        let bad = |what: &str| anyhow!("tar: sparse 1.0 member at byte {offset}: {what}");
        let mut used = 0u64;
        let mut next = |me: &mut Self| -> Result<u64> {
            let mut digits = Vec::new();
            loop {
                let mut b = [0u8; 1];
                if me.remaining == 0 {
                    return Err(bad("map runs past the member's data"));
                }
                me.r.read_exact(&mut b)
                    .map_err(|e| bad(&format!("reading the map: {e}")))?;
                me.pos += 1;
                me.remaining -= 1;
                used += 1;
                match b {
                    [b'\n'] => break,
                    [d @ b'0'..=b'9'] if digits.len() < 20 => digits.push(d),
                    _ => return Err(bad("map is not decimal numbers, one per line")),
                }
            }
            parse_decimal(&digits).ok_or_else(|| bad("empty number in the map"))
        };
        let count = next(self)?;
        if count > MAX_SPARSE_REGIONS as u64 {
            return Err(bad(&format!(
                "{count} regions is more than the {MAX_SPARSE_REGIONS} accepted"
            )));
        }
        let mut map = Vec::new();
        for _ in 0..count {
            let offset = next(self)?;
            let len = next(self)?;
            map.push(Region { offset, len });
        }
        // The map is padded to a whole block.
        let pad = padding(used);
        if pad > self.remaining {
            return Err(bad("map padding runs past the member's data"));
        }
        self.skip_exact(pad)?;
        self.remaining -= pad;
        Ok(map)
    }

    /// Reads a metadata member's data (PAX header, long name), capped.
    fn read_meta(&mut self, size: u64, cap: u64, offset: u64, what: &str) -> Result<Vec<u8>> {
        if size > cap {
            bail!("tar: {what} at byte {offset} claims {size} bytes, more than the {cap} accepted");
        }
        let mut data = Vec::new();
        (&mut self.r)
            .take(size)
            .read_to_end(&mut data)
            .with_context(|| format!("tar: reading the {what} at byte {offset}"))?;
        if data.len() as u64 != size {
            bail!("tar: the archive ends inside the {what} at byte {offset} (truncated)");
        }
        self.pos += size;
        self.skip_exact(padding(size))?;
        Ok(data)
    }

    fn read_block(&mut self) -> Result<Option<[u8; 512]>> {
        let mut block = [0u8; 512];
        let mut got = 0;
        while got < block.len() {
            let rest = block.get_mut(got..).unwrap_or_default();
            match self.r.read(rest) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("reading the tar stream at byte {}", self.pos)))
                }
            }
        }
        self.pos += got as u64;
        match got {
            0 => Ok(None),
            512 => Ok(Some(block)),
            _ => bail!(
                "tar: the archive ends inside a header at byte {} (truncated)",
                self.pos
            ),
        }
    }

    fn skip_exact(&mut self, mut n: u64) -> Result<()> {
        while n > 0 {
            let buf = self
                .r
                .fill_buf()
                .with_context(|| format!("reading the tar stream at byte {}", self.pos))?;
            if buf.is_empty() {
                bail!(
                    "tar: the archive ends at byte {} inside a member (truncated)",
                    self.pos
                );
            }
            let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
            self.r.consume(take);
            self.pos += take as u64;
            n -= take as u64;
        }
        Ok(())
    }

    /// Skips what is left of the current entry's data and its padding.
    pub fn skip_data(&mut self) -> Result<()> {
        let n = self.remaining + self.padding;
        self.remaining = 0;
        self.padding = 0;
        self.skip_exact(n)
    }

    /// Data bytes of the current entry not yet read.
    pub fn data_remaining(&self) -> u64 {
        self.remaining
    }

    /// The next piece of the current entry's data, borrowed from the stream
    /// (empty when the data is exhausted). Follow with [`Self::consume_data`].
    pub fn fill_data(&mut self) -> Result<&[u8]> {
        if self.remaining == 0 {
            return Ok(&[]);
        }
        let pos = self.pos;
        let buf = self
            .r
            .fill_buf()
            .with_context(|| format!("reading the tar stream at byte {pos}"))?;
        if buf.is_empty() {
            bail!("tar: the archive ends at byte {pos} inside a member's data (truncated)");
        }
        let n = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        Ok(buf.get(..n).unwrap_or_default())
    }

    /// Marks `n` bytes returned by [`Self::fill_data`] as used.
    pub fn consume_data(&mut self, n: usize) {
        let n = (n as u64).min(self.remaining);
        self.r.consume(n as usize);
        self.pos += n;
        self.remaining -= n;
    }
}

/// A numeric header field, read as GNU tar reads it: octal with blanks or
/// NULs around it (all blank is 0), or base-256.
fn field(block: &[u8; 512], range: std::ops::Range<usize>, name: &str) -> Result<u64, String> {
    block
        .get(range)
        .and_then(parse_numeric)
        .ok_or_else(|| format!("{name} field is not a number"))
}

/// Checks the header checksum. GNU tar accepts both the unsigned sum
/// (POSIX) and the signed one some old tars wrote.
fn verify_checksum(block: &[u8; 512]) -> Result<()> {
    let stored = block
        .get(CHKSUM)
        .and_then(parse_numeric)
        .ok_or_else(|| anyhow!("checksum field is not a number (not a tar archive?)"))?;
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if CHKSUM.contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    if stored == unsigned || i64::try_from(stored).ok() == Some(signed) {
        Ok(())
    } else {
        bail!("bad checksum (stored {stored}, computed {unsigned}): corrupt or not a tar archive")
    }
}

/// True if `block` looks like a tar header (used to recognise plain tar).
pub fn is_tar_header(block: &[u8]) -> bool {
    let Ok(b) = <&[u8; 512]>::try_from(block) else {
        return false;
    };
    !b.iter().all(|&x| x == 0) && verify_checksum(b).is_ok()
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

fn trim_nuls(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// A tar numeric field: octal (space/NUL padded) or GNU base-256.
pub fn parse_numeric(field: &[u8]) -> Option<u64> {
    match field.first() {
        Some(&b) if b & 0x80 != 0 => {
            if b & 0x40 != 0 {
                return None; // negative
            }
            let mut v: u64 = u64::from(b & 0x3f);
            for &x in field.get(1..)? {
                v = v.checked_mul(256)?.checked_add(u64::from(x))?;
            }
            Some(v)
        }
        _ => {
            let s = field
                .iter()
                .copied()
                .skip_while(|&c| c == b' ')
                .take_while(|&c| c != 0 && c != b' ');
            // An all-blank field is 0, as GNU tar reads it.
            let mut v: u64 = 0;
            for c in s {
                let d = match c {
                    b'0'..=b'7' => u64::from(c - b'0'),
                    _ => return None,
                };
                v = v.checked_mul(8)?.checked_add(d)?;
            }
            Some(v)
        }
    }
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &c in v {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

/// A PAX time: `[-]SECONDS[.FRACTION]`.
pub fn parse_pax_time(v: &[u8]) -> Option<Timestamp> {
    let (neg, v) = match v.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, v),
    };
    let (int, frac) = match v.iter().position(|&c| c == b'.') {
        Some(dot) => (v.get(..dot)?, v.get(dot + 1..)?),
        None => (v, &b""[..]),
    };
    let sec = i64::try_from(parse_decimal(int)?).ok()?;
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut nsec: u32 = 0;
    for i in 0..9 {
        nsec = nsec * 10 + frac.get(i).map_or(0, |&c| u32::from(c - b'0'));
    }
    if !neg {
        return Some(Timestamp { sec, nsec });
    }
    Some(if nsec == 0 {
        Timestamp { sec: -sec, nsec: 0 }
    } else {
        Timestamp {
            sec: -sec - 1,
            nsec: 1_000_000_000 - nsec,
        }
    })
}

/// Parses PAX records: `LEN KEY=VALUE\n`, LEN counting the whole record.
pub fn parse_pax(data: &[u8]) -> Result<Records> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        // GNU tar pads with NULs in some odd writers; stop there.
        if rest.first() == Some(&0) {
            break;
        }
        let sp = rest
            .iter()
            .position(|&c| c == b' ')
            .filter(|&p| p <= 20)
            .ok_or_else(|| anyhow!("record without a length"))?;
        let len = parse_decimal(rest.get(..sp).unwrap_or_default())
            .and_then(|l| usize::try_from(l).ok())
            .ok_or_else(|| anyhow!("record length is not a number"))?;
        let record = rest
            .get(..len)
            .filter(|r| len > sp + 1 && r.last() == Some(&b'\n'))
            .ok_or_else(|| anyhow!("record length {len} does not match its contents"))?;
        let body = record.get(sp + 1..len - 1).unwrap_or_default();
        let eq = body
            .iter()
            .position(|&c| c == b'=')
            .ok_or_else(|| anyhow!("record without '='"))?;
        let key = std::str::from_utf8(body.get(..eq).unwrap_or_default())
            .map_err(|_| anyhow!("keyword is not UTF-8"))?;
        out.push((
            key.to_owned(),
            body.get(eq + 1..).unwrap_or_default().to_vec(),
        ));
        rest = rest.get(len..).unwrap_or_default();
    }
    Ok(out)
}

/// Applies a global header: a record with an empty value removes the keyword.
fn merge_global(global: &mut Records, records: Records) {
    for (k, v) in records {
        global.retain(|(g, _)| *g != k);
        if !v.is_empty() {
            global.push((k, v));
        }
    }
}

/// GNU tar escapes `=` and `%` in xattr names inside PAX keywords.
fn decode_xattr_name(name: &str) -> Vec<u8> {
    name.replace("%3D", "=").replace("%25", "%").into_bytes()
}

fn is_known_keyword(key: &str) -> bool {
    matches!(
        key,
        "path"
            | "linkpath"
            | "size"
            | "uid"
            | "gid"
            | "uname"
            | "gname"
            | "mtime"
            | "atime"
            | "ctime"
            | "comment"
            | "charset"
            | "hdrcharset"
            | "SCHILY.devmajor"
            | "SCHILY.devminor"
            | "SCHILY.dev"
            | "SCHILY.ino"
            | "SCHILY.nlink"
            | "SCHILY.filetype"
            | "SCHILY.fflags"
            | "SCHILY.realsize"
    ) || key.starts_with("GNU.sparse.")
        || key.starts_with("GNU.dumpdir")
        || key.starts_with("RHT.security.selinux")
}

fn push_sparse_entries(map: &mut Vec<Region>, raw: &[u8]) -> Result<(), &'static str> {
    for e in raw.chunks_exact(SPARSE_ENTRY_LEN) {
        let (off, len) = e.split_at(12);
        if off.iter().all(|&b| b == 0) {
            break; // unused slot
        }
        if map.len() >= MAX_SPARSE_REGIONS {
            return Err("too many regions");
        }
        let offset = parse_numeric(off).ok_or("bad region offset")?;
        let len = parse_numeric(len).ok_or("bad region length")?;
        map.push(Region { offset, len });
    }
    Ok(())
}

/// `GNU.sparse.map=off,len,off,len,...` (format 0.1).
fn parse_sparse_map_01(v: &[u8]) -> Option<Vec<Region>> {
    if v.is_empty() {
        return Some(Vec::new());
    }
    let mut nums = v.split(|&c| c == b',').map(parse_decimal);
    let mut map = Vec::new();
    while let Some(off) = nums.next() {
        let len = nums.next()??;
        if map.len() >= MAX_SPARSE_REGIONS {
            return None;
        }
        map.push(Region { offset: off?, len });
    }
    Some(map)
}

/// Repeated `GNU.sparse.offset` / `GNU.sparse.numbytes` records (format 0.0).
fn sparse_map_00(records: &Records) -> Option<Vec<Region>> {
    let mut map = Vec::new();
    let mut offset = None;
    for (k, v) in records {
        match k.as_str() {
            "GNU.sparse.offset" => offset = Some(parse_decimal(v)?),
            "GNU.sparse.numbytes" => {
                if map.len() >= MAX_SPARSE_REGIONS {
                    return None;
                }
                map.push(Region {
                    offset: offset.take()?,
                    len: parse_decimal(v)?,
                });
            }
            _ => {}
        }
    }
    Some(map)
}

/// Regions must be in order, not overlap, stay inside the file, and add up
/// to the data stored in the archive.
fn check_sparse_map(map: &[Region], real_size: u64, stored: u64) -> Result<(), String> {
    let mut end = 0u64;
    let mut total = 0u64;
    for r in map {
        if r.offset < end {
            return Err(format!(
                "region at {} overlaps or is out of order",
                r.offset
            ));
        }
        end = r
            .offset
            .checked_add(r.len)
            .filter(|&e| e <= real_size)
            .ok_or_else(|| format!("region at {} runs past the file size {real_size}", r.offset))?;
        total = total.checked_add(r.len).ok_or("regions overflow")?;
    }
    if total != stored {
        return Err(format!(
            "regions hold {total} bytes but the member stores {stored}"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A ustar header block for tests.
    pub(crate) fn header(name: &str, typeflag: u8, size: u64) -> [u8; 512] {
        let mut h = tar::Header::new_ustar();
        h.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::new(typeflag));
        h.set_cksum();
        *h.as_bytes()
    }

    fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in records {
            let body = 1 + k.len() + 1 + v.len() + 1;
            let mut len = body + 1;
            while format!("{len}").len() + body != len {
                len += 1;
            }
            out.extend_from_slice(format!("{len} {k}=").as_bytes());
            out.extend_from_slice(v);
            out.push(b'\n');
        }
        out
    }

    fn push_member(ar: &mut Vec<u8>, hdr: [u8; 512], data: &[u8]) {
        ar.extend_from_slice(&hdr);
        ar.extend_from_slice(data);
        ar.resize(ar.len() + padding(data.len() as u64) as usize, 0);
    }

    fn end(ar: &mut Vec<u8>) {
        ar.resize(ar.len() + 1024, 0);
    }

    fn entries(ar: &[u8]) -> Result<Vec<(TarEntry, Vec<u8>)>> {
        let mut r = TarReader::new(ar);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            let mut data = Vec::new();
            loop {
                let b = r.fill_data()?;
                if b.is_empty() {
                    break;
                }
                let n = b.len();
                data.extend_from_slice(b);
                r.consume_data(n);
            }
            out.push((e, data));
        }
        Ok(out)
    }

    #[test]
    fn pax_records_override_the_header() {
        let mut ar = Vec::new();
        let p = pax(&[
            ("path", b"a/very/long/name"),
            ("mtime", b"1700000000.123456789"),
            ("uid", b"70000"),
            ("SCHILY.xattr.user.x%3Dy", b"v\0bin"),
            ("SCHILY.acl.access", b"user::rw-,group::r--,other::r--"),
        ]);
        push_member(&mut ar, header("PaxHeaders/x", b'x', p.len() as u64), &p);
        push_member(&mut ar, header("short", b'0', 3), b"abc");
        end(&mut ar);
        let got = entries(&ar).unwrap();
        let (e, data) = &got[0];
        assert_eq!(e.path, b"a/very/long/name");
        assert_eq!(
            e.mtime,
            Timestamp {
                sec: 1_700_000_000,
                nsec: 123_456_789
            }
        );
        assert_eq!(e.uid, 70000);
        assert_eq!(e.xattrs, vec![(b"user.x=y".to_vec(), b"v\0bin".to_vec())]);
        assert_eq!(
            e.acls.as_ref().unwrap().access.as_deref(),
            Some("user::rw-,group::r--,other::r--")
        );
        assert_eq!(data, b"abc");
        assert_eq!(e.offset, 0);
    }

    #[test]
    fn global_headers_apply_until_removed() {
        let mut ar = Vec::new();
        let g = pax(&[("SCHILY.xattr.user.g", b"1")]);
        push_member(&mut ar, header("g", b'g', g.len() as u64), &g);
        push_member(&mut ar, header("one", b'0', 0), b"");
        let g2 = pax(&[("SCHILY.xattr.user.g", b"")]);
        push_member(&mut ar, header("g", b'g', g2.len() as u64), &g2);
        push_member(&mut ar, header("two", b'0', 0), b"");
        end(&mut ar);
        let got = entries(&ar).unwrap();
        assert_eq!(got[0].0.xattrs.len(), 1);
        assert!(got[1].0.xattrs.is_empty());
    }

    #[test]
    fn gnu_long_names_and_links() {
        let long = "d/".repeat(120) + "file";
        let mut ar = Vec::new();
        let mut name = long.clone().into_bytes();
        name.push(0);
        push_member(
            &mut ar,
            header("././@LongLink", b'L', name.len() as u64),
            &name,
        );
        push_member(&mut ar, header("././@LongLink", b'K', 7), b"target\0");
        push_member(&mut ar, header("trunc", b'2', 0), b"");
        end(&mut ar);
        let got = entries(&ar).unwrap();
        assert_eq!(got[0].0.path, long.as_bytes());
        assert_eq!(got[0].0.kind, Kind::Symlink(b"target".to_vec()));
    }

    #[test]
    fn ustar_prefix_is_joined_but_not_for_gnu_headers() {
        let long = format!("{}/{}", "p".repeat(120), "name");
        let mut h = tar::Header::new_ustar();
        h.set_path(&long).unwrap(); // splits into prefix + name
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        h.set_cksum();
        assert_ne!(&h.as_bytes()[345..346], b"\0", "prefix used");
        let mut ar = h.as_bytes().to_vec();
        // An old-GNU header whose prefix area holds (here: junk) times.
        let mut g = header("gnu-name", b'0', 0);
        g[257..265].copy_from_slice(b"ustar  \0");
        g[345..350].copy_from_slice(b"JUNK\0");
        let gh = tar::Header::from_byte_slice(&g).clone();
        let mut gh = gh;
        gh.set_cksum();
        ar.extend_from_slice(gh.as_bytes());
        end(&mut ar);
        let got = entries(&ar).unwrap();
        assert_eq!(got[0].0.path, long.as_bytes());
        assert_eq!(got[1].0.path, b"gnu-name");
    }

    #[test]
    fn huge_pax_header_is_refused_without_allocating_it() {
        let mut ar = Vec::new();
        ar.extend_from_slice(&header("PaxHeaders/x", b'x', 1 << 30));
        ar.extend_from_slice(&[b'9'; 512]);
        let err = entries(&ar).unwrap_err().to_string();
        assert!(err.contains("claims 1073741824 bytes"), "{err}");
        assert!(err.contains("at byte 0"), "{err}");
    }

    #[test]
    fn bad_checksum_names_the_offset() {
        let mut ar = Vec::new();
        push_member(&mut ar, header("ok", b'0', 1), b"x");
        let mut h = header("bad", b'0', 0);
        h[0] ^= 1;
        ar.extend_from_slice(&h);
        let err = format!("{:#}", entries(&ar).unwrap_err());
        assert!(err.contains("at byte 1024"), "{err}");
        assert!(err.contains("checksum"), "{err}");
    }

    #[test]
    fn truncation_is_an_error_not_an_end() {
        let mut ar = Vec::new();
        push_member(&mut ar, header("f", b'0', 1000), &[7u8; 1000]);
        end(&mut ar);
        for cut in [0usize, 100, 512, 900, 1536] {
            let r = entries(&ar[..cut]);
            if cut == 0 {
                assert!(r
                    .unwrap_err()
                    .to_string()
                    .contains("without an end-of-archive marker"));
            } else {
                assert!(r.is_err(), "cut at {cut} accepted");
            }
        }
        assert_eq!(entries(&ar).unwrap().len(), 1);
    }

    #[test]
    fn pax_sparse_1_0_map_is_read_from_the_data() {
        // 10 GiB file with two 4-byte regions: only the map is held.
        let real = 10u64 << 30;
        let map = format!("2\n0\n4\n{}\n4\n", real - 4);
        let mut data = map.clone().into_bytes();
        data.resize(512, 0);
        data.extend_from_slice(b"headtail");
        let p = pax(&[
            ("GNU.sparse.major", b"1"),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.name", b"big.img"),
            ("GNU.sparse.realsize", real.to_string().as_bytes()),
        ]);
        let mut ar = Vec::new();
        push_member(&mut ar, header("PaxHeaders/big", b'x', p.len() as u64), &p);
        push_member(
            &mut ar,
            header("GNUSparseFile.1/big.img", b'0', data.len() as u64),
            &data,
        );
        end(&mut ar);
        let got = entries(&ar).unwrap();
        let (e, d) = &got[0];
        assert_eq!(e.path, b"big.img");
        assert_eq!(e.size, real);
        assert_eq!(
            e.sparse.as_ref().unwrap(),
            &[
                Region { offset: 0, len: 4 },
                Region {
                    offset: real - 4,
                    len: 4
                }
            ]
        );
        assert_eq!(d, b"headtail");
    }

    #[test]
    fn sparse_0_0_and_0_1_maps() {
        let recs = parse_pax(&pax(&[
            ("GNU.sparse.offset", b"10"),
            ("GNU.sparse.numbytes", b"2"),
            ("GNU.sparse.offset", b"100"),
            ("GNU.sparse.numbytes", b"0"),
        ]))
        .unwrap();
        assert_eq!(
            sparse_map_00(&recs).unwrap(),
            [
                Region { offset: 10, len: 2 },
                Region {
                    offset: 100,
                    len: 0
                }
            ]
        );
        assert_eq!(
            parse_sparse_map_01(b"1,2,5,6").unwrap(),
            [Region { offset: 1, len: 2 }, Region { offset: 5, len: 6 }]
        );
        assert!(parse_sparse_map_01(b"1,2,5").is_none());
        assert!(check_sparse_map(
            &[Region { offset: 5, len: 6 }, Region { offset: 1, len: 2 }],
            20,
            8
        )
        .is_err());
        assert!(check_sparse_map(&[Region { offset: 5, len: 6 }], 10, 6).is_err());
        assert!(check_sparse_map(&[Region { offset: 5, len: 5 }], 10, 6).is_err());
        assert!(check_sparse_map(&[Region { offset: 5, len: 5 }], 10, 5).is_ok());
    }

    #[test]
    fn old_gnu_sparse_header_with_extension_block() {
        let mut h = tar::Header::new_gnu();
        h.set_path("sp").unwrap();
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_size(6 * 2);
        let b = h.as_mut_bytes();
        let put = |b: &mut [u8; 512], at: usize, v: u64| {
            let s = format!("{v:011o}\0");
            b[at..at + 12].copy_from_slice(s.as_bytes());
        };
        for i in 0..4 {
            put(b, GNU_SPARSE_OFFSET + i * 24, (i as u64) * 100);
            put(b, GNU_SPARSE_OFFSET + i * 24 + 12, 2);
        }
        b[GNU_ISEXTENDED] = 1;
        put(b, GNU_REALSIZE, 1000);
        h.set_cksum();
        let mut ext = [0u8; 512];
        put(&mut ext, 0, 500);
        put(&mut ext, 12, 2);
        put(&mut ext, 24, 998);
        put(&mut ext, 36, 2);
        let mut ar = h.as_bytes().to_vec();
        ar.extend_from_slice(&ext);
        ar.extend_from_slice(b"aabbccddeeff");
        ar.resize(ar.len() + padding(12) as usize, 0);
        end(&mut ar);
        let got = entries(&ar).unwrap();
        let e = &got[0].0;
        assert_eq!(e.size, 1000);
        assert_eq!(e.sparse.as_ref().unwrap().len(), 6);
        assert_eq!(got[0].1, b"aabbccddeeff");
    }

    #[test]
    fn pax_time_forms() {
        assert_eq!(parse_pax_time(b"12"), Some(Timestamp { sec: 12, nsec: 0 }));
        assert_eq!(
            parse_pax_time(b"12.5"),
            Some(Timestamp {
                sec: 12,
                nsec: 500_000_000
            })
        );
        assert_eq!(
            parse_pax_time(b"-1.25"),
            Some(Timestamp {
                sec: -2,
                nsec: 750_000_000
            })
        );
        assert_eq!(
            parse_pax_time(b"1.1234567891"),
            Some(Timestamp {
                sec: 1,
                nsec: 123_456_789
            })
        );
        assert_eq!(parse_pax_time(b"x"), None);
        assert_eq!(parse_pax_time(b"1.x"), None);
    }

    #[test]
    fn numeric_fields() {
        assert_eq!(parse_numeric(b"0000644\0"), Some(0o644));
        assert_eq!(parse_numeric(b"   12 \0"), Some(0o12));
        assert_eq!(parse_numeric(&[0x80, 0, 0, 1, 0]), Some(256));
        assert_eq!(parse_numeric(b"9"), None);
        assert_eq!(parse_numeric(&[0xff; 12]), None);
    }

    /// A valid archive using every header kind, for mutation.
    fn rich_archive() -> Vec<u8> {
        let mut ar = Vec::new();
        let g = pax(&[("SCHILY.xattr.user.g", b"1")]);
        push_member(&mut ar, header("g", b'g', g.len() as u64), &g);
        let mut name = "n/".repeat(80).into_bytes();
        name.push(0);
        push_member(
            &mut ar,
            header("././@LongLink", b'L', name.len() as u64),
            &name,
        );
        push_member(&mut ar, header("././@LongLink", b'K', 3), b"t\0\0");
        push_member(&mut ar, header("x", b'2', 0), b"");
        let p = pax(&[
            ("GNU.sparse.major", b"1"),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.name", b"sp"),
            ("GNU.sparse.realsize", b"100000"),
            ("mtime", b"1.5"),
            ("SCHILY.acl.access", b"u::rw-,g::r--,o::r--"),
        ]);
        push_member(&mut ar, header("P/x", b'x', p.len() as u64), &p);
        let mut data = b"2\n0\n3\n99997\n3\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(b"abcxyz");
        push_member(&mut ar, header("S/sp", b'0', data.len() as u64), &data);
        push_member(&mut ar, header("d/", b'5', 0), b"");
        end(&mut ar);
        ar
    }

    #[test]
    fn the_rich_archive_parses() {
        let got = entries(&rich_archive()).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].0.path, b"sp");
        assert_eq!(got[1].1, b"abcxyz");
    }

    proptest::proptest! {
        #[test]
        fn mutated_archives_give_entries_or_an_error(
            flips in proptest::collection::vec((0usize..8192, proptest::prelude::any::<u8>()), 1..8),
            cut in 0usize..8192,
        ) {
            let mut ar = rich_archive();
            for (at, byte) in flips {
                let i = at % ar.len();
                ar[i] = byte;
            }
            ar.truncate(cut.max(1).min(ar.len()));
            let _ = entries(&ar);
        }

        #[test]
        fn any_bytes_give_entries_or_an_error(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000)) {
            let _ = entries(&data);
        }

        #[test]
        fn any_pax_gives_records_or_an_error(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_pax(&data);
        }
    }
}
