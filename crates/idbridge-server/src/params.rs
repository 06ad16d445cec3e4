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
            if let Err(name) = parse(&raw) {
                prop_assert!(raw.contains('&') || raw.contains('='), "{name:?} from {raw:?}");
            }
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
            prop_assert_eq!(parse(&encode(&pairs)), Err(name));
        }
    }
}
