//! Join tokens: short-lived JWTs in the shape of LiveKit access tokens
//! (`video` grant) plus the platform's own `vth` claims, signed with an
//! Ed25519 key derived from the master key (EdDSA).

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{JoinGrant, ParticipantRole};

/// Default lifetime of a join token, in seconds.
pub const DEFAULT_TTL_SECS: i64 = 600;
/// Longest lifetime of a join token, in seconds.
pub const MAX_TTL_SECS: i64 = 3600;
/// Clock skew tolerated between nodes, in seconds.
const LEEWAY_SECS: u64 = 5;

/// The `video` grant, with LiveKit's field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoClaims {
    pub room: String,
    pub room_join: bool,
    pub can_publish: bool,
    pub can_subscribe: bool,
    pub can_publish_data: bool,
}

/// The platform's own claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VthClaims {
    pub participant_id: String,
    pub role: ParticipantRole,
    pub hospital: Option<String>,
}

/// Every claim of a join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinClaims {
    pub iss: String,
    /// The participant's identity (the person's subject).
    pub sub: String,
    pub nbf: i64,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub name: String,
    pub video: VideoClaims,
    pub vth: VthClaims,
}

impl JoinClaims {
    /// The grant these claims carry.
    pub fn grant(&self) -> JoinGrant {
        JoinGrant {
            room_id: self.video.room.clone(),
            participant_id: self.vth.participant_id.clone(),
            subject: self.sub.clone(),
            display_name: self.name.clone(),
            hospital_id: self.vth.hospital.clone(),
            role: self.vth.role,
            can_publish: self.video.can_publish,
            can_subscribe: self.video.can_subscribe,
            expires_at: self.exp,
        }
    }
}

/// Why a join token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("the join token is malformed: {0}")]
    Malformed(String),
    #[error("the join token's signature is not valid (forged, or signed by another deployment)")]
    BadSignature,
    #[error("the join token has expired; ask for a new one")]
    Expired,
    #[error("the join token is not valid yet")]
    NotYetValid,
    #[error("the join token was not issued by this platform")]
    WrongIssuer,
    #[error("the join token is for another room")]
    WrongRoom,
    #[error("no video room {0}")]
    UnknownRoom(String),
    #[error("video room {0} has ended")]
    RoomEnded(String),
    #[error("the token's participant is not invited to this room")]
    Uninvited,
    #[error("the participant was removed from this room")]
    Removed,
    #[error("the join token cannot be checked now: {0}")]
    Unavailable(String),
}

impl JoinError {
    /// Stable machine-readable code, for the signalling `error` message.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed-token",
            Self::BadSignature => "forged-token",
            Self::Expired => "expired-token",
            Self::NotYetValid => "token-not-yet-valid",
            Self::WrongIssuer => "wrong-issuer",
            Self::WrongRoom => "wrong-room",
            Self::UnknownRoom(_) => "unknown-room",
            Self::RoomEnded(_) => "room-ended",
            Self::Uninvited => "uninvited",
            Self::Removed => "removed",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

/// Signs and verifies the embedded backend's join tokens.
pub struct TokenSigner {
    issuer: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410), before the seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

impl TokenSigner {
    /// A signer for `issuer` with the Ed25519 key of `seed`.
    pub fn new(issuer: &str, seed: &[u8; 32]) -> Result<Self, crate::secrets::SecretsError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| crate::secrets::SecretsError::Crypto("ed25519"))?;
        let mut pkcs8 = ED25519_PKCS8_PREFIX.to_vec();
        pkcs8.extend_from_slice(seed);
        Ok(Self {
            issuer: issuer.to_owned(),
            encoding: EncodingKey::from_ed_der(&pkcs8),
            decoding: DecodingKey::from_ed_der(pair.public_key().as_ref()),
        })
    }

    /// The `iss` of the tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Sign `claims`.
    pub fn sign(&self, claims: &JoinClaims) -> Result<String, JoinError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| JoinError::Malformed(format!("cannot sign: {e}")))
    }

    /// Check the signature, lifetime and issuer of `token`; the room,
    /// invitation and room state are the room service's to check.
    pub fn verify(&self, token: &str) -> Result<JoinClaims, JoinError> {
        let mut v = Validation::new(Algorithm::EdDSA);
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "nbf", "iss", "sub"]);
        v.set_issuer(&[&self.issuer]);
        jsonwebtoken::decode::<JoinClaims>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                    JoinError::BadSignature
                }
                ErrorKind::ExpiredSignature => JoinError::Expired,
                ErrorKind::ImmatureSignature => JoinError::NotYetValid,
                ErrorKind::InvalidIssuer => JoinError::WrongIssuer,
                _ => JoinError::Malformed(e.to_string()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::now_secs;

    fn claims(exp_in: i64) -> JoinClaims {
        let now = now_secs();
        JoinClaims {
            iss: "https://vth.example".into(),
            sub: "user-1".into(),
            nbf: now,
            exp: now + exp_in,
            iat: now,
            jti: "j".into(),
            name: "BS. An".into(),
            video: VideoClaims {
                room: "room-1".into(),
                room_join: true,
                can_publish: true,
                can_subscribe: true,
                can_publish_data: true,
            },
            vth: VthClaims {
                participant_id: "p-1".into(),
                role: ParticipantRole::Presenter,
                hospital: Some("bv-a".into()),
            },
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let signer = TokenSigner::new("https://vth.example", &[7; 32]).unwrap();
        let c = claims(600);
        assert_eq!(signer.verify(&signer.sign(&c).unwrap()), Ok(c.clone()));
        assert_eq!(c.grant().participant_id, "p-1");
        let forger = TokenSigner::new("https://vth.example", &[9; 32]).unwrap();
        assert_eq!(
            signer.verify(&forger.sign(&c).unwrap()),
            Err(JoinError::BadSignature)
        );
        assert_eq!(
            signer.verify(&signer.sign(&claims(-120)).unwrap()),
            Err(JoinError::Expired)
        );
        let mut foreign = claims(600);
        foreign.iss = "https://evil.example".into();
        assert_eq!(
            signer.verify(&signer.sign(&foreign).unwrap()),
            Err(JoinError::WrongIssuer)
        );
        assert!(matches!(
            signer.verify("not.a.token"),
            Err(JoinError::Malformed(_))
        ));
    }
}
