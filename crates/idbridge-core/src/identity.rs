//! What a connector learns about a person: who they are upstream, how to link them
//! across apps, and what their profile says.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The configured id of a connector (`[[connectors]] id = "wechat"`). It appears in
/// URLs (`/callback/{id}`) and in the `connector=` authorization parameter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectorId(String);

impl ConnectorId {
    /// Connector ids are short, URL-safe names: `[a-z0-9][a-z0-9_-]{0,63}`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "connector id {raw:?} must be 1-64 characters of a-z, 0-9, '-' or '_', starting with a letter or digit"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key that names the same person across several connectors. For WeChat: the
/// `unionid`, scoped by the Open Platform account (原始ID) that issued it, so two
/// Open Platform accounts never merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkKey {
    pub scope: String,
    pub key: String,
}

/// Standard profile claims, as far as the upstream knows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
}

/// Upstream tokens a connector may want back later (refresh, re-check). The server
/// stores them encrypted and never logs them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UpstreamTokens {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl fmt::Debug for UpstreamTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTokens")
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .field("scope", &self.scope)
            .finish()
    }
}

/// The result of a successful upstream sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalIdentity {
    pub connector_id: ConnectorId,
    /// Stable and unique within this connector (WeChat: the openid, per app).
    pub subject: String,
    pub link_key: Option<LinkKey>,
    pub profile: Profile,
    pub upstream_tokens: Option<UpstreamTokens>,
    /// Whatever else the upstream said, for the audit log and debugging; never
    /// holds secrets.
    pub raw_claims: serde_json::Value,
}
