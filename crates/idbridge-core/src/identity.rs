//! What a connector learns about a person: who they are upstream, how to link them
//! across apps, and what their profile says; and [`ExternalIdentity::screened`],
//! the check every connector's output passes before the broker stores or shows
//! any of it.

use crate::{ConnectorError, ErrorKind, Stage};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest profile picture URL handed to apps, in bytes.
pub const MAX_PICTURE_BYTES: usize = 2048;
/// The longest display string (name, locale) kept, in characters.
pub const MAX_DISPLAY_CHARS: usize = 256;

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

/// Standard profile claims (OpenID Connect Core 5.1), as far as the upstream
/// knows them. The broker releases them to apps under the standard scopes:
/// names, picture and locale under `profile`, email under `email`, the phone
/// number under `phone`. A `*_verified` flag is what the upstream asserts; the
/// broker never turns an unverified address into a verified one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// E.164 (`+8613800138000`) where the upstream gives it so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number_verified: Option<bool>,
}

/// The longest email address kept, in bytes (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;
/// The longest phone number kept, in bytes.
pub const MAX_PHONE_BYTES: usize = 32;

impl Profile {
    /// `email` when it is fit to be an app's `email` claim: one `@` with text on
    /// both sides, a dot-free-or-dotted domain without spaces, no control
    /// characters or whitespace, at most [`MAX_EMAIL_BYTES`]. `Err` says why not.
    pub fn safe_email(email: &str) -> Result<String, &'static str> {
        if email.len() > MAX_EMAIL_BYTES {
            return Err("longer than 254 bytes");
        }
        if email.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("holds a control character or a space");
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err("has no @");
        };
        if local.is_empty() || domain.is_empty() || local.contains('@') {
            return Err("is not local@domain");
        }
        if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
            return Err("has a malformed domain");
        }
        Ok(email.to_owned())
    }

    /// `phone` when it is fit to be an app's `phone_number` claim: digits with an
    /// optional leading `+` and the separators ` -()`, at most
    /// [`MAX_PHONE_BYTES`], at least one digit. `Err` says why not.
    pub fn safe_phone(phone: &str) -> Result<String, &'static str> {
        let phone = phone.trim();
        if phone.len() > MAX_PHONE_BYTES {
            return Err("longer than 32 bytes");
        }
        let body = phone.strip_prefix('+').unwrap_or(phone);
        if !body.chars().any(|c| c.is_ascii_digit()) {
            return Err("has no digits");
        }
        if !body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '(' | ')'))
        {
            return Err("holds something other than digits, + and separators");
        }
        Ok(phone.to_owned())
    }

    /// `url` when it is fit to be an app's `picture` claim: an absolute `https`
    /// URL with a host, without userinfo (`user:pass@`) or control characters,
    /// at most [`MAX_PICTURE_BYTES`] long; as the `url` crate writes it. `Err`
    /// says why not (for the log); such a picture is dropped, never repaired.
    pub fn safe_picture(url: &str) -> Result<String, &'static str> {
        if url.len() > MAX_PICTURE_BYTES {
            return Err("longer than 2048 bytes");
        }
        // Checked before parsing: the URL parser silently drops tabs and newlines.
        if url.chars().any(char::is_control) {
            return Err("holds a control character");
        }
        let parsed = url::Url::parse(url).map_err(|_| "not an absolute URL")?;
        if parsed.scheme() != "https" {
            return Err("not an https URL");
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err("has no host");
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("carries a user name or password");
        }
        let out = parsed.to_string();
        if out.len() > MAX_PICTURE_BYTES {
            return Err("longer than 2048 bytes");
        }
        Ok(out)
    }
}

