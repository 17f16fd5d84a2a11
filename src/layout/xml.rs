//! xml (to be written).
