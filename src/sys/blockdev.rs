//! Block devices and image files as partitioning targets: opening (exclusively
//! for writing), size and sector size, flushing, and making the kernel see a
//! new partition table (BLKRRPART, else BLKPG like `partx`), then waiting for
//! the partition nodes.
//!
//! Everything here carries out; what to delete or add is decided by the
//! caller (`crate::disk`).

use anyhow::{bail, Context as _};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The logical sector size of an image file, and of every Jetson eMMC; the
/// unit of the kernel's sysfs `start` and `size` whatever the device's.
pub const SECTOR_SIZE: u64 = 512;
/// Logical sector sizes a target may have (512, and 4096 for 4Kn NVMe).
pub const SECTOR_SIZES: [u64; 2] = crate::gpt::write::SECTOR_SIZES;

/// How often a busy disk lock is retried, and the pause between.
const LOCK_RETRIES: u32 = 30;
const LOCK_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The disk is locked by another program (another sysinstall, or a
/// partitioning tool) for the whole of its run.
#[derive(Debug, thiserror::Error)]
#[error("{} is locked by another program (another sysinstall installing onto it, or a partitioning tool); wait for it to finish", .0.display())]
pub struct DeviceLocked(pub PathBuf);

/// The disk refuses writes.
#[derive(Debug, thiserror::Error)]
#[error("{} is read-only (the kernel refuses writes to it; an eMMC at the end of its life turns read-only)", .0.display())]
pub struct ReadOnly(pub PathBuf);

/// How often an exclusive open is retried on EBUSY, and the pause between.
const EXCL_RETRIES: u32 = 10;
const EXCL_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The raw ioctls, numbers from <linux/fs.h> and <linux/blkpg.h>. nix
/// generates them as `pub unsafe fn`; this private module keeps them here.
mod ioctl {
    nix::ioctl_none!(blkrrpart, 0x12, 95);
    nix::ioctl_none!(blkflsbuf, 0x12, 97);
    nix::ioctl_read_bad!(blksszget, nix::request_code_none!(0x12, 104), libc::c_int);
    nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
    nix::ioctl_write_ptr_bad!(blkpg, nix::request_code_none!(0x12, 105), BlkpgIoctlArg);

    /// `BLKPG_ADD_PARTITION`.
    pub const BLKPG_ADD_PARTITION: libc::c_int = 1;
    /// `BLKPG_DEL_PARTITION`.
    pub const BLKPG_DEL_PARTITION: libc::c_int = 2;
    /// Length of the name fields of `struct blkpg_partition` (unused by the kernel).
    pub const BLKPG_DEVNAMELTH: usize = 64;

    /// `struct blkpg_ioctl_arg`; nix does not wrap BLKPG.
    #[repr(C)]
    pub struct BlkpgIoctlArg {
        pub op: libc::c_int,
        pub flags: libc::c_int,
        pub datalen: libc::c_int,
        pub data: *mut libc::c_void,
    }

    /// `struct blkpg_partition`: start and length in bytes.
    #[repr(C)]
    pub struct BlkpgPartition {
        pub start: libc::c_longlong,
        pub length: libc::c_longlong,
        pub pno: libc::c_int,
        pub devname: [libc::c_char; BLKPG_DEVNAMELTH],
        pub volname: [libc::c_char; BLKPG_DEVNAMELTH],
    }
}

use ioctl::{
    blkflsbuf, blkgetsize64, blkpg, blkrrpart, blksszget, BlkpgIoctlArg, BlkpgPartition,
    BLKPG_ADD_PARTITION, BLKPG_DEL_PARTITION, BLKPG_DEVNAMELTH,
};

/// The device node of partition `number` of `disk`, following the kernel's
/// naming: a `p` separator when the disk name ends in a digit
/// (`mmcblk0p1`, `nvme0n1p1`, `loop0p1`), none otherwise (`sda1`).
pub fn partition_path(disk: &Path, number: u32) -> PathBuf {
    let s = disk.as_os_str().to_string_lossy();
    let sep = if s.ends_with(|c: char| c.is_ascii_digit()) {
        "p"
    } else {
        ""
    };
    PathBuf::from(format!("{s}{sep}{number}"))
}

/// A device number, `major:minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DevNum {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl DevNum {
    /// From a `dev_t`.
    pub fn from_dev_t(dev: u64) -> DevNum {
        DevNum {
            major: libc::major(dev),
            minor: libc::minor(dev),
        }
    }

    /// Parses sysfs's `dev` text, `"259:3"`.
    pub fn parse(text: &str) -> Option<DevNum> {
        let (a, b) = text.trim().split_once(':')?;
        Some(DevNum {
            major: a.parse().ok()?,
            minor: b.parse().ok()?,
        })
    }

    fn dev_t(self) -> libc::dev_t {
        libc::makedev(self.major, self.minor)
    }
}

