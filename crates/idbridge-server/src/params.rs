//! Request parameters, strictly: OAuth forbids repeating a parameter
//! (RFC 6749 §3.1), empty values count as absent, and no text from outside may
//! hold a control character (the one rule, [`control_free`], that every entry
//! point applies: these parsers, [`crate::screen`] for the request line and
//! cookies, client authentication, the admin API's JSON bodies).

use std::collections::BTreeMap;
use std::fmt;

/// Whether `s` is free of control characters: Unicode category Cc, that is NUL
/// and the other C0 controls (including tab, CR and LF), DEL, and the C1
/// controls. No parameter the broker takes has a use for any of them (none is
/// free text: ids, codes, tokens, URIs, scopes, phone numbers), and each one is
/// a way to smuggle something into a database (Postgres refuses NUL in text), a
/// log line or a header.
pub fn control_free(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// Why a set of parameters was refused; each names the parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// The parameter was given more than once.
    Repeated(String),
    /// The parameter (its name or its value) holds a control character.
    Control(String),
}

impl Rejected {
    /// The parameter at fault, printable (a name with a control character in
    /// it is shown escaped).
    pub fn name(&self) -> String {
        let (Rejected::Repeated(n) | Rejected::Control(n)) = self;
        printable(n)
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::Repeated(_) => {
                write!(f, "parameter {} was given more than once", self.name())
            }
            Rejected::Control(_) => write!(
                f,
                "parameter {} contains a control character (such as NUL or a line break), which is never valid",
                self.name()
            ),
        }
    }
}

/// `s` as is when it is printable, else escaped like a Rust string literal.
pub fn printable(s: &str) -> String {
    if control_free(s) {
        s.to_owned()
    } else {
        s.escape_debug().to_string()
    }
}

/// Check one parameter against the rule; `Err` names it.
pub fn check(name: &str, value: &str) -> Result<(), Rejected> {
    if control_free(name) && control_free(value) {
        Ok(())
    } else {
        Err(Rejected::Control(name.to_owned()))
    }
}

/// Whether a space-separated `scope` (RFC 6749 §3.3) holds `wanted`.
pub fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split(' ').any(|s| s == wanted)
}

/// The scopes the broker grants, in the order a granted scope lists them.
/// RFC 8693 token exchange's `grant_type`.
pub const TOKEN_EXCHANGE_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

const SUPPORTED_SCOPES: &[&str] = &["openid", "profile", "email", "phone", "offline_access"];

/// The scope granted for a space-separated request: `openid` is required (else
/// `None`); `profile`, `email`, `phone` and `offline_access` are kept, in that
/// order, anything else is dropped.
pub fn granted_scope(asked: &str) -> Option<String> {
    let asked: Vec<&str> = asked.split(' ').filter(|s| !s.is_empty()).collect();
    if !asked.contains(&"openid") {
        return None;
    }
    let scopes: Vec<&str> = SUPPORTED_SCOPES
        .iter()
        .copied()
        .filter(|s| asked.contains(s))
        .collect();
    Some(scopes.join(" "))
}

/// Parse `application/x-www-form-urlencoded` text (a query string or a form
/// body). `Err` names the first parameter that appears twice or holds a
/// control character.
pub fn parse(raw: &str) -> Result<BTreeMap<String, String>, Rejected> {
    let mut out = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        check(&k, &v)?;
        if v.is_empty() {
            continue;
        }
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(Rejected::Repeated(k.into_owned()));
        }
    }
    Ok(out)
}

