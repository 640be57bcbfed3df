//! The reference model, scenarios, proptest strategies and the conformance
//! runner for evmux backends.
//!
//! - [`world`]: simulated descriptors (pipes, unix socketpairs, regular
//!   files) whose readiness matches Linux exactly in the states the
//!   generators reach, and the same operations on real descriptors.
//! - [`model`]: [`ModelBackend`](model::ModelBackend), the oracle — the same
//!   driver over simulated descriptors.
//! - [`scenario`]: the step language, the runner and trace comparison.
//! - [`scenarios`]: the hand-written scenarios, by category.
//! - [`strategy`]: random scenarios for proptest.
//! - [`conformance`]: everything above, per backend (`cargo xtask conformance`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod conformance;
pub mod model;
pub mod scenario;
pub mod scenarios;
pub mod strategy;
pub mod world;