impl std::fmt::Display for DevNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// What a target is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// A whole-disk block device.
    BlockDevice {
        /// Its number.
        dev: DevNum,
        /// Its kernel name (`mmcblk0`, `loop3`), from sysfs.
        name: String,
    },
    /// A regular file holding a disk image.
    ImageFile,
}

/// How a target is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only (plan, dry run).
    ReadOnly,
    /// Read and write; a block device is opened with `O_EXCL`, which the
    /// kernel refuses while a partition is mounted or the disk is claimed by
    /// device-mapper, md or another exclusive opener, and which keeps anyone
    /// else from claiming it while we write.
    Exclusive,
    /// Read and write without claiming the device: for a few sectors that
    /// nothing else uses (the journal in LBA 0) while partitions are in use.
    Write,
}

/// An open partitioning target: a whole-disk block device or an image file.
#[derive(Debug)]
pub struct Target {
    path: PathBuf,
    file: File,
    kind: TargetKind,
    bytes: u64,
    /// BLKSSZGET of a block device; `None` for an image file.
    logical_sector_size: Option<u64>,
}

impl Target {
    /// Opens `path` and finds its size. Refuses partitions, other file
    /// types, logical sector sizes other than 512 and 4096, and devices or
    /// image files whose length is not a whole number of 512-byte sectors
    /// (of their logical sectors for a block device).
    pub fn open(path: &Path, access: Access) -> anyhow::Result<Target> {
        let shown = path.display();
        let meta = std::fs::metadata(path).with_context(|| format!("opening {shown}"))?;
        let ft = meta.file_type();
        let block = ft.is_block_device();
        if !block && !ft.is_file() {
            bail!("{shown} is neither a block device nor a regular image file");
        }
        let mut opts = OpenOptions::new();
        opts.read(true).custom_flags(libc::O_CLOEXEC);
        if access != Access::ReadOnly {
            opts.write(true);
        }
        if access == Access::Exclusive && block {
            opts.custom_flags(libc::O_CLOEXEC | libc::O_EXCL);
        }
        // A short EBUSY retry: the kernel also claims a disk briefly on its
        // own (a partition rescan started by another tool, a loop device
        // being torn down). A real holder (a mount, device-mapper, another
        // exclusive opener) still refuses, one second later.
        let mut tries = 0;
        let opened = loop {
            match opts.open(path) {
                Err(e)
                    if block
                        && access == Access::Exclusive
                        && e.raw_os_error() == Some(libc::EBUSY)
                        && tries < EXCL_RETRIES =>
                {
                    tries += 1;
                    std::thread::sleep(EXCL_RETRY_PAUSE);
                }
                other => break other,
            }
        };
        let file = opened.map_err(|e| {
            let mut err = anyhow::Error::new(e);
            if block && access == Access::Exclusive && err_is(&err, libc::EBUSY) {
                err = err.context(
                    "it is in use (a partition is mounted, or device-mapper, md or \
                     another program holds it)",
                );
            }
            err.context(format!("opening {shown}"))
        })?;
        // Re-check on the descriptor: the path may have changed under us.
        let meta = file
            .metadata()
            .with_context(|| format!("reading {shown}"))?;
        if meta.file_type().is_block_device() != block {
            bail!("{shown} changed type while being opened");
        }
        let (kind, bytes, logical) = if block {
            let dev = DevNum::from_dev_t(meta.rdev());
            let sys = PathBuf::from(format!("/sys/dev/block/{dev}"));
            if sys.join("partition").exists() {
                bail!("{shown} is a partition; give the whole disk");
            }
            let name = kernel_name(&sys).with_context(|| format!("finding the name of {shown}"))?;
            let ssz = sector_size(&file)
                .with_context(|| format!("reading the sector size of {shown}"))?;
            if !SECTOR_SIZES.contains(&ssz) {
                bail!("{shown} has {ssz}-byte logical sectors; only 512 and 4096 are supported");
            }
            let bytes =
                size_bytes(&file).with_context(|| format!("reading the size of {shown}"))?;
            (TargetKind::BlockDevice { dev, name }, bytes, Some(ssz))
        } else {
            (TargetKind::ImageFile, meta.len(), None)
        };
        let unit = logical.unwrap_or(SECTOR_SIZE);
        if bytes % unit != 0 {
            bail!("{shown} is {bytes} bytes, not a whole number of {unit}-byte sectors");
        }
        Ok(Target {
            path: path.to_owned(),
            file,
            kind,
            bytes,
            logical_sector_size: logical,
        })
    }

