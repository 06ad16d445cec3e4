//! Building connectors from config by `type`: a table from type name to factory.
//! The binary fills the table; the server only ever looks things up in it.

use crate::{Connector, ConnectorId, Shared};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// One `[[connectors]]` entry as the registry sees it.
#[derive(Debug, Clone)]
pub struct ConnectorSettings {
    pub id: ConnectorId,
    pub kind: String,
    pub name: Option<String>,
    /// The type's own keys (everything but id, type, name), as JSON.
    pub options: serde_json::Value,
}

/// What a factory may know about the broker it is built for.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub issuer: String,
    /// `{issuer}/callback/{id}` for this connector.
    pub callback_url: String,
    /// `serve --dev`: development-only connector types are allowed.
    pub dev_mode: bool,
    /// The cache every broker instance shares (e.g. for WeChat's app token).
    pub shared: Shared,
}

impl BuildContext {
    /// A context with a process-local cache (tests, `idbridge doctor`); the server
    /// sets [`BuildContext::shared`] to its store-backed cache.
    pub fn new(issuer: impl Into<String>, callback_url: impl Into<String>, dev_mode: bool) -> Self {
        Self {
            issuer: issuer.into(),
            callback_url: callback_url.into(),
            dev_mode,
            shared: Shared::default(),
        }
    }
}

/// A configuration mistake, naming the key at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path, e.g. `connectors[wechat].appid`.
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A problem `idbridge doctor` reports (not necessarily fatal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
    pub fatal: bool,
}

/// Builds one connector type.
pub trait ConnectorFactory: Send + Sync {
    /// The `type` value in config.
    fn kind(&self) -> &'static str;

    /// Only available under `serve --dev`.
    fn dev_only(&self) -> bool {
        false
    }

    /// Build from config; every mistake found is returned, each naming its key.
    fn build(
        &self,
        settings: &ConnectorSettings,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, Vec<ConfigError>>;

    /// Extra checks for `idbridge doctor` beyond what `build` rejects (warnings).
    fn doctor(&self, _settings: &ConnectorSettings, _ctx: &BuildContext) -> Vec<Problem> {
        Vec::new()
    }
}

/// The table of connector types.
#[derive(Default, Clone)]
pub struct Registry {
    factories: BTreeMap<&'static str, Arc<dyn ConnectorFactory>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, factory: impl ConnectorFactory + 'static) -> Self {
        self.factories.insert(factory.kind(), Arc::new(factory));
        self
    }

    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.factories.keys().copied()
    }

    pub fn factory(&self, kind: &str) -> Option<&Arc<dyn ConnectorFactory>> {
        self.factories.get(kind)
    }

    /// Build one connector, checking its type exists and may run in this mode.
    pub fn build(
        &self,
        settings: &ConnectorSettings,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, Vec<ConfigError>> {
        let key = format!("connectors[{}].type", settings.id);
        let Some(factory) = self.factories.get(settings.kind.as_str()) else {
            let known: Vec<&str> = self.kinds().collect();
            return Err(vec![ConfigError::new(
                key,
                format!(
                    "unknown connector type {:?}; known types: {}",
                    settings.kind,
                    known.join(", ")
                ),
            )]);
        };
        if factory.dev_only() && !ctx.dev_mode {
            return Err(vec![ConfigError::new(
                key,
                format!(
                    "connector type {:?} is for development only and can be enabled only by `idbridge serve --dev`",
                    settings.kind
                ),
            )]);
        }
        factory.build(settings, ctx)
    }
}
