//! # provider-sim: fakes of OAuth 2.0 and OpenID providers
//!
//! Real HTTP servers on 127.0.0.1 (an ephemeral port), scripted from Rust,
//! that answer as the providers document, error bodies included, for the
//! connectors' tests and `serve --dev`:
//!
//! - [`oidc`]: a small generic OpenID provider (discovery, JWKS with rotation,
//!   authorize with approve or deny, token, userinfo, refresh; RS256 or ES256),
//!   and the engine the other OpenID fakes are shapes of;
//! - [`microsoft`]: Microsoft Entra ID (v2.0 endpoints under a tenant, the
//!   `{tenantid}` issuer template of multi-tenant authorities, `tid`/`oid`
//!   claims, AADSTS error bodies);
//! - [`apple`]: Sign in with Apple (form_post callbacks with the `user` field
//!   on the first sign-in only, the ES256 client-secret JWT checked against
//!   the public key of the test's `.p8` key, Apple's bare error bodies);
//! - [`github`]: GitHub's OAuth app endpoints and REST API (`/user`,
//!   `/user/emails`, `/user/orgs`), with its 200-with-`error` token answers;
//! - [`wecom`]: WeCom's (企业微信) self-built app login: the QR and in-app
//!   pages, `gettoken`, `auth/getuserinfo`, `user/get`, errcode bodies.
//! - [`feishu`]: Feishu/Lark's authorization page, JSON token endpoint (PKCE,
//!   numeric `code`s such as 20010, single-use codes and refresh tokens) and
//!   `user_info` envelope.

pub mod apple;
pub mod feishu;
pub mod github;
pub mod microsoft;
pub mod oidc;
pub mod wecom;
