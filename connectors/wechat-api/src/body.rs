//! Owns turning an HTTP answer from WeChat into either a JSON object or a
//! [`WeChatError`]: status handling, the body size cap, parsing by content (never by
//! content type), errcode detection, and redaction of secrets, codes and tokens from
//! anything that ends up in an error.

use crate::error::{Api, WeChatError};
use idbridge_core::ErrorKind;
use serde_json::{Map, Value};

/// Bodies larger than this are refused (WeChat's answers are a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest excerpt of an unexpected body kept in an error.
const EXCERPT_CHARS: usize = 120;
/// Longest WeChat errmsg kept in an error.
const ERRMSG_CHARS: usize = 300;

/// The values a request carried that must never appear in an error or a log: the
/// secret, the code, tokens. Also redacts the values of well-known parameter names
/// (`secret=…`, `"access_token":"…"`) whatever they are.
#[derive(Default)]
pub(crate) struct Sensitive<'a> {
    values: Vec<&'a str>,
}

impl<'a> Sensitive<'a> {
    pub(crate) fn new(values: &[&'a str]) -> Self {
        Self {
            values: values.iter().copied().filter(|v| !v.is_empty()).collect(),
        }
    }

    /// `text` with every sensitive value replaced by `[redacted]`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        // Longest first, so a value containing another is replaced whole.
        let mut values = self.values.clone();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        for value in values {
            if out.contains(value) {
                out = out.replace(value, REDACTED);
            }
        }
        redact_named_values(&out)
    }
}

const REDACTED: &str = "[redacted]";
const SENSITIVE_NAMES: [&str; 6] = [
    "secret",
    "appsecret",
    "code",
    "access_token",
    "refresh_token",
    "token",
];

/// Replaces the value after `name=` / `name":"` / `name: ` for the names above, where
/// `name` is a whole word (so `errcode` is left alone).
fn redact_named_values(text: &str) -> String {
    let bytes = text.as_bytes();
    // Lower-cased bytes: same length and offsets as `text`; compared as bytes so a
    // multi-byte character never puts a slice on a non-boundary.
    let lower = text.to_ascii_lowercase().into_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let Some(name) = SENSITIVE_NAMES
            .iter()
            .filter(|n| lower[i..].starts_with(n.as_bytes()))
            .max_by_key(|n| n.len())
        else {
            i += 1;
            continue;
        };
        let word_start = i == 0 || !is_word_byte(bytes[i - 1]);
        let mut j = i + name.len();
        if !word_start || j < bytes.len() && is_word_byte(bytes[j]) {
            i += 1;
            continue;
        }
        // Optional closing quote, spaces, then '=' or ':', spaces, optional opening quote.
        if j < bytes.len() && matches!(bytes[j], b'"' | b'\'') {
            j += 1;
        }
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        if j >= bytes.len() || !matches!(bytes[j], b'=' | b':') {
            i += 1;
            continue;
        }
        j += 1;
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        if j < bytes.len() && matches!(bytes[j], b'"' | b'\'') {
            j += 1;
        }
        let value_start = j;
        while j < bytes.len() && !is_value_end(bytes[j]) {
            j += 1;
        }
        if j > value_start {
            out.push_str(&text[copied..value_start]);
            out.push_str(REDACTED);
            copied = j;
        }
        i = j.max(i + 1);
    }
    out.push_str(&text[copied..]);
    out
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_value_end(b: u8) -> bool {
    b.is_ascii_whitespace()
        || matches!(
            b,
            b'&' | b'"' | b'\'' | b'<' | b'>' | b'#' | b',' | b'}' | b';'
        )
}

/// A short, printable, redacted excerpt of an unexpected body.
pub(crate) fn excerpt(body: &[u8], sensitive: &Sensitive<'_>) -> String {
    let text = String::from_utf8_lossy(body);
    let redacted = sensitive.redact(&text);
    let mut out = String::new();
    let mut last_space = true;
    let mut count = 0;
    for ch in redacted.chars() {
        let ch = if ch.is_control() || ch.is_whitespace() {
            ' '
        } else {
            ch
        };
        if ch == ' ' && last_space {
            continue;
        }
        last_space = ch == ' ';
        if count == EXCERPT_CHARS {
            out.push('…');
            break;
        }
        out.push(ch);
        count += 1;
    }
    out.trim_end().to_owned()
}

