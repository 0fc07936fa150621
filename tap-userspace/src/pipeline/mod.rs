//! One capture from ring to sinks: the drain, the run loop, its live counters and its summary.

pub mod drain;
pub mod live;
pub mod run;
pub mod summary;