    /// The path it was opened as.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Block device or image file.
    pub fn kind(&self) -> &TargetKind {
        &self.kind
    }

    /// Size in its logical sectors (512-byte ones for an image file).
    pub fn sectors(&self) -> u64 {
        self.bytes / self.sector_size()
    }

    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The logical block size of a block device (BLKSSZGET), 512 for an
    /// image file.
    pub fn sector_size(&self) -> u64 {
        self.logical_sector_size.unwrap_or(SECTOR_SIZE)
    }

    /// The logical block size of a block device; `None` for an image file,
    /// which can stand in for a disk of any sector size.
    pub fn logical_sector_size(&self) -> Option<u64> {
        self.logical_sector_size
    }

    /// The open file, for reading and writing.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The open file, given up by the target.
    pub fn into_file(self) -> File {
        self.file
    }

    /// The kernel name of a block device (`mmcblk0`).
    pub fn kernel_name(&self) -> Option<&str> {
        match &self.kind {
            TargetKind::BlockDevice { name, .. } => Some(name),
            TargetKind::ImageFile => None,
        }
    }

    /// `fsync`, then for a block device drop its page cache (BLKFLSBUF), so
    /// that reads come from the device and the kernel's next look at the
    /// partition table sees what was written.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        let shown = self.path.display();
        sync(&mut self.file).with_context(|| format!("syncing {shown}"))?;
        if matches!(self.kind, TargetKind::BlockDevice { .. }) {
            // SAFETY: BLKFLSBUF takes no argument; the descriptor is open.
            unsafe { blkflsbuf(self.file.as_raw_fd()) }
                .with_context(|| format!("flushing the buffer cache of {shown} (BLKFLSBUF)"))?;
        }
        Ok(())
    }

    /// Asks the kernel to re-read the partition table (BLKRRPART).
    pub fn reread_partition_table(&self) -> nix::Result<()> {
        // SAFETY: BLKRRPART takes no argument; the descriptor is open.
        unsafe { blkrrpart(self.file.as_raw_fd()) }.map(drop)
    }

    /// Registers partition `number` at `first_lba`, `sectors` long, in the
    /// device's logical sectors (BLKPG).
    pub fn add_partition(&self, number: u32, first_lba: u64, sectors: u64) -> nix::Result<()> {
        let bytes = |s: u64| {
            s.checked_mul(self.sector_size())
                .and_then(|b| libc::c_longlong::try_from(b).ok())
                .ok_or(nix::Error::EOVERFLOW)
        };
        self.blkpg(
            BLKPG_ADD_PARTITION,
            number,
            bytes(first_lba)?,
            bytes(sectors)?,
        )
    }

    /// Removes partition `number` from the kernel's view (BLKPG). Fails with
    /// EBUSY while the partition is open.
    pub fn delete_partition(&self, number: u32) -> nix::Result<()> {
        self.blkpg(BLKPG_DEL_PARTITION, number, 0, 0)
    }

    fn blkpg(
        &self,
        op: libc::c_int,
        number: u32,
        start: libc::c_longlong,
        length: libc::c_longlong,
    ) -> nix::Result<()> {
        let mut part = BlkpgPartition {
            start,
            length,
            pno: libc::c_int::try_from(number).map_err(|_| nix::Error::EINVAL)?,
            devname: [0; BLKPG_DEVNAMELTH],
            volname: [0; BLKPG_DEVNAMELTH],
        };
        let arg = BlkpgIoctlArg {
            op,
            flags: 0,
            datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
            data: std::ptr::addr_of_mut!(part).cast(),
        };
        // SAFETY: `arg` and the `part` it points to live until the call
        // returns and have the layout <linux/blkpg.h> defines.
        unsafe { blkpg(self.file.as_raw_fd(), &arg) }.map(drop)
    }

    /// The partitions the kernel currently knows of this block device, from
    /// sysfs, in the device's logical sectors; empty for an image file.
    pub fn kernel_partitions(&self) -> io::Result<Vec<KernelPartition>> {
        match &self.kind {
            TargetKind::BlockDevice { name, .. } => {
                let mut parts = kernel_partitions(Path::new("/sys"), name)?;
                in_logical_sectors(&mut parts, self.sector_size());
                Ok(parts)
            }
            TargetKind::ImageFile => Ok(Vec::new()),
        }
    }
}

