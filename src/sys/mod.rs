//! The thin layer that touches the system: external commands, block-device
//! ioctls, mounts, sysfs. It makes no decisions; the pure modules decide and
//! this layer carries out.
//!
//! Nothing outside `sys` calls `Command::new`, opens `/dev/...`, mounts or
//! issues an ioctl.

pub mod blockdev;
pub mod board;
pub mod cmd;
pub mod efivarfs;
pub mod emmc;
pub mod esrt;
pub mod holders;
pub mod luks;
pub mod mkfs;
pub mod mount;
pub mod rawdev;
pub mod tftp;
pub mod vfat;
