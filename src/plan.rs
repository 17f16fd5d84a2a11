//! Partition planning (to be written).