/// The install's one handle on its target: opened read-only once, under the
/// path the kernel knows it by (symlinks such as `/dev/disk/by-path/...`
/// resolved), for every read of the run. Whatever must write or claim the
/// device re-opens it with [`Disk::reopen`], which checks that the path still
/// leads to the same device (or, for an image file, the same file).
#[derive(Debug)]
pub struct Disk {
    target: Target,
    /// Device number, or (device, inode) of an image file.
    identity: (u64, u64),
}

impl Disk {
    /// Opens `path` (refusals as [`Target::open`]).
    pub fn open(path: &Path) -> anyhow::Result<Disk> {
        let canonical =
            std::fs::canonicalize(path).with_context(|| format!("opening {}", path.display()))?;
        let target = Target::open(&canonical, Access::ReadOnly)?;
        let identity = identity_of(&target.file)
            .with_context(|| format!("reading {}", canonical.display()))?;
        Ok(Disk { target, identity })
    }

    /// The path the kernel knows it by.
    pub fn path(&self) -> &Path {
        self.target.path()
    }

    /// Size in sectors.
    pub fn sectors(&self) -> u64 {
        self.target.sectors()
    }

    /// Size and logical block size, for placing a layout on it.
    pub fn size(&self) -> crate::layout::DeviceSize {
        crate::layout::DeviceSize {
            path: self.path().display().to_string(),
            bytes: self.target.bytes(),
            logical_sector_size: self.target.logical_sector_size(),
        }
    }

    /// The read-only target, for reading the disk.
    pub fn target(&mut self) -> &mut Target {
        &mut self.target
    }

    /// The node of partition `number`, named as the kernel names it.
    pub fn partition_path(&self, number: u32) -> PathBuf {
        partition_path(self.path(), number)
    }

    /// Opens the same device again with `access`; fails when the path now
    /// leads to another device or file.
    pub fn reopen(&self, access: Access) -> anyhow::Result<Target> {
        let t = Target::open(self.path(), access)?;
        let now =
            identity_of(&t.file).with_context(|| format!("reading {}", self.path().display()))?;
        if now != self.identity {
            bail!(
                "{} is no longer the device this run opened",
                self.path().display()
            );
        }
        Ok(t)
    }

    /// The kernel's name of the disk (`mmcblk0`), or `None` for an image file.
    pub fn kernel_name(&self) -> Option<&str> {
        self.target.kernel_name()
    }

