//! trunkd-core: the pure heart of trunkd.
//!
//! Everything here is plain data and plain functions: the validated resource
//! model (voice connectors, groups, carriers, numbers, SIP media applications,
//! SIP rules), the newtypes that make wrong values unrepresentable (`E164`,
//! `Priority`, `Weight`, `CpsLimit`, ids), and E.164 → country resolution.
//! There is no I/O, no clock and no RNG in this crate: callers pass `now` and
//! randomness in, so every rule is tested deterministically.
//!
//! On top of the model, the call-path decisions, each a module with one job:
//!
//! - [`admission`]: termination admission in SPEC §2.1 order, origination
//!   source and target (§2.2), and the SIP response of every refusal;
//! - [`digest`]: RFC 7616/2617 digest authentication, server and client;
//! - [`cps`]: the per-VC calls-per-second token buckets;
//! - [`routing`]: priority/weight route order with hold-down, and the
//!   termination and origination plans;
//! - [`cdr`]: the §5.1 call detail record, billing and record keys;
//! - [`backoff`]: when a webhook delivery or record upload is retried;
//! - [`events`]: the §5.4 event envelope, webhook signing and the
//!   delivery outbox;
//! - [`civil`], [`transaction_id`]: UTC calendar time and the call's UUID.
//!
//! Stateful parts (`CpsLimiter`, `NonceCounter`, `RouteHealthTable`) are
//! plain values the daemon owns and passes in with `now`.
//!
//! Configuration reaches the rest of trunkd only as a [`Resources`] snapshot,
//! built by `trunkd-config` after validation; nothing else constructs one
//! except tests.

pub mod admission;
pub mod auth_failures;
pub mod backoff;
pub mod cdr;
pub mod civil;
pub mod country;
pub mod cps;
pub mod deletion;
pub mod digest;
pub mod e164;
pub mod events;
#[cfg(test)]
mod fixtures;
pub mod ids;
pub mod quality;
pub mod resources;
pub mod routing;
pub mod secret;
pub mod transaction_id;
pub mod types;

pub use country::Country;
pub use e164::E164;
pub use ids::{CarrierId, GroupId, RuleId, SmaId, VcId};
pub use resources::*;
pub use transaction_id::TransactionId;
pub use types::{CpsLimit, Host, NetworkType, Port, Priority, SrtpPolicy, Transport, Weight};
