//! csv (to be written).
