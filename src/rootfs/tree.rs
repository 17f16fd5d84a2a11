//! tree (to be written)