    /// Takes the disk for this process until the handle is dropped: an
    /// exclusive `flock`, the lock partitioning tools and udev agree on
    /// (udev leaves a locked disk alone; a second sysinstall is refused).
    /// udev itself holds a shared lock for a moment while it probes, so a
    /// busy lock is retried for a few seconds before it is reported.
    pub fn lock(&self) -> anyhow::Result<()> {
        let fd = self.target.file.as_raw_fd();
        for attempt in 0..=LOCK_RETRIES {
            // SAFETY: flock on a descriptor this handle owns; no memory involved.
            let rc = unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(e).with_context(|| format!("locking {}", self.path().display()));
            }
            if attempt < LOCK_RETRIES {
                std::thread::sleep(LOCK_RETRY_PAUSE);
            }
        }
        Err(DeviceLocked(self.path().to_owned()).into())
    }

    /// Fails when the device cannot be written (a read-only eMMC, a loop
    /// device attached read-only), before anything is attempted.
    pub fn check_writable(&self) -> anyhow::Result<()> {
        let ro = |p: &Path| std::fs::read_to_string(p).is_ok_and(|s| s.trim() == "1");
        let flagged = self
            .kernel_name()
            .is_some_and(|n| ro(&Path::new("/sys/class/block").join(n).join("ro")));
        let opened = self.reopen(Access::Write);
        let denied = opened.as_ref().err().is_some_and(|e| {
            e.chain()
                .filter_map(|c| c.downcast_ref::<io::Error>())
                .any(|e| {
                    matches!(
                        e.raw_os_error(),
                        Some(libc::EROFS | libc::EACCES | libc::EPERM)
                    )
                })
        });
        if flagged || denied {
            return Err(ReadOnly(self.path().to_owned()).into());
        }
        opened.map(drop)
    }

    /// The first `len` bytes (fewer on a smaller disk), read through the handle.
    pub fn read_head(&mut self, len: usize) -> anyhow::Result<Vec<u8>> {
        use std::io::{Read as _, Seek as _, SeekFrom};
        let shown = self.path().display().to_string();
        let f = self.target.file();
        f.seek(SeekFrom::Start(0))
            .with_context(|| format!("reading {shown}"))?;
        let mut buf = Vec::with_capacity(len);
        f.take(len as u64)
            .read_to_end(&mut buf)
            .with_context(|| format!("reading {shown}"))?;
        Ok(buf)
    }

    /// Reads LBA 0, lets `edit` change it, writes it back through a
    /// re-opened descriptor and makes it durable: the install journal's home.
    pub fn update_sector0(&self, edit: impl FnOnce(&mut [u8])) -> anyhow::Result<()> {
        use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
        let shown = self.path().display().to_string();
        let mut t = self.reopen(Access::Write)?;
        let f = t.file();
        let mut sector = [0u8; 512];
        f.read_exact(&mut sector)
            .with_context(|| format!("reading sector 0 of {shown}"))?;
        edit(&mut sector);
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.write_all(&sector))
            .with_context(|| format!("writing sector 0 of {shown}"))?;
        sync(f).with_context(|| format!("flushing {shown}"))?;
        Ok(())
    }
}

fn identity_of(file: &File) -> io::Result<(u64, u64)> {
    let m = file.metadata()?;
    Ok(if m.file_type().is_block_device() {
        (m.rdev(), 0)
    } else {
        (m.dev(), m.ino())
    })
}

/// What a path stores its bytes on, to tell whether two paths share any:
/// a block device (and, for a partition, its whole disk), or an image file
/// (and the loop devices it backs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageId {
    /// A block device's number.
    pub dev: Option<DevNum>,
    /// The whole disk a partition belongs to.
    pub whole: Option<DevNum>,
    /// An image file's `(st_dev, st_ino)`.
    pub file: Option<(u64, u64)>,
    /// Loop devices backed by the image file.
    pub loops: Vec<DevNum>,
}

impl StorageId {
    /// Reads it for `path` (sysfs under `/`).
    pub fn of(path: &Path) -> io::Result<StorageId> {
        let m = std::fs::metadata(path)?;
        if m.file_type().is_block_device() {
            let dev = DevNum::from_dev_t(m.rdev());
            let sys = PathBuf::from(format!("/sys/dev/block/{dev}"));
            let whole = sys
                .join("partition")
                .exists()
                .then(|| std::fs::read_to_string(sys.join("../dev")).ok())
                .flatten()
                .and_then(|s| DevNum::parse(&s));
            return Ok(StorageId {
                dev: Some(dev),
                whole,
                file: None,
                loops: Vec::new(),
            });
        }
        let loops = super::holders::loops_backed_by(Path::new("/"), path)
            .unwrap_or_default()
            .iter()
            .filter_map(|name| std::fs::read_to_string(format!("/sys/block/{name}/dev")).ok())
            .filter_map(|s| DevNum::parse(&s))
            .collect();
        Ok(StorageId {
            dev: None,
            whole: None,
            file: Some((m.dev(), m.ino())),
            loops,
        })
    }

    /// The devices whose bytes this one is (itself, its disk, the loop
    /// devices over it).
    fn devices(&self) -> Vec<DevNum> {
        self.dev
            .iter()
            .chain(&self.whole)
            .chain(&self.loops)
            .copied()
            .collect()
    }

    /// True when writing one could change the other: the same device or
    /// file, a partition and its disk, an image and a loop device over it.
    /// Two partitions of one disk do not overlap.
    pub fn overlaps(&self, other: &StorageId) -> bool {
        if self.file.is_some() && self.file == other.file {
            return true;
        }
        if self.dev.is_some() && self.dev == other.dev {
            return true;
        }
        let (mine, theirs) = (self.devices(), other.devices());
        let whole_of = |id: &StorageId, d: &DevNum| id.whole.is_none() && id.dev == Some(*d);
        mine.iter()
            .any(|d| whole_of(other, d) || other.loops.contains(d))
            || theirs
                .iter()
                .any(|d| whole_of(self, d) || self.loops.contains(d))
    }
}

