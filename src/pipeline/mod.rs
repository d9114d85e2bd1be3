//! The archive validator (`extract`), until it moves into its own crate. The
//! pipeline's steps are in `crate::uploads::process`.

pub mod extract;
