//! Owns the browser-facing WeChat URLs (qrconnect, Official Account authorize) and the
//! syntax checks `idbridge doctor` runs on appid, secret and state. Pure functions only.
//!
//! Parameter order is fixed (`appid`, `redirect_uri`, `response_type`, `scope`,
//! `state`, then `lang` on qrconnect, then `#wechat_redirect`) because some WeChat
//! clients match the link against a pattern. Every value is percent-encoded exactly
//! once; `redirect_uri` must be passed in raw, never pre-encoded.

/// Where WeChat's authorize pages live (`/connect/qrconnect`, `/connect/oauth2/authorize`).
pub const DEFAULT_OPEN_BASE_URL: &str = "https://open.weixin.qq.com";

/// Where WeChat's server-to-server API lives (`/sns/...`, `/cgi-bin/...`).
pub const DEFAULT_API_BASE_URL: &str = "https://api.weixin.qq.com";

/// The website-app (网站应用) QR login page: `scope=snsapi_login`.
///
/// `lang` is WeChat's page language, `cn` or `en`; `None` leaves it to WeChat.
pub fn qrconnect_url(
    open_base_url: &str,
    appid: &str,
    redirect_uri: &str,
    state: &str,
    lang: Option<&str>,
) -> String {
    let mut url = authorize_prefix(
        open_base_url,
        "/connect/qrconnect",
        appid,
        redirect_uri,
        "snsapi_login",
        state,
    );
    if let Some(lang) = lang {
        url.push_str("&lang=");
        url.push_str(&encode_component(lang));
    }
    url.push_str("#wechat_redirect");
    url
}

/// The Official Account (公众号) in-WeChat authorization page.
///
/// `scope` is `snsapi_base` (silent, openid only) or `snsapi_userinfo` (asks, profile).
pub fn oauth2_authorize_url(
    open_base_url: &str,
    appid: &str,
    redirect_uri: &str,
    scope: &str,
    state: &str,
) -> String {
    let mut url = authorize_prefix(
        open_base_url,
        "/connect/oauth2/authorize",
        appid,
        redirect_uri,
        scope,
        state,
    );
    url.push_str("#wechat_redirect");
    url
}

fn authorize_prefix(
    open_base_url: &str,
    path: &str,
    appid: &str,
    redirect_uri: &str,
    scope: &str,
    state: &str,
) -> String {
    format!(
        "{base}{path}?appid={appid}&redirect_uri={redirect_uri}&response_type=code&scope={scope}&state={state}",
        base = open_base_url.trim_end_matches('/'),
        appid = encode_component(appid),
        redirect_uri = encode_component(redirect_uri),
        scope = encode_component(scope),
        state = encode_component(state),
    )
}

/// Percent-encodes every byte outside RFC 3986's unreserved set (`A-Z a-z 0-9 - . _ ~`).
pub fn encode_component(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len() * 3);
    for &byte in value.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    out
}