/// Converts sysfs's 512-byte `start` and `size` into logical sectors of
/// `sector_size` bytes.
fn in_logical_sectors(parts: &mut [KernelPartition], sector_size: u64) {
    let per = (sector_size / SECTOR_SIZE).max(1);
    for p in parts {
        p.start /= per;
        p.sectors /= per;
    }
}

/// Size of a block device or image file in its logical sectors (512-byte
/// ones for an image file): the disk size a layout is placed for
/// (refusals as [`Target::open`]).
pub fn size_in_sectors(path: &Path) -> anyhow::Result<u64> {
    Ok(Target::open(path, Access::ReadOnly)?.sectors())
}

/// Size and logical block size of a block device or image file, for
/// placing a layout on it (refusals as [`Target::open`]).
pub fn device_size(path: &Path) -> anyhow::Result<crate::layout::DeviceSize> {
    let t = Target::open(path, Access::ReadOnly)?;
    Ok(crate::layout::DeviceSize {
        path: path.display().to_string(),
        bytes: t.bytes(),
        logical_sector_size: t.logical_sector_size(),
    })
}

fn err_is(err: &anyhow::Error, errno: i32) -> bool {
    err.downcast_ref::<io::Error>()
        .and_then(io::Error::raw_os_error)
        == Some(errno)
}

/// `fsync`, which also flushes the device's volatile write cache: the
/// barrier between the GPT write stages.
pub fn sync(file: &mut File) -> io::Result<()> {
    file.sync_all()
}

fn sector_size(file: &File) -> io::Result<u64> {
    let mut ssz: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int to the pointer, which is valid.
    unsafe { blksszget(file.as_raw_fd(), &mut ssz) }.map_err(io::Error::from)?;
    u64::try_from(ssz).map_err(|_| io::Error::other(format!("sector size {ssz}")))
}

fn size_bytes(file: &File) -> io::Result<u64> {
    let mut bytes: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 to the pointer, which is valid.
    unsafe { blkgetsize64(file.as_raw_fd(), &mut bytes) }.map_err(io::Error::from)?;
    Ok(bytes)
}

/// `DEVNAME` from a sysfs device directory's `uevent`.
fn kernel_name(sys_dev: &Path) -> io::Result<String> {
    let uevent = std::fs::read_to_string(sys_dev.join("uevent"))?;
    uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(str::to_owned)
        .ok_or_else(|| io::Error::other(format!("no DEVNAME in {}/uevent", sys_dev.display())))
}

/// One partition as the kernel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPartition {
    /// Partition number.
    pub number: u32,
    /// First sector (sysfs counts 512-byte sectors; [`Target`] converts to
    /// the device's logical sectors).
    pub start: u64,
    /// Length in sectors (as `start`).
    pub sectors: u64,
    /// Kernel name (`loop0p1`).
    pub name: String,
    /// Device number.
    pub dev: DevNum,
}

/// Lists the partitions of disk `name` under a sysfs root (`/sys`), in
/// number order: the subdirectories of `block/<name>` that have a
/// `partition` file.
pub fn kernel_partitions(sys: &Path, name: &str) -> io::Result<Vec<KernelPartition>> {
    let dir = sys.join("block").join(name);
    let read = |p: &Path, f: &str| -> io::Result<String> {
        std::fs::read_to_string(p.join(f)).map(|s| s.trim().to_owned())
    };
    let num = |p: &Path, f: &str| -> io::Result<u64> {
        read(p, f)?
            .parse()
            .map_err(|e| io::Error::other(format!("{}/{f}: {e}", p.display())))
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let p = entry?.path();
        if !p.join("partition").is_file() {
            continue;
        }
        let dev = read(&p, "dev")?;
        out.push(KernelPartition {
            number: u32::try_from(num(&p, "partition")?).map_err(io::Error::other)?,
            start: num(&p, "start")?,
            sectors: num(&p, "size")?,
            name: p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            dev: DevNum::parse(&dev)
                .ok_or_else(|| io::Error::other(format!("{}/dev: '{dev}'", p.display())))?,
        });
    }
    out.sort_by_key(|p| p.number);
    Ok(out)
}

