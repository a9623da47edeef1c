//! Keyport's benchmarks (`scripts/bench`): each figure measured against the floor of the work
//! it does. Nothing here is a test: no figure is asserted.

pub mod authserver;
pub mod common;
pub mod http_load;
pub mod read;
pub mod refresher;
pub mod remote_calls;
pub mod report;
pub mod scale;
pub mod startup;