/// WeChat's errmsg, kept verbatim (with its `rid:`) except for redaction and a length cap.
fn clean_errmsg(msg: &str, sensitive: &Sensitive<'_>) -> String {
    let redacted = sensitive.redact(msg);
    if redacted.chars().count() > ERRMSG_CHARS {
        let mut cut: String = redacted.chars().take(ERRMSG_CHARS).collect();
        cut.push('…');
        cut
    } else {
        redacted
    }
}

/// What came back, as far as the body parser needs it.
pub(crate) struct Answer<'b> {
    pub status: u16,
    pub content_type: Option<&'b str>,
    /// The host a 3xx pointed to (never the full Location: it may carry a token).
    pub location_host: Option<&'b str>,
    pub body: &'b [u8],
}

/// Status → body → JSON object → errcode. Returns the object when WeChat reported no
/// error: no `errcode`, or `errcode: 0`. Whether `errcode: 0` alone is a success is the
/// caller's decision (only `sns/auth` and `custom/send` document it).
pub(crate) fn parse_answer(
    api: Api,
    host: &str,
    answer: &Answer<'_>,
    sensitive: &Sensitive<'_>,
) -> Result<Map<String, Value>, WeChatError> {
    let status = answer.status;
    if (300..400).contains(&status) {
        let target = answer.location_host.unwrap_or("an unparseable Location");
        return Err(WeChatError::local(
            api,
            ErrorKind::BadResponse,
            Some(format!("HTTP {status} redirect to {target} (not followed)")),
            format!(
                "{host} answered {api} with a redirect to {target}, which is never followed: \
                 check api_base_url (scheme, host, path) and any proxy in between"
            ),
        ));
    }
    if !(200..300).contains(&status) {
        let what = format!("HTTP {status}{}", describe_body(answer, sensitive));
        let (kind, fix) = if status >= 500 {
            (
                ErrorKind::UpstreamUnavailable,
                format!(
                    "{host} answered {api} with HTTP {status}: WeChat (or a proxy in between) \
                     is failing; retry later"
                ),
            )
        } else {
            (
                ErrorKind::BadResponse,
                format!(
                    "{host} answered {api} with HTTP {status}; WeChat answers errors with \
                     HTTP 200, so check api_base_url and any proxy in between"
                ),
            )
        };
        return Err(WeChatError::local(api, kind, Some(what), fix));
    }

    let object = match parse_json(answer.body) {
        Some(Value::Object(object)) => object,
        Some(_) => {
            return Err(bad_body(
                api,
                host,
                format!(
                    "JSON that is not an object{}",
                    describe_body(answer, sensitive)
                ),
            ))
        }
        None => {
            let what = if answer.body.iter().all(u8::is_ascii_whitespace) {
                format!("an empty body{}", content_type_note(answer))
            } else {
                format!(
                    "a body that is not JSON{}",
                    describe_body(answer, sensitive)
                )
            };
            return Err(bad_body(api, host, what));
        }
    };

    match object.get("errcode") {
        None | Some(Value::Null) => Ok(object),
        Some(raw) => match as_i64(raw) {
            Some(0) => Ok(object),
            Some(code) => {
                let errmsg = match object.get("errmsg") {
                    Some(Value::String(msg)) => Some(clean_errmsg(msg, sensitive)),
                    Some(Value::Null) | None => None,
                    Some(other) => Some(clean_errmsg(&other.to_string(), sensitive)),
                };
                Err(WeChatError::from_errcode(api, code, errmsg))
            }
            None => Err(bad_body(
                api,
                host,
                "an errcode that is not an integer".to_owned(),
            )),
        },
    }
}

/// What the client makes of one raw answer from `host` to `api`: the JSON object of
/// a success (no `errcode`, or `errcode: 0`) or the typed error, with no request
/// secrets to redact. Public so that fuzzing (tests/fuzz) and connector tests can
/// feed it answers without a server.
pub fn classify_answer(
    api: Api,
    host: &str,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Map<String, Value>, WeChatError> {
    let answer = Answer {
        status,
        content_type,
        location_host: None,
        body,
    };
    parse_answer(api, host, &answer, &Sensitive::default())
}

/// A BadResponse for a body we cannot use.
pub(crate) fn bad_body(api: Api, host: &str, what: String) -> WeChatError {
    WeChatError::local(
        api,
        ErrorKind::BadResponse,
        Some(format!("HTTP 200 with {what}")),
        format!(
            "{host} answered {api} with something that is not a WeChat answer: check that \
             api_base_url points at WeChat, and for a proxy or captive portal in between"
        ),
    )
}

fn parse_json(body: &[u8]) -> Option<Value> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    serde_json::from_slice(body).ok()
}

