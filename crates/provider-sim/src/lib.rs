//! # provider-sim: fakes of OpenID providers
//!
//! Real HTTP servers on 127.0.0.1 (an ephemeral port), scripted from Rust,
//! that answer as the providers document, for the connectors' tests and
//! `serve --dev`:
//!
//! - [`oidc`]: a small generic OpenID provider (discovery, JWKS with rotation,
//!   authorize with approve or deny, token, userinfo, refresh; RS256 or ES256),
//!   and the engine the other fakes are shapes of;
//! - [`microsoft`]: Microsoft Entra ID (v2.0 endpoints under a tenant, the
//!   `{tenantid}` issuer template of multi-tenant authorities, `tid`/`oid`
//!   claims, AADSTS error bodies);
//! - [`apple`]: Sign in with Apple (form_post callbacks with the `user` field
//!   on the first sign-in only, the ES256 client-secret JWT checked against
//!   the public key of the test's `.p8` key, Apple's bare error bodies).

pub mod apple;
pub mod microsoft;
pub mod oidc;
