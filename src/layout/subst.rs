//! subst (to be written).
