//! Reading what identifies the running board: the CVM EEPROM through sysfs,
//! the chip id or device-tree compatible, the fuse production mode, the
//! kernel command line and the board configuration file. Decisions are made
//! by [`crate::bup::board`]; this only reads.
//!
//! Every path is taken under a root (normally `/`), so tests can fake the
//! board with a directory tree.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The chip id the `tegra_fuse` driver exports (decimal).
const CHIP_ID: &str = "sys/module/tegra_fuse/parameters/tegra_chip_id";
/// 1 when the chip is fused for production.
const PROD_MODE: &str = "sys/module/tegra_fuse/parameters/tegra_prod_mode";
/// The device tree's root compatible strings.
const COMPATIBLE: &str = "proc/device-tree/compatible";
/// The kernel command line.
const CMDLINE: &str = "proc/cmdline";
/// Our board configuration (docs/board-identity.md).
pub const BOARD_CONF: &str = "etc/sysinstall/board.conf";
/// tegra-boot-tools' configuration directory, read as a fallback.
const LEGACY_DIR: &str = "usr/share/tegra-boot-tools";

/// The root under which system files are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysRoot(PathBuf);

impl Default for SysRoot {
    fn default() -> Self {
        SysRoot(PathBuf::from("/"))
    }
}

fn read_limited(path: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    match std::fs::File::open(path) {
        Ok(f) => {
            let mut buf = Vec::new();
            f.take(max).read_to_end(&mut buf)?;
            Ok(Some(buf))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl SysRoot {
    /// System files under `root` instead of `/`.
    pub fn new(root: impl Into<PathBuf>) -> SysRoot {
        SysRoot(root.into())
    }

    /// `path` (relative to `/`) under this root.
    pub fn path(&self, path: &str) -> PathBuf {
        self.0.join(path.trim_start_matches('/'))
    }

    fn read(&self, path: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
        read_limited(&self.path(path), max)
    }

    fn read_text(&self, path: &str, max: u64) -> io::Result<Option<String>> {
        Ok(self
            .read(path, max)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// `tegra_chip_id`, if the driver exports it.
    pub fn chip_id(&self) -> io::Result<Option<String>> {
        self.read_text(CHIP_ID, 64)
    }

    /// `/proc/device-tree/compatible`, if there is a device tree.
    pub fn compatible(&self) -> io::Result<Option<Vec<u8>>> {
        self.read(COMPATIBLE, 4096)
    }

    /// `tegra_prod_mode` (informational: see `bup::board::FUSELEVEL`).
    pub fn prod_mode(&self) -> io::Result<Option<String>> {
        Ok(self.read_text(PROD_MODE, 64)?.map(|s| s.trim().to_owned()))
    }

    /// The sysfs path of the CVM EEPROM at an I²C bus and address.
    pub fn eeprom_path(&self, bus: u32, addr: u16) -> PathBuf {
        self.path(&format!("sys/bus/i2c/devices/{bus}-{addr:04x}/eeprom"))
    }

    /// The first 256 bytes of the CVM EEPROM through its sysfs file. (REF
    /// falls back to SMBus reads of `/dev/i2c-N` when no driver is bound; we
    /// ask for `--tnspec` instead: docs/spec/bup-format.md §2.2.)
    pub fn cvm_eeprom(&self, bus: u32, addr: u16) -> io::Result<Vec<u8>> {
        let path = self.eeprom_path(bus, addr);
        read_limited(&path, 256)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} does not exist", path.display()),
            )
        })
    }

    /// The kernel command line (its first 4 KiB).
    pub fn cmdline(&self) -> io::Result<String> {
        Ok(self.read_text(CMDLINE, 4096)?.unwrap_or_default())
    }

    /// The board configuration: `/etc/sysinstall/board.conf` under the root,
    /// else `board.conf` beside the running binary. Returns its path and text.
    pub fn board_config(&self) -> io::Result<Option<(PathBuf, String)>> {
        let mut candidates = vec![self.path(BOARD_CONF)];
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_owned))
        {
            candidates.push(dir.join("board.conf"));
        }
        for path in candidates {
            if let Some(bytes) = read_limited(&path, 64 * 1024)? {
                return Ok(Some((path, String::from_utf8_lossy(&bytes).into_owned())));
            }
        }
        Ok(None)
    }

    /// A tegra-boot-tools configuration file (`machine-name.conf`,
    /// `rootfsdev.conf`), for images that have them instead of board.conf.
    pub fn legacy_config(&self, name: &str) -> io::Result<Option<(PathBuf, String)>> {
        let path = self.path(&format!("{LEGACY_DIR}/{name}"));
        Ok(read_limited(&path, 4096)?.map(|b| (path, String::from_utf8_lossy(&b).into_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::new(dir.path());
        assert_eq!(root.chip_id().unwrap(), None);
        assert_eq!(root.cmdline().unwrap(), "");
        assert!(root
            .cvm_eeprom(7, 0x50)
            .unwrap_err()
            .to_string()
            .contains("7-0050/eeprom"));

        let put = |rel: &str, bytes: &[u8]| {
            let p = root.path(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        };
        put(CHIP_ID, b"24\n");
        put("sys/bus/i2c/devices/7-0050/eeprom", &[0xAB; 512]);
        put(CMDLINE, b"console=ttyS0 boot.slot_suffix=_b\n");
        put(BOARD_CONF, b"machine=jetson-tx2-devkit\n");
        put("usr/share/tegra-boot-tools/rootfsdev.conf", b"mmcblk0p1\n");
        assert_eq!(root.chip_id().unwrap().as_deref(), Some("24\n"));
        assert_eq!(root.cvm_eeprom(7, 0x50).unwrap().len(), 256);
        assert!(root.cmdline().unwrap().contains("_b"));
        let (path, text) = root.board_config().unwrap().unwrap();
        assert!(path.starts_with(dir.path()));
        assert_eq!(text, "machine=jetson-tx2-devkit\n");
        assert_eq!(
            root.legacy_config("rootfsdev.conf").unwrap().unwrap().1,
            "mmcblk0p1\n"
        );
    }
}
