//! The sign-in: the authorization endpoint and the browser flow behind it. Read
//! and check the app's request, reuse an SSO session when allowed, otherwise pick
//! a connector, send the person upstream, take the callback, resolve the broker
//! account, and return a code to the app (with `iss`, RFC 9207). The steps that
//! can interrupt it live beside it, above it: [`crate::bind`], [`crate::phone`],
//! and [`crate::account`] for linking another method.
//!
//! | file | holds |
//! |---|---|
//! | `parse` | the request's parameters → typed values, or the exact refusal (pure) |
//! | `request` | the request as kept while the person signs in (`AuthRequest`, `Prompt`) |
//! | `response` | what the app gets: the authorization response, errors, `/return`, flow outcomes |
//! | `authorize` | GET/POST /authorize |
//! | `sso` | the SSO session answering a request |
//! | `chooser` | GET /login/{request}: the connectors offered |
//! | `begin` | the connector's `begin`, and the flow it starts |
//! | `callback` | GET/POST /callback/{connector} |
//! | `failure` | a failed upstream step, told to the person and the app |
//! | `page_error` | a handler's typed error (`PageError`): an error page, or an error response to the app |
//! | `finish` | the account resolved, the session and code made, the next step |
//! | `consent_step` | whether the consent page comes before the code ([`crate::consent`]) |

pub mod authorize;
pub mod begin;
pub mod callback;
pub mod chooser;
pub mod consent_step;
pub mod failure;
pub mod finish;
pub mod page_error;
pub mod parse;
pub mod request;
pub mod response;
pub mod sso;
