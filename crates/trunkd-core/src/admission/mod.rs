//! Call admission: the checks a call passes before trunkd routes it.
//!
//! - [`termination`]: customer → carrier, SPEC §2.1 (and §2.5 emergency).
//! - [`origination`]: carrier → customer, SPEC §2.2 items 1–2.
//! - [`rejection`]: the SIP status, reason phrase and metric label of each
//!   refusal.
//!
//! All of it is pure: the SIP layer hands in parsed fields, the clocks and
//! the randomness; these functions decide and update only the state they
//! are given.

pub mod origination;
pub mod rejection;
pub mod termination;

pub use origination::{called_number, origination_source, origination_target, OriginationTarget};
pub use rejection::{OriginationRejection, Rejection};
pub use termination::{
    admit_recording, admit_termination, voice_connector_by_source, voice_connector_for,
    AdmissionState, Admitted, AdmittedRecording, CallerId, Destination, IdentifiedBy, Now,
    TerminationPolicy, TerminationRequest,
};
