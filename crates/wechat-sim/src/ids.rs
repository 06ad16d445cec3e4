//! Identifiers: deterministic openids/unionids (so a test can predict them) and
//! random codes, tokens and request ids.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;
use ring::hmac;

/// 28 characters starting with `o`, like WeChat's.
fn derive(key: &str, purpose: &str, user_id: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes());
    let tag = hmac::sign(&key, format!("{purpose}\0{user_id}").as_bytes());
    let encoded = URL_SAFE_NO_PAD.encode(tag.as_ref());
    let body: String = encoded.chars().take(27).collect();
    format!("o{body}")
}

/// The user's openid in one app: differs between apps.
pub(crate) fn openid(appid: &str, user_id: &str) -> String {
    derive(appid, "openid", user_id)
}

/// The user's unionid under one Open Platform account: the same for every app bound to it.
pub(crate) fn unionid(open_platform_id: &str, user_id: &str) -> String {
    derive(open_platform_id, "unionid", user_id)
}

/// The virtual openid a snapshot-mode page gets.
pub(crate) fn snapshot_openid(appid: &str, user_id: &str) -> String {
    derive(appid, "snapshot-openid", user_id)
}

/// The virtual unionid a snapshot-mode page gets.
pub(crate) fn snapshot_unionid(open_platform_id: &str, user_id: &str) -> String {
    derive(open_platform_id, "snapshot-unionid", user_id)
}

/// An authorization code: 32 alphanumeric characters.
pub(crate) fn code() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
}

/// A token: `len` URL-safe characters.
pub(crate) fn token(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill(bytes.as_mut_slice());
    URL_SAFE_NO_PAD.encode(&bytes).chars().take(len).collect()
}

/// WeChat's request id, appended to every errmsg: `rid: 6650b8e8-1f2a3b4c-5d6e7f80`.
pub(crate) fn rid() -> String {
    let mut rng = rand::thread_rng();
    format!(
        "{:08x}-{:08x}-{:08x}",
        rng.gen::<u32>(),
        rng.gen::<u32>(),
        rng.gen::<u32>()
    )
}

/// A short random id for a pending authorize page.
pub(crate) fn flow_id() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openids_look_like_wechat_ones_and_are_stable() {
        let a = openid("wx1", "alice");
        assert_eq!(a.len(), 28);
        assert!(a.starts_with('o'));
        assert_eq!(a, openid("wx1", "alice"));
        assert_ne!(a, openid("wx2", "alice"));
        assert_ne!(a, snapshot_openid("wx1", "alice"));
        assert_ne!(unionid("gh_a", "alice"), unionid("gh_b", "alice"));
    }
}
