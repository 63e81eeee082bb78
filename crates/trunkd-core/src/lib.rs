//! trunkd-core: the pure heart of trunkd.
//!
//! Everything here is plain data and plain functions: the validated resource
//! model (voice connectors, groups, carriers, numbers, SIP media applications,
//! SIP rules), the newtypes that make wrong values unrepresentable (`E164`,
//! `Priority`, `Weight`, `CpsLimit`, ids), and E.164 → country resolution.
//! There is no I/O, no clock and no RNG in this crate: callers pass `now` and
//! randomness in, so every rule is tested deterministically.
//!
//! Configuration reaches the rest of trunkd only as a [`Resources`] snapshot,
//! built by `trunkd-config` after validation; nothing else constructs one
//! except tests.

pub mod country;
pub mod e164;
pub mod ids;
pub mod resources;
pub mod secret;
pub mod types;

pub use country::Country;
pub use e164::E164;
pub use ids::{CarrierId, GroupId, RuleId, SmaId, VcId};
pub use resources::*;
pub use types::{CpsLimit, Host, NetworkType, Port, Priority, Transport, Weight};
