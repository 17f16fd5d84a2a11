//! bup (to be written).
