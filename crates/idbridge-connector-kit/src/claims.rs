//! Reading a profile field out of an upstream's JSON answer by a path the
//! operator writes (`[connectors.claims]` of the `oauth2` connector):
//!
//! - `id`: the member `id` of the top-level object;
//! - `data.user.id`: members of nested objects, separated by `.`;
//! - `emails[0].address` or `emails.0.address`: an array's element by its
//!   index (from 0);
//! - a member whose name holds `.` or `[` cannot be reached (no quoting).
//!
//! A value is read as text when it is a non-empty string or an integer (a
//! numeric id `12345` becomes `"12345"`, its decimal string); as a boolean when
//! it is `true`/`false` or the strings `"true"`/`"false"`. Anything else
//! (null, an object, a float) reads as absent.

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::fmt;

#[derive(Clone, PartialEq, Eq)]
enum Step {
    Member(String),
    Index(usize),
}

/// A parsed claim path; `Deserialize` from its text, refusing a malformed one.
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimPath {
    text: String,
    steps: Vec<Step>,
}

impl ClaimPath {
    /// Parse `text` (see the module docs for the syntax).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("claim path {text:?}: {why}"));
        if text.trim().is_empty() {
            return bad("must name a member, e.g. \"id\" or \"data.user.id\"");
        }
        let mut steps = Vec::new();
        for segment in text.split('.') {
            let (name, mut rest) = match segment.find('[') {
                Some(i) => segment.split_at(i),
                None => (segment, ""),
            };
            if name.is_empty() && rest.is_empty() {
                return bad("an empty segment (two dots, or a dot at an end)");
            }
            if !name.is_empty() {
                if name.bytes().all(|b| b.is_ascii_digit()) {
                    match name.parse() {
                        Ok(i) => steps.push(Step::Index(i)),
                        Err(_) => return bad("an index too large"),
                    }
                } else if name.contains(']') || name.chars().any(char::is_control) {
                    return bad("a stray ] or a control character");
                } else {
                    steps.push(Step::Member(name.to_owned()));
                }
            }
            while !rest.is_empty() {
                let Some(end) = rest.find(']') else {
                    return bad("a [ without its ]");
                };
                let index = rest.get(1..end).unwrap_or("");
                match index.parse::<usize>() {
                    Ok(i) if index.bytes().all(|b| b.is_ascii_digit()) => {
                        steps.push(Step::Index(i))
                    }
                    _ => return bad("[…] holds an array index (0, 1, …)"),
                }
                rest = rest.get(end + 1..).unwrap_or("");
                if !rest.is_empty() && !rest.starts_with('[') {
                    return bad("after ] comes . or [");
                }
            }
        }
        Ok(Self {
            text: text.to_owned(),
            steps,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value at this path, if every step exists.
    pub fn get<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        self.steps.iter().try_fold(value, |v, step| match step {
            Step::Member(name) => v.as_object()?.get(name),
            Step::Index(i) => v.as_array()?.get(*i),
        })
    }

    /// A non-empty string, or an integer as its decimal string.
    pub fn text(&self, value: &Value) -> Option<String> {
        match self.get(value)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
            _ => None,
        }
    }

    /// `true`/`false`, or the strings `"true"`/`"false"`.
    pub fn boolean(&self, value: &Value) -> Option<bool> {
        match self.get(value)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "true" => Some(true),
            Value::String(s) if s == "false" => Some(false),
            _ => None,
        }
    }
}

impl fmt::Debug for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClaimPath({:?})", self.text)
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for ClaimPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ClaimPath::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn path(p: &str) -> ClaimPath {
        ClaimPath::parse(p).unwrap()
    }

    #[test]
    fn members_and_indexes_are_read() {
        let doc = json!({
            "id": 583231, "login": "octocat", "site_admin": false,
            "data": {"user": {"id": "u-1", "verified": "true"}},
            "emails": [{"address": "a@example.test"}, {"address": "b@example.test"}],
            "grid": [[1, 2], [3, 4]], "float": 1.5, "empty": "", "null": null
        });
        assert_eq!(path("id").text(&doc).as_deref(), Some("583231"));
        assert_eq!(path("login").text(&doc).as_deref(), Some("octocat"));
        assert_eq!(path("data.user.id").text(&doc).as_deref(), Some("u-1"));
        assert_eq!(path("data.user.verified").boolean(&doc), Some(true));
        assert_eq!(path("site_admin").boolean(&doc), Some(false));
        assert_eq!(
            path("emails[1].address").text(&doc).as_deref(),
            Some("b@example.test")
        );
        assert_eq!(
            path("emails.0.address").text(&doc).as_deref(),
            Some("a@example.test")
        );
        assert_eq!(path("grid[1][0]").text(&doc).as_deref(), Some("3"));
        for absent in [
            "float",
            "empty",
            "null",
            "data",
            "emails[5].address",
            "id.x",
            "nope",
        ] {
            assert_eq!(path(absent).text(&doc), None, "{absent}");
        }
        assert_eq!(path("login").boolean(&doc), None);
    }

    #[test]
    fn malformed_paths_are_refused() {
        for bad in [
            "", " ", "a..b", ".a", "a.", "a[", "a[x]", "a[-1]", "a]b", "a[0]b",
        ] {
            assert!(ClaimPath::parse(bad).is_err(), "{bad:?} accepted");
        }
        let e: Result<ClaimPath, _> = serde_json::from_value(json!("a..b"));
        assert!(e.unwrap_err().to_string().contains("a..b"));
    }
}
