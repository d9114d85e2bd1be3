//! The stages an upload goes through after it lands, one module per stage.

pub mod extract;
