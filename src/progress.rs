//! Progress rendering (to be written).
