//! What the discovery document and each ID token must say as `iss`: the
//! configured issuer exactly (plain `oidc`), or a preset's rule (other
//! spellings, or a template each token fills with one of its own claims).

use serde_json::{Map, Value};

/// What the discovery document and each ID token must say as `iss`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerRule {
    /// `issuer` exactly (the discovery document's too); a token may also say
    /// one of `also`.
    Exact { issuer: String, also: Vec<String> },
    /// The discovery document says `template` (holding `placeholder`); a token's
    /// `iss` must be the template with the token's own `claim` in place of the
    /// placeholder (a claim of letters, digits, `-`, `_` and `.` only).
    Template {
        template: String,
        placeholder: String,
        claim: String,
    },
}

impl IssuerRule {
    /// What the discovery document's `issuer` must be.
    pub fn discovery_issuer(&self) -> &str {
        match self {
            IssuerRule::Exact { issuer, .. } => issuer,
            IssuerRule::Template { template, .. } => template,
        }
    }

    /// The issuer the token must have, given its claims; `Err`: why not.
    pub fn expected_for(&self, claims: &Map<String, Value>) -> Result<Vec<String>, String> {
        match self {
            IssuerRule::Exact { issuer, also } => {
                let mut all = vec![issuer.clone()];
                all.extend(also.iter().cloned());
                Ok(all)
            }
            IssuerRule::Template {
                template,
                placeholder,
                claim,
            } => {
                let value = claims.get(claim).and_then(Value::as_str).unwrap_or("");
                if !safe_segment(value) {
                    return Err(format!(
                        "the ID token's {claim} {value:?} is missing or not a plain identifier, so its issuer cannot be checked against {template:?}"
                    ));
                }
                Ok(vec![template.replace(placeholder.as_str(), value)])
            }
        }
    }

    /// Whether the authorization response's RFC 9207 `iss` fits the rule.
    pub fn accepts_response_iss(&self, iss: &str) -> bool {
        match self {
            IssuerRule::Exact { issuer, also } => iss == issuer || also.iter().any(|a| a == iss),
            IssuerRule::Template {
                template,
                placeholder,
                ..
            } => match template.split_once(placeholder.as_str()) {
                Some((head, tail)) => iss
                    .strip_prefix(head)
                    .and_then(|rest| rest.strip_suffix(tail))
                    .is_some_and(safe_segment),
                None => iss == template,
            },
        }
    }
}

/// A non-empty identifier that cannot change an URL's structure.
pub fn safe_segment(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
