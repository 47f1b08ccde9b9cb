//! latflow-flow (filled by later work).
