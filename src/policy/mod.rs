//! The policy engine: PURE. Given a compiled [`Policy`], a ministry, a destination and an
//! instant, it answers allow / block / report and names the rule. No I/O, no tokio, no locks.
//!
//! # Precedence (written once, here; `egressd explain` prints this walk)
//! For a client of ministry M:
//! 1. organization `mandatory:` rules, in file order (enforced even when M is in report mode);
//! 2. M's own `rules:`, in file order;
//! 3. organization `baseline:` rules, in file order;
//! 4. M's `default:` (`M/_default`), when M sets one;
//! 5. the organization `default:` (`_organization/_default`).
//!
//! Within each list the first *matching, active* rule decides. A client that maps to no
//! ministry is blocked by `_unknown/_default`. When M is in report mode, a block from steps 2–5
//! becomes [`Outcome::Report`] (allowed, but counted and logged as a would-block).
//!
//! After a name is resolved, [`Policy::check_resolved`] applies the active block rules with
//! `destinations:` in the same order to every address, so a name cannot reach a blocked range.
//!
//! # Layers
//! `model` (validated input) → `compile` (suffix maps, exact maps, CIDR tables) → `decide`
//! (hash lookups over the host's label suffixes; cost independent of the number of rules).

mod activity;
mod cidr;
mod compile;
pub mod host;
mod matcher;
pub mod model;
pub mod path;

pub use activity::{ActivityState, HORIZON_DAYS};
pub use compile::{MinistryInfo, Policy, RuleInfo, ORGANIZATION, UNKNOWN};

/// Index of a ministry inside a compiled [`Policy`].
pub type MinistryId = u32;
/// Index of a rule (or a default pseudo-rule) inside a compiled [`Policy`].
pub type RuleId = u32;

/// How the request reached us: a plain-HTTP request (path visible) or a CONNECT tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Http,
    Connect,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Connect => "connect",
        }
    }
}

/// The final answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Allow,
    Block,
    /// Would have been blocked; allowed because the ministry is in report mode.
    Report,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Block => "block",
            Outcome::Report => "report",
        }
    }
}

/// A decision: the outcome and the rule that made it. `Copy`, so cached answers are returned
/// by value and no lock guard ever escapes the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Verdict {
    pub outcome: Outcome,
    pub rule: RuleId,
}