fn content_type_note(answer: &Answer<'_>) -> String {
    match answer.content_type {
        Some(ct) => format!(
            " (content-type {})",
            excerpt(ct.as_bytes(), &Sensitive::default())
        ),
        None => " (no content-type)".to_owned(),
    }
}

fn describe_body(answer: &Answer<'_>, sensitive: &Sensitive<'_>) -> String {
    let note = content_type_note(answer);
    let len = answer.body.len();
    if len == 0 {
        return format!("{note}, empty body");
    }
    let utf8 = if std::str::from_utf8(answer.body).is_ok() {
        ""
    } else {
        ", not UTF-8"
    };
    format!(
        "{note}, {len} bytes{utf8}: {:?}",
        excerpt(answer.body, sensitive)
    )
}

/// An integer given as a JSON number or a numeric string.
pub(crate) fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &[u8]) -> Answer<'_> {
        Answer {
            status: 200,
            content_type: Some("text/plain"),
            location_host: None,
            body,
        }
    }

    #[test]
    fn redacts_known_values_and_named_parameters() {
        let s = Sensitive::new(&["SEKRET12345", "CODE98765"]);
        let text = "GET /sns/oauth2/access_token?appid=wx1&secret=SEKRET12345&code=CODE98765 \
                    other SEKRET12345";
        let out = s.redact(text);
        assert!(!out.contains("SEKRET12345"), "{out}");
        assert!(!out.contains("CODE98765"), "{out}");
        assert!(out.contains("appid=wx1"), "{out}");
    }

    #[test]
    fn redacts_unknown_values_by_name_but_not_errcode() {
        let s = Sensitive::default();
        let out = s.redact(r#"{"errcode":40029,"access_token":"AT-xyz","refresh_token": "RT-1", "code":"c0de"} secret=abc&x=1"#);
        assert!(out.contains("\"errcode\":40029"), "{out}");
        assert!(!out.contains("AT-xyz"), "{out}");
        assert!(!out.contains("RT-1"), "{out}");
        assert!(!out.contains("c0de"), "{out}");
        assert!(!out.contains("abc"), "{out}");
        assert!(out.contains("x=1"), "{out}");
        assert_eq!(
            s.redact("response_type=code&scope=x"),
            "response_type=code&scope=x"
        );
    }

    #[test]
    fn excerpt_is_short_and_printable() {
        let body = format!("<html>\n\t<body>{}</body></html>", "x".repeat(500));
        let e = excerpt(body.as_bytes(), &Sensitive::default());
        assert!(e.chars().count() <= EXCERPT_CHARS + 1);
        assert!(e.starts_with("<html> <body>xxx"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn errcode_zero_is_not_an_error_here() {
        let obj = parse_answer(
            Api::SnsAuth,
            "h",
            &ok(br#"{"errcode":0,"errmsg":"ok"}"#),
            &Sensitive::default(),
        );
        assert!(obj.is_ok());
    }

    #[test]
    fn errcode_as_string_is_understood() {
        let e = parse_answer(
            Api::SnsAccessToken,
            "h",
            &ok(br#"{"errcode":"40029","errmsg":"invalid code"}"#),
            &Sensitive::default(),
        )
        .err();
        assert_eq!(e.and_then(|e| e.errcode), Some(40029));
    }

    #[test]
    fn bom_and_whitespace_are_tolerated() {
        let obj = parse_answer(
            Api::CgiToken,
            "h",
            &ok(b"\xEF\xBB\xBF {\"access_token\":\"a\",\"expires_in\":7200}\n"),
            &Sensitive::default(),
        );
        assert!(obj.is_ok());
    }

    #[test]
    fn numbers_and_numeric_strings() {
        assert_eq!(as_i64(&serde_json::json!(7200)), Some(7200));
        assert_eq!(as_i64(&serde_json::json!(7200.0)), Some(7200));
        assert_eq!(as_i64(&serde_json::json!("7200")), Some(7200));
        assert_eq!(as_i64(&serde_json::json!("x")), None);
        assert_eq!(as_i64(&serde_json::json!(true)), None);
    }
}

#[cfg(test)]
mod properties {
    //! `parse_answer` over generated answers: it never panics, classifies every
    //! status the same way, agrees with `errcode`, and never lets a secret of the
    //! request into an error.

    use super::*;
    use proptest::prelude::*;

    fn answer(status: u16, body: &[u8]) -> Answer<'_> {
        Answer {
            status,
            content_type: Some("text/plain"),
            location_host: None,
            body,
        }
    }

    /// Secrets as WeChat's are shaped; upper case and digits, so that no fixed
    /// text of an error (`[redacted]`, API paths) can contain one.
    fn secret() -> impl Strategy<Value = String> {
        "[A-Z0-9]{8,24}"
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_answer_is_classified_without_panicking(
            status in 100u16..600,
            content_type in prop::option::of("\\PC{0,40}"),
            body in prop::collection::vec(any::<u8>(), 0..400),
        ) {
            let a = Answer { status, content_type: content_type.as_deref(), location_host: None, body: &body };
            let got = parse_answer(Api::SnsAccessToken, "api.weixin.qq.com", &a, &Sensitive::default());
            if !(200..300).contains(&status) {
                let e = got.err();
                prop_assert!(e.is_some(), "HTTP {} accepted", status);
                let kind = e.map(|e| e.kind);
                if status >= 500 {
                    prop_assert_eq!(kind, Some(ErrorKind::UpstreamUnavailable));
                } else {
                    prop_assert_eq!(kind, Some(ErrorKind::BadResponse));
                }
            }
        }

        #[test]
        fn errcode_decides(
            code in any::<i32>(),
            fields in prop::collection::btree_map("[a-z_]{1,10}", "\\PC{0,20}", 0..5),
        ) {
            let mut object: Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            object.insert("errcode".into(), Value::from(code));
            let body = serde_json::to_vec(&object).unwrap_or_default();
            let got = parse_answer(Api::SnsUserinfo, "h", &answer(200, &body), &Sensitive::default());
            if code == 0 {
                prop_assert_eq!(got.ok(), Some(object));
            } else {
                prop_assert_eq!(got.err().and_then(|e| e.errcode), Some(i64::from(code)));
            }
        }

        #[test]
        fn a_secret_in_an_unexpected_body_never_reaches_the_error(
            secret in secret(),
            before in prop::collection::vec(any::<u8>(), 0..200),
            after in prop::collection::vec(any::<u8>(), 0..200),
            status in prop::sample::select(vec![200u16, 403, 404, 500, 502]),
        ) {
            let mut body = before;
            body.extend_from_slice(secret.as_bytes());
            body.extend_from_slice(&after);
            let sensitive = Sensitive::new(&[secret.as_str()]);
            if let Err(e) = parse_answer(Api::SnsAccessToken, "h", &answer(status, &body), &sensitive) {
                let shown = format!("{e} {e:?}");
                prop_assert!(!shown.contains(&secret), "{}", shown);
            }
        }

        #[test]
        fn a_secret_in_errmsg_never_reaches_the_error(
            secret in secret(),
            before in "\\PC{0,100}",
            after in "\\PC{0,100}",
            code in 1i64..100_000,
        ) {
            let body = serde_json::to_vec(&serde_json::json!({
                "errcode": code,
                "errmsg": format!("{before}{secret}{after}"),
            }))
            .unwrap_or_default();
            let sensitive = Sensitive::new(&[secret.as_str()]);
            let e = parse_answer(Api::SnsAccessToken, "h", &answer(200, &body), &sensitive).err();
            let shown = e.map(|e| format!("{e} {e:?}")).unwrap_or_default();
            prop_assert!(shown.contains(&format!("errcode={code}")), "{}", shown);
            prop_assert!(!shown.contains(&secret), "{}", shown);
        }

        #[test]
        fn excerpts_are_short_and_printable(body in prop::collection::vec(any::<u8>(), 0..1000)) {
            let out = excerpt(&body, &Sensitive::default());
            prop_assert!(out.chars().count() <= EXCERPT_CHARS + 1, "{}", out);
            prop_assert!(!out.chars().any(char::is_control), "{:?}", out);
        }
    }
}
