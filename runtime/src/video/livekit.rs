//! The adapter for a LiveKit-compatible SFU cluster: join tokens in
//! LiveKit's format (HS256 with the API secret, `iss` = API key, the
//! `video` grant) and the room service over Twirp (JSON over HTTP).

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::token::JoinClaims;
use crate::time::now_secs;

/// Lifetime of the tokens the runtime signs for its own room service calls.
const ADMIN_TOKEN_TTL_SECS: i64 = 300;
/// A room nobody joins is closed by LiveKit after this (its `empty_timeout`).
const EMPTY_TIMEOUT_SECS: u32 = 600;

/// How to reach the cluster.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LiveKitConfig {
    /// `wss://…` (clients) — the room service is reached over the same host with http(s).
    pub url: String,
    pub api_key: String,
    pub api_secret: String,
}

impl std::fmt::Debug for LiveKitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKitConfig")
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .field("api_secret", &"<redacted>")
            .finish()
    }
}

/// Why a LiveKit call failed.
#[derive(Debug, thiserror::Error)]
pub enum LiveKitError {
    #[error("LiveKit configuration: {0}")]
    Config(String),
    #[error("cannot sign a LiveKit token: {0}")]
    Sign(String),
    #[error("LiveKit {method} failed: {message}")]
    Call {
        method: &'static str,
        message: String,
    },
}

/// A configured LiveKit cluster.
pub struct LiveKit {
    config: LiveKitConfig,
    http_base: String,
    http: reqwest::Client,
}

/// The `video` grant as LiveKit names its fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveKitVideoGrant {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub room_join: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub room_create: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub room_list: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub room_admin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_publish: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_subscribe: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_publish_data: Option<bool>,
}

/// The claims of a LiveKit access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveKitClaims {
    /// The API key.
    pub iss: String,
    /// The participant identity.
    pub sub: String,
    pub nbf: i64,
    pub exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub video: LiveKitVideoGrant,
    /// Participant metadata LiveKit hands to the other participants: the
    /// platform's participant id, role and hospital, as JSON text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

impl LiveKit {
    /// A client of the cluster of `config`.
    pub fn new(config: LiveKitConfig) -> Result<Self, LiveKitError> {
        if config.api_key.is_empty() || config.api_secret.len() < 32 {
            return Err(LiveKitError::Config(
                "the API key must be set and the API secret at least 32 bytes".into(),
            ));
        }
        let http_base = if let Some(rest) = config.url.strip_prefix("wss://") {
            format!("https://{rest}")
        } else if let Some(rest) = config.url.strip_prefix("ws://") {
            format!("http://{rest}")
        } else if config.url.starts_with("https://") || config.url.starts_with("http://") {
            config.url.clone()
        } else {
            return Err(LiveKitError::Config(format!(
                "the LiveKit URL `{}` must start with wss://, ws://, https:// or http://",
                config.url
            )));
        };
        // reqwest's rustls needs a process-wide crypto provider; a no-op
        // when identity already installed it.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| LiveKitError::Config(e.to_string()))?;
        Ok(Self {
            http_base: http_base.trim_end_matches('/').to_owned(),
            config,
            http,
        })
    }

    /// The URL clients connect to.
    pub fn url(&self) -> &str {
        &self.config.url
    }

