//! The thin layer that touches the system: external commands, block-device
//! ioctls, mounts, sysfs. It makes no decisions; the pure modules decide and
//! this layer carries out.
//!
//! Nothing outside `sys` calls `Command::new`, opens `/dev/...`, mounts or
//! issues an ioctl.

pub mod blockdev;
pub mod cmd;
pub mod mkfs;
