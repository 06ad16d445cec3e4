//! Request parameters, strictly: OAuth forbids repeating a parameter
//! (RFC 6749 §3.1), and empty values count as absent.

use std::collections::BTreeMap;

/// Parse `application/x-www-form-urlencoded` text. `Err(name)` names the first
/// parameter that appears twice.
pub fn parse(raw: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        if v.is_empty() {
            continue;
        }
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(k.into_owned());
        }
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
        assert_eq!(parse("a=1&b=2&a=3"), Err("a".to_owned()));
        assert_eq!(parse("a=1&b=").unwrap().len(), 1);
    }

    #[test]
    fn query_is_appended_not_replaced() {
        assert_eq!(
            append_query("https://app.example/cb?x=1", &[("code", "a b")]),
            "https://app.example/cb?x=1&code=a+b"
        );
    }
}
