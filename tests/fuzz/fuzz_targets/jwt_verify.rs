//! Any bytes as a compact JWS: verification answers without panicking, and
//! accepts nothing, since no input can carry a signature of this process's keys.
#![no_main]

use std::sync::OnceLock;

use idbridge_tokens::{generate_key, Algorithm, Expect, KeySet, SigningKey};
use libfuzzer_sys::fuzz_target;

fn keyset() -> Option<&'static KeySet> {
    static KEYS: OnceLock<Option<KeySet>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys = Vec::new();
        let mut kids = Vec::new();
        for alg in [Algorithm::ES256, Algorithm::EdDSA] {
            let m = generate_key(alg).ok()?;
            keys.push(
                SigningKey::from_material(&m.kid, m.alg, &m.private_der, &m.public_jwk).ok()?,
            );
            kids.push(m.kid);
        }
        KeySet::new(keys, kids).ok()
    })
    .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Some(ks) = keyset() else { return };
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let expect = Expect {
        typ: "at+jwt",
        issuer: "https://id.example.com",
        audience: Some("app"),
        now: 1_750_000_000,
        leeway: 30,
    };
    if ks.verify::<serde_json::Value>(token, &expect).is_ok() {
        panic!("a token the fuzzer made verified: {token:?}");
    }
});
