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
//! It is meant for names; an IP-literal target already met `destinations:` in the decision.
//!
//! # Caching
//! [`Policy::decide_host`] returns the host-level part of a decision, valid on
//! `[valid_from, valid_until)`: `valid_until` is the earliest instant at which a rule walked for
//! that (ministry, host, port) can change activity (schedule window, expiry), so a cached
//! verdict never differs from what [`Policy::decide`] would answer at the same instant.
//! [`HostVerdict::finish`] then applies the `urls:` candidates to the path.
//!
//! # Selectors (a rule matches when any selector matches, its `ports:` admit the port, and it
//! is active)
//! - `domains:` the domain and its subdomains, on label boundaries; names only, never IPs.
//! - `categories:` each category's domains, as `domains:`.
//! - `hosts:` exact; an IP entry matches the IP-literal target (in any spelling, normalised).
//! - `urls:` exact host, then a plain string prefix of the normalised path (`/admin` also
//!   matches `/administrator`); the query is ignored. With no path to see (CONNECT, or a target
//!   such as `*`), a block entry matches on its host alone (fail closed) and an allow entry only
//!   when its prefix is `/`.
//! - `destinations:` CIDRs; in the decision they match IP-literal targets only (resolved
//!   addresses go through [`Policy::check_resolved`]).
//! - `ports:` restricts the others; a rule with no other selector applies to every host on its
//!   ports, and a rule with no selector at all to everything (as a firewall rule would).
//!
//! Activity (`expires:` exclusive, wall-clock schedules, DST) is defined in `activity`.
//!
//! # Names
//! Rules are `stem/id`; defaults are `stem/_default`, `_organization/_default` and
//! `_unknown/_default`. Defaults carry a generated reason for block pages.
//!
//! # Layers
//! `model` (validated input) → `compile` (rule ids in evaluation order; per-owner `matcher`s
//! with suffix maps, exact maps, a shared category index and `cidr` tables) → `decide` (hash
//! lookups over the host's label suffixes; cost independent of the number of rules) →
//! [`HostVerdict`] (the cacheable host-level part, with `valid_until`). `explain` is a naive
//! linear walk over the same rules, used by the CLI and as the test oracle of `decide`.

mod activity;
mod cidr;
mod compile;
mod decide;
mod explain;
pub mod host;
mod matcher;
pub mod model;
pub mod path;
#[cfg(test)]
pub(crate) mod tests;

pub use activity::{ActivityState, HORIZON_DAYS};
pub use compile::{MinistryInfo, Policy, RuleInfo, ORGANIZATION, UNKNOWN};
pub use decide::HostVerdict;
pub use explain::{Explanation, Stage, WalkStep};

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
