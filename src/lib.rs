//! `augur`: the `std` side of augur — simulator, trace loaders, predictors and cost model.
//!
//! The scheduling itself lives in [`augur_core`] (re-exported as [`core`]); this crate drives it.

pub use augur_core as core;

pub mod cluster;
pub mod cost;
pub mod events;
pub mod metrics;
pub mod mg1;
pub mod predict;
pub mod report;
pub mod sim;
pub mod storage;
pub mod timeline;
pub mod trace;
