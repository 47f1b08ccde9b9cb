//! latflow-physics (filled by later work).
