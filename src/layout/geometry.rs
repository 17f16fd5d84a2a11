//! geometry (to be written).
