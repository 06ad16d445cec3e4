//! Signing keys and the tokens they sign: key generation, encryption at rest
//! under the master key, the rotation schedule (a pure function of the stored
//! key metadata and the time), the published JWKS, JWT signing and
//! verification, and the small hashing and randomness helpers the server
//! needs for codes, refresh tokens, client secrets and PKCE.
//!
//! Nothing here reads the clock or touches storage or HTTP: time is always a
//! parameter, and the server decides when to persist, load and swap keys.

mod algorithm;
mod error;
mod helpers;
mod keys;
mod keyset;
mod master_key;
mod rotation;

pub use algorithm::Algorithm;
pub use error::TokenError;
pub use helpers::{
    at_hash, constant_time_eq, generate_client_secret, hash_client_secret, hash_token,
    hmac_sha256_hex, pkce_s256, pkce_s256_matches, pkce_verifier_is_valid, random_alnum,
    random_digits, random_token, verify_client_secret,
};
pub use keys::{generate_key, KeyMaterial, SigningKey};
pub use keyset::{Expect, KeySet};
pub use master_key::MasterKey;
pub use rotation::{
    manual_rotation, plan_rotation, published, signing_kid, signing_kid_at_start, KeyAction,
    KeyMeta, RotationPolicy, START_SKEW_SECS,
};
