//! Interop tests: the real `trunkd` binary on loopback, driven by SIPp and by
//! plain sockets, asserting on SIP responses, `/metrics` and the CLI.

mod support;

mod admin_api;
mod baresip;
mod calls;
mod dns;
mod events;
mod foundation;
mod hep;
mod journal;
mod logs;
mod media;
mod observability;
mod probing;
mod record_store;
mod recording;
mod sip_logs;
mod siprec;
mod sma;
mod sma_bridge;
mod srtp;
mod status_page;
mod streaming;
mod tls;
mod ua;
mod weed;
