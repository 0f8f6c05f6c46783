//! Raw → validated: every check of every file, reporting all problems with positions.
//!
//! - [`settings`], [`listen`] and [`identity`]: `egressd.yaml` (and the credentials file) →
//!   `Settings`;
//! - [`policy`] and [`rule`]: the policy and category folders → `PolicySet`;
//! - [`values`] and [`time`]: parsers of single values, shared by all of the above;
//! - [`report`]: where diagnostics are gathered, [`files`]: what is read from disk.

pub(crate) mod files;
pub(crate) mod identity;
pub(crate) mod listen;
pub(crate) mod policy;
pub(crate) mod report;
pub(crate) mod rule;
pub(crate) mod settings;
pub(crate) mod time;
pub(crate) mod values;
