//! HL7 v2.x (ER7 encoding) for VTelehealth: a parser, original-mode acknowledgments and the
//! mapping of ADT, ORM/OML and ORU messages to FHIR R4 transaction Bundles.
//!
//! A plain library (only `serde_json`), so it runs inside the `his-hl7v2` Wasm plugin and
//! natively (benchmarks, tests).
//!
//! ```
//! let input = "MSH|^~\\&|HIS|BVBM|VTH|VTH|20240305083000||ADT^A04^ADT_A01|MSG0001|P|2.5\r\
//!              PID|1||BN001^^^BVBM^MR||NGUYỄN^VĂN AN||19800101|M\r\
//!              PV1|1|O|||||||||||||||||V001";
//! let message = hl7v2::parse(input)?;
//! assert_eq!(message.get("PID-5-1").as_deref(), Some("NGUYỄN"));
//!
//! let ctx = hl7v2::MappingContext::new("bach-mai");
//! let bundle = hl7v2::to_fhir_bundle(&message, &ctx)?;
//! assert_eq!(bundle["entry"][0]["request"]["url"],
//!            "Patient?identifier=urn:vtelehealth:hospital:bach-mai:mrn|BN001");
//!
//! let ack = hl7v2::ack(&hl7v2::AckTarget::from_message(&message), None, "20240305083001+0700");
//! assert!(ack.ends_with("MSA|AA|MSG0001\r"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod ack;
mod datetime;
mod error;
mod fhir;
mod message;
mod receive;

pub use ack::{AckTarget, ack};
pub use datetime::{BadTimestamp, Timestamp, hl7_timestamp_vn};
pub use error::{AckCode, ErrorCode, Issue, Location};
pub use fhir::{
    BHXH_SYSTEM, CCCD_SYSTEM, MapError, MapErrorKind, MappingContext, SUPPORTED_MESSAGES,
    SUPPORTED_VERSIONS, check_supported, idempotency_key, name_uuid, to_fhir_bundle, translate,
};
pub use message::{
    Field, Message, ParseError, ParseErrorKind, Repetition, Segment, Separators, parse,
};
pub use receive::{Received, receive};
