//! The contract between the broker and its upstream connectors.
//!
//! A connector signs a person in somewhere else (WeChat, a development stub, …) and
//! hands back an [`ExternalIdentity`]. The server knows connectors only through the
//! [`Connector`] trait and builds them from config through the [`Registry`]; a
//! connector crate knows nothing of the server, the store or actix.

mod connector;
mod context;
mod error;
mod html;
mod identity;
mod registry;
mod shared;

pub use connector::{
    Availability, Begin, BeginRequest, CallbackRequest, Connector, ExchangeRequest, Prompt, Started,
};
pub use context::{ClientClass, Locale, RequestContext};
pub use error::{ConnectorError, ErrorKind, Stage};
pub use html::escape_html;
pub use identity::{
    clean_display, ConnectorId, ExternalIdentity, LinkKey, Profile, UpstreamTokens,
    MAX_DISPLAY_CHARS, MAX_EMAIL_BYTES, MAX_PHONE_BYTES, MAX_PICTURE_BYTES,
};
pub use registry::{
    BuildContext, ConfigError, ConnectorFactory, ConnectorSettings, Problem, Registry,
};
pub use shared::{CacheError, CachedValue, MemoryCache, Shared, SharedCache};