/// How a partition node came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeOrigin {
    /// devtmpfs or udev created it.
    Appeared,
    /// Nothing created it in time; we made it with mknod.
    Created,
    /// A node with that name pointed at another device; we replaced it.
    Replaced,
}

/// Waits until `dev_dir/<name>` is a block node for `dev`, for every pair,
/// polling until `timeout` in total. Nodes still missing then are made with
/// `mknod` (an initramfs whose /dev is not devtmpfs); nodes pointing at
/// another device are replaced.
pub fn wait_for_nodes(
    dev_dir: &Path,
    nodes: &[(String, DevNum)],
    timeout: Duration,
) -> io::Result<Vec<(PathBuf, NodeOrigin)>> {
    let state = |path: &Path, dev: DevNum| match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_block_device() && DevNum::from_dev_t(m.rdev()) == dev => {
            Some(true)
        }
        Ok(_) => Some(false),
        Err(_) => None,
    };
    let deadline = Instant::now() + timeout;
    loop {
        let ready = nodes
            .iter()
            .all(|(name, dev)| state(&dev_dir.join(name), *dev) == Some(true));
        if ready || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = Vec::with_capacity(nodes.len());
    for (name, dev) in nodes {
        let path = dev_dir.join(name);
        let origin = match state(&path, *dev) {
            Some(true) => NodeOrigin::Appeared,
            Some(false) => {
                std::fs::remove_file(&path)?;
                make_node(&path, *dev)?;
                NodeOrigin::Replaced
            }
            None => {
                make_node(&path, *dev)?;
                NodeOrigin::Created
            }
        };
        out.push((path, origin));
    }
    Ok(out)
}

fn make_node(path: &Path, dev: DevNum) -> io::Result<()> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    // 0660 like udev's default for disks; owner root.
    mknod(
        path,
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o660),
        dev.dev_t(),
    )
    .map_err(|e| io::Error::other(format!("mknod {} ({dev}): {e}", path.display())))
}

/// The first `len` bytes of a device or partition node (fewer if it is
/// shorter), for probing what it holds.
pub fn read_head(path: &Path, len: usize) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    use std::io::Read as _;
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = Vec::with_capacity(len);
    f.take(len as u64)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(buf)
}