/// A display string without control characters (line breaks and tabs become
/// spaces, the others are removed), trimmed and at most [`MAX_DISPLAY_CHARS`]
/// long; `None` when nothing is left.
pub fn clean_display(s: &str) -> Option<String> {
    let cleaned: String = s
        .chars()
        .filter_map(|c| match c {
            c if c.is_control() && c.is_whitespace() => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .take(MAX_DISPLAY_CHARS)
        .collect();
    let trimmed = cleaned.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
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

impl ExternalIdentity {
    /// What the broker accepts from a connector, the same for every connector
    /// and every database: the identifiers (subject, link key) must be free of
    /// control characters, or the sign-in fails at `stage` (an identifier is
    /// never altered: a changed one would be someone else); the display strings
    /// are cleaned ([`clean_display`]); the picture is kept only when
    /// [`Profile::safe_picture`] allows it, else dropped with a log line.
    pub fn screened(mut self, stage: Stage) -> Result<Self, ConnectorError> {
        let connector = self.connector_id.as_str();
        let mut identifiers = vec![("subject", self.subject.as_str())];
        if let Some(l) = &self.link_key {
            identifiers.push(("link key scope", l.scope.as_str()));
            identifiers.push(("link key", l.key.as_str()));
        }
        if let Some((what, _)) = identifiers
            .into_iter()
            .find(|(_, v)| v.chars().any(char::is_control))
        {
            // Not retryable and not the person's doing: this identity cannot sign in.
            return Err(ConnectorError::new(stage, ErrorKind::NotAllowed)
                .upstream(
                    "control_character",
                    format!("the upstream {what} holds a control character"),
                )
                .fix(format!(
                    "connector {connector} returned a {what} with a control character (such as NUL or a line break); no account is created or signed in from it. If the upstream is real, report it to the provider; if it is a simulator or proxy, fix that"
                )));
        }
        let p = &mut self.profile;
        for text in [
            &mut p.name,
            &mut p.given_name,
            &mut p.family_name,
            &mut p.preferred_username,
            &mut p.locale,
        ] {
            *text = text.as_deref().and_then(clean_display);
        }
        if let Some(email) = p.email.take() {
            match Profile::safe_email(&email) {
                Ok(e) => p.email = Some(e),
                Err(reason) => {
                    p.email_verified = None;
                    tracing::info!(connector, reason, "dropped the upstream email address");
                }
            }
        } else {
            p.email_verified = None;
        }
        if let Some(phone) = p.phone_number.take() {
            match Profile::safe_phone(&phone) {
                Ok(n) => p.phone_number = Some(n),
                Err(reason) => {
                    p.phone_number_verified = None;
                    tracing::info!(connector, reason, "dropped the upstream phone number");
                }
            }
        } else {
            p.phone_number_verified = None;
        }
        if let Some(picture) = self.profile.picture.take() {
            match Profile::safe_picture(&picture) {
                Ok(p) => self.profile.picture = Some(p),
                Err(reason) => tracing::info!(
                    connector,
                    reason,
                    "dropped the upstream profile picture: apps only get https URLs"
                ),
            }
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn identity(subject: &str, unionid: Option<&str>, profile: Profile) -> ExternalIdentity {
        ExternalIdentity {
            connector_id: ConnectorId::parse("wechat").unwrap(),
            subject: subject.to_owned(),
            link_key: unionid.map(|k| LinkKey {
                scope: "gh_platform".to_owned(),
                key: k.to_owned(),
            }),
            profile,
            upstream_tokens: None,
            raw_claims: serde_json::Value::Null,
        }
    }

    #[test]
    fn only_plain_https_pictures_are_kept() {
        let ok = "https://thirdwx.qlogo.cn/mmopen/vi_32/abc/132";
        assert_eq!(Profile::safe_picture(ok).as_deref(), Ok(ok));
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:image/png;base64,AAAA",
            "http://example.com/a.png",
            "//example.com/a.png",
            "/a.png",
            "https://user:pw@example.com/a.png",
            "https://user@example.com/a.png",
            "https://exa\nmple.com/a.png",
            "https://example.com/\u{0}.png",
            "ftp://example.com/a.png",
        ] {
            assert!(Profile::safe_picture(bad).is_err(), "{bad:?} was kept");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_PICTURE_BYTES));
        assert!(Profile::safe_picture(&long).is_err());
    }

    #[test]
    fn display_strings_lose_their_control_characters() {
        assert_eq!(clean_display("Ali\u{0}ce").as_deref(), Some("Alice"));
        assert_eq!(
            clean_display("王小明🐼\n✨\t").as_deref(),
            Some("王小明🐼 ✨")
        );
        assert_eq!(clean_display("\u{0}\u{7f}\u{1b}"), None);
        assert_eq!(
            clean_display(&"x".repeat(1000)).map(|s| s.chars().count()),
            Some(MAX_DISPLAY_CHARS)
        );
    }

    #[test]
    fn identifiers_with_control_characters_fail_the_sign_in() {
        for (subject, unionid, what) in [
            ("o\u{0}x", None, "subject"),
            ("ok", Some("u\u{0}x"), "link key"),
            ("o\nx", Some("u"), "subject"),
        ] {
            let e = identity(subject, unionid, Profile::default())
                .screened(Stage::Callback)
                .unwrap_err();
            assert_eq!(e.stage, Stage::Callback);
            assert_eq!(e.kind, ErrorKind::NotAllowed);
            assert_eq!(e.upstream_code.as_deref(), Some("control_character"));
            assert!(
                e.upstream_message.as_deref().unwrap_or("").contains(what),
                "{e:?}"
            );
        }
    }

    #[test]
    fn a_screened_identity_keeps_its_ids_and_a_clean_profile() {
        let i = identity(
            "o1",
            Some("u1"),
            Profile {
                name: Some("Ali\u{0}ce\n".into()),
                picture: Some("javascript:alert(1)".into()),
                locale: Some("zh_CN".into()),
                ..Profile::default()
            },
        )
        .screened(Stage::Callback)
        .unwrap();
        assert_eq!(i.subject, "o1");
        assert_eq!(i.link_key.map(|l| l.key).as_deref(), Some("u1"));
        assert_eq!(i.profile.name.as_deref(), Some("Alice"));
        assert_eq!(i.profile.picture, None);
        assert_eq!(i.profile.locale.as_deref(), Some("zh_CN"));
    }

    #[test]
    fn emails_and_phone_numbers_are_kept_only_when_plausible() {
        for ok in [
            "a@example.com",
            "first.last+tag@mail.example.cn",
            "x@localhost",
        ] {
            assert_eq!(Profile::safe_email(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "",
            "no-at",
            "@example.com",
            "a@",
            "a b@example.com",
            "a@exa mple.com",
            "a@b@c",
            "a@.example.com",
            "a@example..com",
            "a\u{0}@example.com",
            "a@example.com\n",
        ] {
            assert!(Profile::safe_email(bad).is_err(), "{bad:?} was kept");
        }
        for ok in ["+8613800138000", "13800138000", "+1 (555) 010-0199"] {
            assert_eq!(Profile::safe_phone(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "",
            "+",
            "call me",
            "123\n456",
            "+86 138 0013 8000 ext 12",
            &"1".repeat(40),
        ] {
            assert!(Profile::safe_phone(bad).is_err(), "{bad:?} was kept");
        }
    }

    #[test]
    fn a_dropped_address_loses_its_verified_flag() {
        let i = identity(
            "o1",
            None,
            Profile {
                email: Some("not an address".into()),
                email_verified: Some(true),
                phone_number: Some("+8613800138000".into()),
                phone_number_verified: Some(true),
                given_name: Some("小\u{7}明".into()),
                ..Profile::default()
            },
        )
        .screened(Stage::Callback)
        .unwrap();
        assert_eq!(i.profile.email, None);
        assert_eq!(i.profile.email_verified, None);
        assert_eq!(i.profile.phone_number.as_deref(), Some("+8613800138000"));
        assert_eq!(i.profile.phone_number_verified, Some(true));
        assert_eq!(i.profile.given_name.as_deref(), Some("小明"));
        // A verified flag without an address means nothing and is dropped.
        let i = identity(
            "o2",
            None,
            Profile {
                email_verified: Some(true),
                ..Profile::default()
            },
        )
        .screened(Stage::Callback)
        .unwrap();
        assert_eq!(i.profile.email_verified, None);
    }
}
