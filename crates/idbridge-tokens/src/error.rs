//! The one error type of this crate, each variant named after what failed.

use crate::Algorithm;

/// Everything that can go wrong in this crate.
///
/// Verification failures (`Malformed` through `ClaimsShape`) deliberately carry
/// no attacker-supplied text: the caller logs the context it has (client,
/// endpoint) and answers `invalid_token` / `invalid_grant` alike for all of them.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// The configured master key is not in an accepted form; the message says
    /// what is expected (it never contains the key).
    #[error("invalid master key: {0}")]
    InvalidMasterKey(String),
    /// An algorithm name is not one of ours (config, CLI, storage).
    #[error("unknown signing algorithm {0:?}: expected one of RS256, ES256, EdDSA")]
    UnknownAlgorithm(String),
    /// Generating a new signing key failed.
    #[error("generating a signing key failed")]
    KeyGeneration,
    /// A stored private key could not be parsed for its algorithm
    /// (RS256: PKCS#1 DER, ES256 and EdDSA: PKCS#8 DER).
    #[error("the private key could not be decoded for its algorithm")]
    KeyDecode,
    /// A stored public JWK does not belong to the private key or to the
    /// kid/alg it is stored under; names the first field that differs.
    #[error("the stored public JWK does not match the key: field {0:?} differs")]
    KeyMismatch(&'static str),
    /// The keys and signing kids given to `KeySet::new` are inconsistent.
    #[error("invalid key set: {0}")]
    InvalidKeySet(String),
    /// Sealing with the master key failed.
    #[error("encryption failed")]
    Encrypt,
    /// Opening a sealed value failed: wrong master key, wrong label (aad), an
    /// unknown format version, or the data was truncated or tampered with.
    #[error("decryption failed: wrong master key, wrong label, or the data was tampered with")]
    Decrypt,
    /// The key set has no key that may sign with this algorithm now.
    #[error("no key may sign with {0} now")]
    NoSigningKey(Algorithm),
    /// Producing a signature failed (or the claims could not be serialized).
    #[error("signing failed")]
    Sign,
    /// The token is not a compact JWS with a JSON header and JSON object payload,
    /// or uses a header feature we do not support (`crit`).
    #[error("malformed token")]
    Malformed,
    /// The token's `kid` is missing or names none of our keys.
    #[error("token signed with an unknown key")]
    UnknownKey,
    /// The header `alg` is `none`, not one of ours, or not the algorithm of the
    /// key named by `kid`.
    #[error("token algorithm not allowed")]
    AlgorithmNotAllowed,
    /// The signature does not verify with the key named by `kid`.
    #[error("bad token signature")]
    BadSignature,
    /// The header `typ` is missing or not the expected one.
    #[error("wrong token type")]
    WrongType,
    /// `iss` is not our issuer.
    #[error("wrong token issuer")]
    WrongIssuer,
    /// `aud` does not contain the expected audience.
    #[error("wrong token audience")]
    WrongAudience,
    /// `exp` is past, beyond the leeway.
    #[error("token expired")]
    Expired,
    /// `iat` or `nbf` is in the future, beyond the leeway.
    #[error("token not yet valid")]
    NotYetValid,
    /// A required claim is absent.
    #[error("token lacks the {0} claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type, or the verified claims do not
    /// deserialize into the caller's type.
    #[error("token claims have an unexpected shape: {0}")]
    ClaimsShape(String),
}