/// `MemAvailable` of /proc/meminfo in bytes, if it can be read.
pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// Reads LBA 0 of `path`, lets `edit` change it, writes it back and makes it
/// durable (fsync). One sector: the install journal's home.
pub fn update_sector0(path: &Path, edit: impl FnOnce(&mut [u8])) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut sector = [0u8; 512];
    f.read_exact(&mut sector)
        .with_context(|| format!("reading sector 0 of {}", path.display()))?;
    edit(&mut sector);
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&sector)
        .with_context(|| format!("writing sector 0 of {}", path.display()))?;
    sync(&mut f).with_context(|| format!("flushing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(major: u32, minor: u32, whole: Option<u32>) -> StorageId {
        StorageId {
            dev: Some(DevNum { major, minor }),
            whole: whole.map(|m| DevNum { major, minor: m }),
            file: None,
            loops: Vec::new(),
        }
    }

    #[test]
    fn storage_overlaps() {
        let disk = block(179, 0, None);
        let p1 = block(179, 1, Some(0));
        let p2 = block(179, 2, Some(0));
        let boot0 = block(179, 8, None);
        assert!(disk.overlaps(&disk));
        assert!(disk.overlaps(&p1) && p1.overlaps(&disk));
        assert!(!p1.overlaps(&p2));
        assert!(!boot0.overlaps(&disk));
        let image = StorageId {
            dev: None,
            whole: None,
            file: Some((8, 77)),
            loops: vec![DevNum { major: 7, minor: 3 }],
        };
        let lo = block(7, 3, None);
        let lo_p1 = block(259, 0, Some(3));
        let lo_p1 = StorageId {
            whole: Some(DevNum { major: 7, minor: 3 }),
            ..lo_p1
        };
        assert!(image.overlaps(&lo) && lo.overlaps(&image));
        assert!(image.overlaps(&lo_p1));
        assert!(image.overlaps(&image.clone()));
        let other = StorageId {
            file: Some((8, 78)),
            loops: Vec::new(),
            ..image.clone()
        };
        assert!(!other.overlaps(&image) && !other.overlaps(&lo));
    }

    #[test]
    fn partition_names_follow_the_kernel() {
        for (disk, n, want) in [
            ("/dev/mmcblk0", 1, "/dev/mmcblk0p1"),
            ("/dev/nvme0n1", 1, "/dev/nvme0n1p1"),
            ("/dev/nvme0n1", 12, "/dev/nvme0n1p12"),
            ("/dev/nvme1n2", 3, "/dev/nvme1n2p3"),
            ("/dev/sda", 3, "/dev/sda3"),
            ("/dev/loop7", 2, "/dev/loop7p2"),
            ("/dev/vdb", 1, "/dev/vdb1"),
        ] {
            assert_eq!(partition_path(Path::new(disk), n), PathBuf::from(want));
        }
    }

    #[test]
    fn sysfs_sectors_become_logical_sectors() {
        let dev = DevNum {
            major: 259,
            minor: 1,
        };
        let k = |start, sectors| KernelPartition {
            number: 1,
            start,
            sectors,
            name: "nvme0n1p1".into(),
            dev,
        };
        let mut parts = [k(48, 8 * 1000)];
        in_logical_sectors(&mut parts, 4096);
        assert_eq!((parts[0].start, parts[0].sectors), (6, 1000));
        let mut parts = [k(34, 1000)];
        in_logical_sectors(&mut parts, 512);
        assert_eq!((parts[0].start, parts[0].sectors), (34, 1000));
    }

    #[test]
    fn blkpg_structs_have_the_kernel_layout() {
        // x86_64 and aarch64: 2 × 8 + 4 + 64 + 64 (+ 4 padding) and 3 × 4 (+ 4) + 8.
        assert_eq!(std::mem::size_of::<BlkpgPartition>(), 152);
        assert_eq!(std::mem::size_of::<BlkpgIoctlArg>(), 24);
    }

    #[test]
    fn dev_numbers_parse() {
        assert_eq!(
            DevNum::parse("259:3\n"),
            Some(DevNum {
                major: 259,
                minor: 3
            })
        );
        assert_eq!(DevNum::parse("259"), None);
        assert_eq!(DevNum::parse("a:b"), None);
        let d = DevNum {
            major: 179,
            minor: 1,
        };
        assert_eq!(DevNum::from_dev_t(d.dev_t()), d);
    }

    #[test]
    fn kernel_partitions_are_read_from_sysfs() {
        let root = tempfile::tempdir().unwrap();
        let disk = root.path().join("block/mmcblk0");
        for (dir, n, start, size, dev) in [
            ("mmcblk0p2", 2, 40, 8192, "259:1"),
            ("mmcblk0p1", 1, 1696152, 12582912, "259:0"),
        ] {
            let p = disk.join(dir);
            std::fs::create_dir_all(&p).unwrap();
            for (f, v) in [
                ("partition", n.to_string()),
                ("start", start.to_string()),
                ("size", size.to_string()),
                ("dev", dev.into()),
            ] {
                std::fs::write(p.join(f), format!("{v}\n")).unwrap();
            }
        }
        // Not partitions: queue/, holders/, mmcblk0boot0 has no partition file here.
        std::fs::create_dir_all(disk.join("queue")).unwrap();
        std::fs::create_dir_all(disk.join("holders")).unwrap();
        let got = kernel_partitions(root.path(), "mmcblk0").unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].number, 1);
        assert_eq!(got[0].start, 1696152);
        assert_eq!(got[0].name, "mmcblk0p1");
        assert_eq!(got[1].dev.to_string(), "259:1");
    }

    #[test]
    fn image_files_open_and_odd_sizes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let t = Target::open(&img, Access::Exclusive).unwrap();
        assert_eq!(t.sectors(), 2048);
        assert_eq!(t.kind(), &TargetKind::ImageFile);
        assert!(t.kernel_partitions().unwrap().is_empty());

        std::fs::File::create(&img).unwrap().set_len(1000).unwrap();
        let err = format!("{:#}", Target::open(&img, Access::ReadOnly).unwrap_err());
        assert!(
            err.contains("not a whole number of 512-byte sectors"),
            "{err}"
        );

        let err = format!(
            "{:#}",
            Target::open(dir.path(), Access::ReadOnly).unwrap_err()
        );
        assert!(
            err.contains("neither a block device nor a regular"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            Target::open(&dir.path().join("missing"), Access::ReadOnly).unwrap_err()
        );
        assert!(err.starts_with("opening "), "{err}");
    }
}
