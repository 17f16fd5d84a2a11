//! rootfs (to be written).