/// Like [`parse`], but a repeated parameter keeps its first value (what an
/// upstream sends back, or a request read only to report an error properly);
/// a control character is still refused.
pub fn parse_first(raw: &[u8]) -> Result<BTreeMap<String, String>, Rejected> {
    let mut out = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(raw) {
        check(&k, &v)?;
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    Ok(out)
}

/// Append parameters to a URL that may already have a query.
pub fn append_query(base: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(base) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        Err(_) => base.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameter_is_named() {
        assert_eq!(
            parse("a=1&b=2&a=3"),
            Err(Rejected::Repeated("a".to_owned()))
        );
        assert_eq!(parse("a=1&b=").unwrap().len(), 1);
    }

    #[test]
    fn control_characters_are_refused_and_named() {
        for raw in [
            "client_id=heldout%00app",
            "client_id=a%0Ab",
            "client_id=a%0Db",
            "client_id=a%09b",
            "client_id=a%7Fb",
            "client_id=a%1Bb",
            // U+0085 (NEL), a C1 control, in UTF-8.
            "client_id=a%C2%85b",
        ] {
            let got = parse(&format!("grant_type=x&{raw}"));
            assert_eq!(got, Err(Rejected::Control("client_id".to_owned())), "{raw}");
            assert_eq!(
                parse_first(raw.as_bytes()),
                Err(Rejected::Control("client_id".to_owned())),
                "{raw}"
            );
        }
        // In a name: the name is reported escaped.
        let e = parse("a%00b=1").unwrap_err();
        assert_eq!(e.name(), "a\\0b");
        assert!(e.to_string().contains("control character"), "{e}");
        // An empty value does not hide a bad name.
        assert!(parse("a%0A=").is_err());
    }

    #[test]
    fn ordinary_text_passes() {
        let p = parse("scope=openid+profile&state=%E7%8A%B6%E6%80%81&x=%F0%9F%90%BC%20a").unwrap();
        assert_eq!(p["scope"], "openid profile");
        assert_eq!(p["state"], "状态");
        assert_eq!(p["x"], "🐼 a");
        assert!(control_free("王小明🐼✨ \u{2028}"));
        assert!(!control_free("a\u{0}"));
    }

    #[test]
    fn first_value_wins_when_lenient() {
        let p = parse_first(b"state=a&state=b&code=c").unwrap();
        assert_eq!(p["state"], "a");
        assert_eq!(p["code"], "c");
    }

    #[test]
    fn query_is_appended_not_replaced() {
        assert_eq!(
            append_query("https://app.example/cb?x=1", &[("code", "a b")]),
            "https://app.example/cb?x=1&code=a+b"
        );
    }
}

#[cfg(test)]
mod properties {
    //! `parse` over generated forms: never a panic; what an encoder wrote comes
    //! back as it was; a repeated name is always caught.

    use super::*;
    use proptest::prelude::*;

    fn encode(pairs: &[(String, String)]) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            out.append_pair(k, v);
        }
        out.finish()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_text_parses_or_names_a_parameter(raw in "\\PC{0,200}") {
            let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            match parse(&raw) {
                Ok(form) => prop_assert!(form.iter().all(|(k, v)| control_free(k) && control_free(v))),
                Err(Rejected::Repeated(name)) => {
                    prop_assert!(pairs.iter().filter(|(k, v)| *k == name && !v.is_empty()).count() >= 2)
                }
                Err(Rejected::Control(name)) => prop_assert!(pairs
                    .iter()
                    .any(|(k, v)| *k == name && !(control_free(k) && control_free(v)))),
            }
        }

        #[test]
        fn a_control_character_anywhere_is_refused_and_named(
            form in prop::collection::btree_map("[a-z_]{1,12}", "\\PC{1,40}", 1..8),
            pick in any::<prop::sample::Index>(),
            at in any::<prop::sample::Index>(),
            control in prop::sample::select(vec!['\0', '\n', '\r', '\t', '\u{1b}', '\u{7f}', '\u{85}']),
        ) {
            let mut pairs: Vec<(String, String)> = form.into_iter().collect();
            let i = pick.index(pairs.len());
            let value: Vec<char> = pairs[i].1.chars().collect();
            let cut = at.index(value.len() + 1);
            pairs[i].1 = value[..cut].iter().chain([control].iter()).chain(value[cut..].iter()).collect();
            prop_assert_eq!(parse(&encode(&pairs)), Err(Rejected::Control(pairs[i].0.clone())));
        }

        #[test]
        fn encoded_forms_round_trip(
            form in prop::collection::btree_map("[a-z_]{1,12}", "\\PC{1,40}", 0..8),
        ) {
            let pairs: Vec<(String, String)> = form.clone().into_iter().collect();
            prop_assert_eq!(parse(&encode(&pairs)), Ok(form));
        }

        #[test]
        fn a_repeated_name_is_refused(
            form in prop::collection::btree_map("[a-z_]{1,12}", "\\PC{1,40}", 1..8),
            pick in any::<prop::sample::Index>(),
            again in "\\PC{1,40}",
        ) {
            let mut pairs: Vec<(String, String)> = form.into_iter().collect();
            let name = pairs[pick.index(pairs.len())].0.clone();
            pairs.push((name.clone(), again));
            prop_assert_eq!(parse(&encode(&pairs)), Err(Rejected::Repeated(name)));
        }
    }
}
