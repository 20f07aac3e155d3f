//! One received HTTP body to either a Bundle to store or an acknowledgment to send now.

use serde_json::Value;

use crate::ack::{AckTarget, ack};
use crate::error::{ErrorCode, Issue};
use crate::fhir::{MappingContext, to_fhir_bundle};
use crate::message::{Message, parse};

/// The outcome of [`receive`].
#[derive(Debug, Clone)]
pub enum Received {
    /// The message mapped cleanly: store `bundle`, then acknowledge `message` (AA, or AE/AR
    /// if the store refuses).
    Mapped {
        /// The parsed message, for the ACK and the idempotency key.
        message: Box<Message>,
        /// The transaction Bundle.
        bundle: Value,
    },
    /// The message cannot be stored; answer `ack` (AE or AR) and store nothing.
    Refused {
        /// Why.
        issue: Issue,
        /// The acknowledgment, ER7 with `\r` segment terminators.
        ack: String,
    },
}

/// Decode, parse and map an HTTP body. A body that is not UTF-8 is rejected (AR) with the
/// byte offset of the first invalid sequence; its MSH, read leniently, still addresses the ACK.
pub fn receive(body: &[u8], ctx: &MappingContext, timestamp: &str) -> Received {
    let refuse = |issue: Issue, text: &str| Received::Refused {
        ack: ack(&AckTarget::sniff(text), Some(&issue), timestamp),
        issue,
    };
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(e) => {
            let lossy = String::from_utf8_lossy(body);
            let issue = Issue::reject(
                ErrorCode::DataType,
                format!(
                    "the body is not UTF-8 (invalid byte at offset {}); send UTF-8 and say so in \
                     MSH-18 (UNICODE UTF-8)",
                    e.valid_up_to()
                ),
            );
            return refuse(issue, &lossy);
        }
    };
    let message = match parse(text) {
        Ok(message) => message,
        Err(e) => return refuse(e.issue(), text),
    };
    match to_fhir_bundle(&message, ctx) {
        Ok(bundle) => Received::Mapped {
            message: Box::new(message),
            bundle,
        },
        Err(e) => {
            let issue = e.issue();
            Received::Refused {
                ack: ack(&AckTarget::from_message(&message), Some(&issue), timestamp),
                issue,
            }
        }
    }
}
