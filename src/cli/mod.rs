//! Pieces of the `floe` command line that are worth testing on their own.

pub mod config;
pub mod progress;
