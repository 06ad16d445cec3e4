//! What a connector says about an upstream call that failed below HTTP (no
//! connection, TLS, a reset): the error's whole chain of causes on one line, so
//! the operator's log line names the real cause ("tcp connect error: Connection
//! refused"), not only the outermost "error sending request".

/// The error and its sources, joined by `: ` (repeats dropped, at most five
/// parts, at most 240 characters then `…`), e.g. "error sending request: client
/// error (Connect): tcp connect error: Connection refused".
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(s) = source {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        if parts.len() >= 5 {
            break;
        }
        source = s.source();
    }
    let joined = parts.join(": ");
    if joined.chars().count() > 240 {
        joined.chars().take(240).collect::<String>() + "…"
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[derive(Debug)]
    struct Layer(String, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn the_chain_is_joined_without_repeats_and_bounded() {
        let layer = |text: &str, source| Layer(text.to_owned(), source);
        let e = layer(
            "error sending request",
            Some(Box::new(layer(
                "client error (Connect)",
                Some(Box::new(layer(
                    "client error (Connect)",
                    Some(Box::new(layer("Connection refused", None))),
                ))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "error sending request: client error (Connect): Connection refused"
        );
        let long = Layer("x".repeat(300), None);
        let text = error_chain(&long);
        assert_eq!(text.chars().count(), 241);
        assert!(text.ends_with('…'));
    }
}