    fn sign(&self, claims: &LiveKitClaims) -> Result<String, LiveKitError> {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_secret(self.config.api_secret.as_bytes()),
        )
        .map_err(|e| LiveKitError::Sign(e.to_string()))
    }

    /// The LiveKit access token for the participant of `claims`.
    pub fn join_token(&self, claims: &JoinClaims, ttl_secs: i64) -> Result<String, LiveKitError> {
        let now = now_secs();
        self.sign(&LiveKitClaims {
            iss: self.config.api_key.clone(),
            sub: claims.sub.clone(),
            nbf: now,
            exp: now + ttl_secs,
            jti: Some(claims.jti.clone()),
            name: Some(claims.name.clone()),
            video: LiveKitVideoGrant {
                room: Some(claims.video.room.clone()),
                room_join: true,
                can_publish: Some(claims.video.can_publish),
                can_subscribe: Some(claims.video.can_subscribe),
                can_publish_data: Some(claims.video.can_publish_data),
                ..LiveKitVideoGrant::default()
            },
            metadata: Some(json!({ "vth": claims.vth }).to_string()),
        })
    }

    /// The runtime's own token for room service calls.
    fn admin_token(&self, room: Option<&str>) -> Result<String, LiveKitError> {
        let now = now_secs();
        self.sign(&LiveKitClaims {
            iss: self.config.api_key.clone(),
            sub: self.config.api_key.clone(),
            nbf: now,
            exp: now + ADMIN_TOKEN_TTL_SECS,
            jti: None,
            name: None,
            video: LiveKitVideoGrant {
                room: room.map(str::to_owned),
                room_create: true,
                room_list: true,
                room_admin: true,
                ..LiveKitVideoGrant::default()
            },
            metadata: None,
        })
    }

    async fn twirp(
        &self,
        method: &'static str,
        room: Option<&str>,
        body: Value,
    ) -> Result<Value, LiveKitError> {
        let err = |message: String| LiveKitError::Call { method, message };
        let response = self
            .http
            .post(format!(
                "{}/twirp/livekit.RoomService/{method}",
                self.http_base
            ))
            .bearer_auth(self.admin_token(room)?)
            .json(&body)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| err(e.to_string()))?;
        if !status.is_success() {
            // Twirp errors are {"code": "...", "msg": "..."}.
            let msg = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["msg"].as_str().map(str::to_owned))
                .unwrap_or(text);
            return Err(err(format!("{status}: {msg}")));
        }
        if text.trim().is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_str(&text).map_err(|e| err(format!("answer is not JSON: {e}")))
    }

    /// `CreateRoom`.
    pub async fn create_room(&self, room: &str, max_participants: u32) -> Result<(), LiveKitError> {
        self.twirp(
            "CreateRoom",
            None,
            json!({ "name": room, "max_participants": max_participants, "empty_timeout": EMPTY_TIMEOUT_SECS }),
        )
        .await
        .map(|_| ())
    }

    /// `DeleteRoom`: disconnects everyone.
    pub async fn delete_room(&self, room: &str) -> Result<(), LiveKitError> {
        self.twirp("DeleteRoom", None, json!({ "room": room }))
            .await
            .map(|_| ())
    }

    /// `ListParticipants`: the identities connected to `room`.
    pub async fn list_participants(&self, room: &str) -> Result<Vec<String>, LiveKitError> {
        let v = self
            .twirp("ListParticipants", Some(room), json!({ "room": room }))
            .await?;
        Ok(v["participants"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p["identity"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `RemoveParticipant`.
    pub async fn remove_participant(&self, room: &str, identity: &str) -> Result<(), LiveKitError> {
        self.twirp(
            "RemoveParticipant",
            Some(room),
            json!({ "room": room, "identity": identity }),
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, secret: &str) -> LiveKitConfig {
        LiveKitConfig {
            url: url.into(),
            api_key: "APIkey".into(),
            api_secret: secret.into(),
        }
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn urls_map_to_the_room_service_and_secrets_are_checked() {
        let lk = LiveKit::new(config("wss://sfu.example.vn/", SECRET)).unwrap();
        assert_eq!(lk.http_base, "https://sfu.example.vn");
        assert_eq!(lk.url(), "wss://sfu.example.vn/");
        let lk = LiveKit::new(config("ws://127.0.0.1:7880", SECRET)).unwrap();
        assert_eq!(lk.http_base, "http://127.0.0.1:7880");
        assert!(LiveKit::new(config("sfu.example.vn", SECRET)).is_err());
        assert!(LiveKit::new(config("wss://sfu.example.vn", "short")).is_err());
        let shown = format!("{:?}", config("wss://x", SECRET));
        assert!(!shown.contains(SECRET), "{shown}");
    }

    #[test]
    fn admin_tokens_carry_room_service_grants() {
        let lk = LiveKit::new(config("wss://sfu.example.vn", SECRET)).unwrap();
        let token = lk.admin_token(Some("room-1")).unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
        v.set_issuer(&["APIkey"]);
        let claims = jsonwebtoken::decode::<LiveKitClaims>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
            &v,
        )
        .unwrap()
        .claims;
        assert!(claims.video.room_create && claims.video.room_admin && claims.video.room_list);
        assert_eq!(claims.video.room.as_deref(), Some("room-1"));
        assert!(!claims.video.room_join);
    }
}
