//! Configuration loading (in progress): locating YAML nodes and reporting diagnostics.

mod error;
mod outline;
mod seek;
pub mod settings;
pub mod yaml;

pub use error::{Diagnostic, Problem, Severity};
