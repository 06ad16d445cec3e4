//! Admin API tokens: the rules a configured token must meet, the warnings
//! `doctor` gives about weak ones, and the set the server checks bearer tokens
//! against — SHA-256 hashes only, compared in constant time. A token is named in
//! logs and the audit log by a prefix of its hash (`token:…`), never by itself.

use idbridge_tokens::{constant_time_eq, hash_token, random_token, TokenError};

/// Shorter tokens stop start-up.
pub const MIN_TOKEN_LEN: usize = 24;
/// Shorter tokens get a `doctor` warning. `idbridge admin generate-token` makes 43.
pub const RECOMMENDED_TOKEN_LEN: usize = 32;
/// Fewer distinct characters than this look typed, not random: a `doctor` warning.
const MIN_DISTINCT_CHARS: usize = 10;

/// The non-secret name of a token in logs and the audit log: `token:` and the
/// first 10 characters of the base64url SHA-256 of the token.
pub fn token_id(token: &str) -> String {
    let hash = hash_token(token);
    format!("token:{}", hash.chars().take(10).collect::<String>())
}

/// How config errors and `doctor` name the `i`-th configured token.
pub fn config_key(token_file: Option<&str>, i: usize) -> String {
    match token_file {
        Some(path) => format!("admin.token_file ({path}, token {})", i + 1),
        None => format!("admin.tokens[{i}]"),
    }
}

/// A new random admin token (32 bytes, base64url: 43 characters).
pub fn generate() -> Result<String, TokenError> {
    random_token(32)
}

/// Why a configured token cannot be used, if it cannot. Tokens travel in an
/// `Authorization: Bearer` header, so they are RFC 6750 `b64token` characters.
pub fn check(token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "too short ({} characters): use at least {MIN_TOKEN_LEN} random characters (`idbridge admin generate-token` prints one)",
            token.len()
        ));
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
    if !token.bytes().all(allowed) {
        return Err(
            "may contain only letters, digits and - . _ ~ + / = (it is sent in an HTTP header)"
                .into(),
        );
    }
    Ok(())
}

/// `doctor` warnings about usable but weak tokens: (index, message).
pub fn warnings(tokens: &[String]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if check(t).is_err() {
            continue; // already an error
        }
        let mut distinct: Vec<char> = t.chars().collect();
        distinct.sort_unstable();
        distinct.dedup();
        if t.len() < RECOMMENDED_TOKEN_LEN {
            out.push((
                i,
                format!(
                    "short ({} characters): use at least {RECOMMENDED_TOKEN_LEN}; `idbridge admin generate-token` prints one",
                    t.len()
                ),
            ));
        }
        if distinct.len() < MIN_DISTINCT_CHARS {
            out.push((
                i,
                format!(
                    "weak: only {} distinct characters, which looks chosen rather than random; use `idbridge admin generate-token`",
                    distinct.len()
                ),
            ));
        }
        if tokens.iter().take(i).any(|earlier| earlier == t) {
            out.push((i, "the same token is listed twice".into()));
        }
    }
    out
}

/// The configured tokens, as hashes. Empty: the admin API is off.
pub struct AdminTokens {
    /// (hash, id) per token.
    hashes: Vec<(String, String)>,
}

impl std::fmt::Debug for AdminTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminTokens")
            .field(
                "ids",
                &self.hashes.iter().map(|(_, id)| id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl AdminTokens {
    /// Hash the configured tokens; every unusable one is an error naming its
    /// index in `admin.tokens` (never its value).
    pub fn new(tokens: &[String]) -> Result<Self, Vec<idbridge_core::ConfigError>> {
        let mut errors = Vec::new();
        let mut hashes = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            match check(t) {
                Ok(()) => hashes.push((hash_token(t), token_id(t))),
                Err(msg) => errors.push(idbridge_core::ConfigError::new(
                    format!("admin.tokens[{i}]"),
                    msg,
                )),
            }
        }
        if errors.is_empty() {
            Ok(Self { hashes })
        } else {
            Err(errors)
        }
    }

    /// Is the admin API on?
    pub fn enabled(&self) -> bool {
        !self.hashes.is_empty()
    }

    /// The id of the configured token equal to `presented`, if any. Every
    /// configured hash is compared, in constant time.
    pub fn verify(&self, presented: &str) -> Option<&str> {
        let presented = hash_token(presented);
        let mut found = None;
        for (hash, id) in &self.hashes {
            if constant_time_eq(presented.as_bytes(), hash.as_bytes()) {
                found = Some(id.as_str());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "Zq4sV0e1cM8nR2tY7uW3xA5bD6fG9hJk";

    #[test]
    fn short_or_unsendable_tokens_are_refused_and_never_echoed() {
        let short = "abc123XYZ";
        let err = check(short).unwrap_err();
        assert!(err.contains("too short"), "{err}");
        assert!(!err.contains(short));
        assert!(check("a token with spaces in it, long enough").is_err());
        assert!(check(GOOD).is_ok());
        let errors = AdminTokens::new(&[GOOD.into(), short.into()]).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "admin.tokens[1]");
        assert!(!errors[0].message.contains(short));
    }

    #[test]
    fn weak_short_and_repeated_tokens_are_warned_about() {
        let weak = "aaaaaaaaaabbbbbbbbbbccccccccccdd".to_owned();
        let short = "Zq4sV0e1cM8nR2tY7uW3xA5b".to_owned();
        let w = warnings(&[GOOD.into(), weak, short, GOOD.into()]);
        let at = |i: usize| w.iter().filter(|(j, _)| *j == i).count();
        assert_eq!((at(0), at(1), at(2), at(3)), (0, 1, 1, 1), "{w:?}");
        assert!(w.iter().any(|(_, m)| m.contains("weak")));
        assert!(w.iter().any(|(_, m)| m.contains("short")));
        assert!(w.iter().any(|(_, m)| m.contains("twice")));
        let generated = generate().unwrap();
        assert_eq!(generated.len(), 43);
        assert!(warnings(&[generated]).is_empty());
    }

    #[test]
    fn only_configured_tokens_verify_and_are_named_by_hash() {
        let other = generate().unwrap();
        let set = AdminTokens::new(&[GOOD.into(), other.clone()]).unwrap();
        assert!(set.enabled());
        assert_eq!(set.verify(GOOD), Some(token_id(GOOD).as_str()));
        assert_eq!(set.verify(&other), Some(token_id(&other).as_str()));
        assert_eq!(set.verify(&GOOD[1..]), None);
        assert_eq!(set.verify(""), None);
        let id = token_id(GOOD);
        assert!(id.starts_with("token:") && id.len() == 16, "{id}");
        assert!(!format!("{set:?}").contains(GOOD));
        assert!(!AdminTokens::new(&[]).unwrap().enabled());
    }
}
