//! The rules every registered client follows, wherever it is registered: the
//! config file's `[[clients]]` (checked by the one validation pass) and the
//! clients an operator creates or updates through the admin API or `idbridge
//! admin clients`. One copy, so both give the same answer in the same words.

use super::typed::{Algorithms, Sender};
use super::{ClientSettings, Settings};
use std::collections::BTreeSet;

/// What a client is checked against: the signing algorithms the broker keeps
/// keys for, whether it can send one-time codes, and the connector ids.
#[derive(Debug, Clone)]
pub struct ClientRules {
    pub algorithms: Algorithms,
    pub sender: Option<Sender>,
    pub connectors: BTreeSet<String>,
    /// The connectors that verify phone numbers themselves (`Connector::
    /// vouches_for_phone`: the Mini Program with `phone_number = true`), once they
    /// are built. `None` before that (the config file's one validation pass, the
    /// CLI): a `require_phone` client limited to some connectors is then taken on
    /// trust, and the broker checks it at start.
    pub phone_connectors: Option<BTreeSet<String>>,
}

/// One thing wrong with a client: the field (`redirect_uris`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientProblem {
    pub field: &'static str,
    pub message: String,
}

impl ClientRules {
    /// The rules of settings that passed validation (as a running broker's
    /// and the CLI's have): a value at fault there is left at its default.
    pub fn from_settings(s: &Settings) -> Self {
        let algorithms = Algorithms::read(&s.signing, &mut Vec::new());
        let sender = Sender::parse(&s.verification.sender).ok();
        let connectors = s
            .connectors
            .iter()
            .filter_map(|c| c.get("id").and_then(|v| v.as_str()).map(str::to_owned))
            .collect();
        Self {
            algorithms,
            sender,
            connectors,
            phone_connectors: None,
        }
    }

    /// These rules, knowing which connectors verify phone numbers themselves.
    pub fn with_phone_connectors(mut self, ids: BTreeSet<String>) -> Self {
        self.phone_connectors = Some(ids);
        self
    }

    /// Everything wrong with `c` but a duplicate id (which only the caller
    /// can see), in field order.
    pub fn check(&self, c: &ClientSettings) -> Vec<ClientProblem> {
        let mut out = Vec::new();
        let mut problem = |field: &'static str, message: String| {
            out.push(ClientProblem { field, message });
        };
        if c.id.is_empty() || !c.id.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            problem("id", "must be non-empty printable ASCII without ':'".into());
        }
        match (c.public, &c.secret) {
            (true, Some(_)) => problem("secret", "a public client has no secret".into()),
            (false, None) => problem(
                "secret",
                "missing: a confidential client needs secret or secret_file (or set public = true)"
                    .into(),
            ),
            (false, Some(secret)) if secret.len() < 16 => problem(
                "secret",
                "too short: use at least 16 random characters".into(),
            ),
            _ => {}
        }
        if c.redirect_uris.is_empty() {
            problem(
                "redirect_uris",
                "at least one redirect URI is required".into(),
            );
        }
        for (field, uris) in [
            ("redirect_uris", &c.redirect_uris),
            ("post_logout_redirect_uris", &c.post_logout_redirect_uris),
        ] {
            for uri in uris {
                if let Err(msg) = check_redirect_uri(uri, c.public) {
                    problem(field, format!("{uri:?}: {msg}"));
                }
            }
        }
        for origin in &c.allowed_origins {
            if let Err(msg) = check_origin(origin) {
                problem("allowed_origins", format!("{origin:?}: {msg}"));
            }
        }
        if let Some(alg) = &c.id_token_signed_response_alg {
            if let Err(e) = self.algorithms.for_client(&c.id, alg) {
                problem("id_token_signed_response_alg", e.message);
            }
        }
        for name in &c.connectors {
            if !self.connectors.contains(name) {
                problem("connectors", format!("no connector with id {name:?}"));
            }
        }
        if let Some(p) = self.phone_problem(c) {
            out.push(p);
        }
        out
    }

    /// What is wrong with `c`'s `require_phone`, if anything. Without a sender
    /// the phone step cannot send a code, so every connector the client may use
    /// must bring a verified number itself.
    pub fn phone_problem(&self, c: &ClientSettings) -> Option<ClientProblem> {
        let vouched = !c.connectors.is_empty()
            && self
                .phone_connectors
                .as_ref()
                .is_none_or(|p| c.connectors.iter().all(|id| p.contains(id)));
        (c.require_phone && self.sender == Some(Sender::None) && !vouched).then(|| ClientProblem {
            field: "require_phone",
            message: "needs a way to send codes: set verification.sender (\"webhook\"), or limit \
                      the client's connectors to ones that verify phone numbers themselves \
                      (wechat-miniprogram with phone_number = true)"
                .into(),
        })
    }
}

/// Is this an absolute http(s) URL on a loopback host?
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A registered redirect URI must be absolute, without fragment, https unless on
/// loopback (or a custom scheme for public native apps).
pub fn check_redirect_uri(uri: &str, public: bool) -> Result<(), String> {
    let u = url::Url::parse(uri).map_err(|e| format!("not an absolute URL ({e})"))?;
    if u.fragment().is_some() {
        return Err("must not contain a fragment".into());
    }
    match u.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&u) => Ok(()),
        "http" => Err("http is allowed only on loopback hosts; use https".into()),
        s if public && s.contains('.') => Ok(()), // reverse-domain custom scheme (RFC 8252 §7.1)
        s => Err(format!("scheme {s:?} is not allowed")),
    }
}

/// An origin a browser app is served from (for CORS): `https://host[:port]`, or
/// `http://` on a loopback host; nothing after the host and port but an optional
/// `/`. Never `*` or `null`.
pub fn check_origin(origin: &str) -> Result<(), String> {
    let u = url::Url::parse(origin)
        .map_err(|e| format!("not an origin such as \"https://app.example.com\" ({e})"))?;
    match u.scheme() {
        "https" => {}
        "http" if is_loopback(&u) => {}
        "http" => return Err("http is allowed only on loopback hosts; use https".into()),
        s => {
            return Err(format!(
                "scheme {s:?} is not allowed (https, or http on loopback)"
            ))
        }
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("an origin has no user name or password".into());
    }
    if u.path() != "/" || u.query().is_some() || u.fragment().is_some() || origin.ends_with('?') {
        return Err(
            "an origin is scheme, host and port only, without a path, query or fragment".into(),
        );
    }
    Ok(())
}
