//! intake: takes files into a records platform safely and fast.

pub mod pipeline;
pub mod testkit;
