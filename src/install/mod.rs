//! install (to be written).