/// WeChat's documented `state`: `a-zA-Z0-9`, 1 to 128 bytes. Longer gives "state参数过长".
pub fn is_valid_state(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A WeChat appid: `wx` followed by 16 lowercase hex digits (e.g. `wx9619034219c838ab`).
pub fn is_valid_appid(s: &str) -> bool {
    s.len() == 18
        && s.starts_with("wx")
        && s.bytes()
            .skip(2)
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A WeChat AppSecret as the console shows it: 32 hex digits. Case is not checked,
/// because a secret pasted in upper case is still the same secret to a human, and
/// doctor should point at the real problem (length, stray characters, whitespace).
pub fn is_valid_secret(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qrconnect_url_has_wechats_parameter_order_and_fragment() {
        let url = qrconnect_url(
            "https://open.weixin.qq.com",
            "wx0123456789abcdef",
            "https://a.example/cb?x=1",
            "AbC123",
            Some("en"),
        );
        assert_eq!(
            url,
            "https://open.weixin.qq.com/connect/qrconnect?appid=wx0123456789abcdef\
             &redirect_uri=https%3A%2F%2Fa.example%2Fcb%3Fx%3D1&response_type=code\
             &scope=snsapi_login&state=AbC123&lang=en#wechat_redirect"
        );
    }

    #[test]
    fn qrconnect_url_without_lang_and_with_trailing_slash_base() {
        let url = qrconnect_url(
            "http://127.0.0.1:9000/",
            "wx0123456789abcdef",
            "https://a.example/cb",
            "s",
            None,
        );
        assert_eq!(
            url,
            "http://127.0.0.1:9000/connect/qrconnect?appid=wx0123456789abcdef\
             &redirect_uri=https%3A%2F%2Fa.example%2Fcb&response_type=code\
             &scope=snsapi_login&state=s#wechat_redirect"
        );
    }

    #[test]
    fn official_account_url_is_exact() {
        let url = oauth2_authorize_url(
            DEFAULT_OPEN_BASE_URL,
            "wx0123456789abcdef",
            "https://a.example/cb?x=1",
            "snsapi_userinfo",
            "xyz",
        );
        assert_eq!(
            url,
            "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wx0123456789abcdef\
             &redirect_uri=https%3A%2F%2Fa.example%2Fcb%3Fx%3D1&response_type=code\
             &scope=snsapi_userinfo&state=xyz#wechat_redirect"
        );
    }

    #[test]
    fn redirect_uri_is_encoded_exactly_once() {
        // An already-encoded character is data, so its '%' is encoded again: the
        // builder never "helpfully" skips encoding, which is what keeps it single.
        assert_eq!(
            encode_component("https://a.example/cb?x=1"),
            "https%3A%2F%2Fa.example%2Fcb%3Fx%3D1"
        );
        let url = oauth2_authorize_url(
            DEFAULT_OPEN_BASE_URL,
            "wx0123456789abcdef",
            "https://a.example/cb?x=1",
            "snsapi_base",
            "s",
        );
        assert!(!url.contains("%25"), "double-encoded: {url}");
        assert_eq!(url.matches("redirect_uri=").count(), 1);
    }

    #[test]
    fn encoding_covers_everything_outside_unreserved() {
        assert_eq!(encode_component("aZ09-._~"), "aZ09-._~");
        assert_eq!(encode_component(" +&=#/%"), "%20%2B%26%3D%23%2F%25");
        assert_eq!(encode_component("回"), "%E5%9B%9E");
    }

    #[test]
    fn state_rules() {
        assert!(is_valid_state("a"));
        assert!(is_valid_state(&"A1".repeat(64)));
        assert!(!is_valid_state(&"a".repeat(129)));
        assert!(!is_valid_state(""));
        assert!(!is_valid_state("abc-def"));
        assert!(!is_valid_state("abc def"));
        assert!(!is_valid_state("状态"));
    }

    #[test]
    fn appid_rules() {
        assert!(is_valid_appid("wx9619034219c838ab"));
        assert!(!is_valid_appid("wx9619034219C838AB"));
        assert!(!is_valid_appid("wx9619034219c838"));
        assert!(!is_valid_appid("wx9619034219c838abc"));
        assert!(!is_valid_appid("gh_9619034219c838"));
        assert!(!is_valid_appid("wx9619034219c838xx"));
        assert!(!is_valid_appid(" wx9619034219c838a"));
    }

    #[test]
    fn secret_rules() {
        assert!(is_valid_secret("0123456789abcdef0123456789abcdef"));
        assert!(is_valid_secret("0123456789ABCDEF0123456789ABCDEF"));
        assert!(!is_valid_secret("0123456789abcdef0123456789abcde"));
        assert!(!is_valid_secret("0123456789abcdef0123456789abcdef "));
        assert!(!is_valid_secret("0123456789abcdef0123456789abcdeg"));
    }
}
