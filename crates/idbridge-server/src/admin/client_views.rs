//! How a client is shown by the admin API and `idbridge admin clients`, and
//! how a stored client's settings are kept in the `clients.metadata` column.
//! Secrets are never shown: only which ones exist and until when they work.

use crate::config::ClientSettings;
use idbridge_store::ClientRow;
use serde::Serialize;
use serde_json::{json, Value};

/// Where a client is registered.
pub const SOURCE_CONFIG: &str = "config";
pub const SOURCE_API: &str = "api";

/// A client as listed and shown.
#[derive(Debug, Clone, Serialize)]
pub struct ClientView {
    pub id: String,
    pub name: String,
    /// `config` (read-only here: edit the config file) or `api`.
    pub source: &'static str,
    pub public: bool,
    /// `none` for public clients; for confidential ones `client_secret_basic`
    /// or `client_secret_post` when only that one is accepted, `null` when
    /// either is (as for every client of the config file).
    pub token_endpoint_auth_method: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub require_pkce: bool,
    pub id_token_signed_response_alg: Option<String>,
    pub connectors: Vec<String>,
    pub require_phone: bool,
    pub skip_consent: bool,
    pub refresh_without_offline_access: bool,
    pub id_token_on_refresh: bool,
    pub require_pushed_authorization_requests: bool,
    pub allowed_origins: Vec<String>,
    /// The secrets that work now, as their expiry only.
    pub secrets: Vec<SecretView>,
    /// `null` for clients of the config file.
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// One working secret: the current one (`expires_at` null: until rotated) or
/// the one before the last rotation, until the end of its grace period.
#[derive(Debug, Clone, Serialize)]
pub struct SecretView {
    pub current: bool,
    pub expires_at: Option<i64>,
}

impl ClientView {
    /// A client of the config file.
    pub fn of_config(c: &ClientSettings) -> Self {
        let mut v = Self::of_settings(c, None, SOURCE_CONFIG);
        if !c.public {
            v.secrets.push(SecretView {
                current: true,
                expires_at: None,
            });
        }
        v
    }

    /// A stored client, its secrets as they stand at `now`.
    pub fn of_row(row: &ClientRow, now: i64) -> Self {
        let settings = settings_of(row);
        let mut v = Self::of_settings(&settings, auth_method_of(row), SOURCE_API);
        if row.secret_hash.is_some() {
            v.secrets.push(SecretView {
                current: true,
                expires_at: None,
            });
        }
        if let (Some(_), Some(until)) = (&row.previous_secret_hash, row.previous_secret_expires_at)
        {
            if until > now {
                v.secrets.push(SecretView {
                    current: false,
                    expires_at: Some(until),
                });
            }
        }
        v.created_at = Some(row.created_at);
        v.updated_at = Some(row.updated_at);
        v
    }

    fn of_settings(c: &ClientSettings, method: Option<String>, source: &'static str) -> Self {
        Self {
            id: c.id.clone(),
            name: c.name.clone().unwrap_or_else(|| c.id.clone()),
            source,
            public: c.public,
            token_endpoint_auth_method: if c.public {
                Some("none".into())
            } else {
                method
            },
            redirect_uris: c.redirect_uris.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            require_pkce: c.public || c.require_pkce,
            id_token_signed_response_alg: c.id_token_signed_response_alg.clone(),
            connectors: c.connectors.clone(),
            require_phone: c.require_phone,
            skip_consent: c.skip_consent,
            refresh_without_offline_access: c.refresh_without_offline_access,
            id_token_on_refresh: c.id_token_on_refresh,
            require_pushed_authorization_requests: c.require_pushed_authorization_requests,
            allowed_origins: c.allowed_origins.clone(),
            secrets: Vec::new(),
            created_at: None,
            updated_at: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ClientList {
    pub clients: Vec<ClientView>,
}

/// A created client, or an updated one that got a secret (it became
/// confidential): the secret is in this answer and nowhere else, ever.
#[derive(Debug, Clone, Serialize)]
pub struct ClientWritten {
    #[serde(flatten)]
    pub client: ClientView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The fields an update changed (empty for a create).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SecretRotated {
    pub client_id: String,
    /// The new secret, shown this once.
    pub client_secret: String,
    /// Until when the old secret keeps working (now, when the grace is 0).
    pub previous_secret_expires_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClientDeleted {
    pub client_id: String,
    /// Grants revoked: their refresh tokens fail, and their access tokens are
    /// refused by userinfo and introspection at once.
    pub grants_revoked: u64,
    pub codes_removed: u64,
    pub sign_ins_cancelled: u64,
}

/// A stored client's settings (its secret left out: only its hash is kept).
pub fn settings_of(row: &ClientRow) -> ClientSettings {
    let m = &row.metadata;
    let strings = |k: &str| -> Vec<String> {
        m.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let flag = |k: &str, default: bool| m.get(k).and_then(Value::as_bool).unwrap_or(default);
    let public = row.secret_hash.is_none();
    ClientSettings {
        id: row.id.clone(),
        name: m.get("name").and_then(Value::as_str).map(str::to_owned),
        secret: None,
        secret_file: None,
        public,
        redirect_uris: strings("redirect_uris"),
        post_logout_redirect_uris: strings("post_logout_redirect_uris"),
        require_pkce: public || flag("require_pkce", true),
        id_token_signed_response_alg: m
            .get("id_token_signed_response_alg")
            .and_then(Value::as_str)
            .map(str::to_owned),
        connectors: strings("connectors"),
        require_phone: flag("require_phone", false),
        skip_consent: flag("skip_consent", false),
        refresh_without_offline_access: flag("refresh_without_offline_access", false),
        id_token_on_refresh: flag("id_token_on_refresh", true),
        require_pushed_authorization_requests: flag("require_pushed_authorization_requests", false),
        allowed_origins: strings("allowed_origins"),
    }
}

/// The one method a stored confidential client is held to, if any.
pub fn auth_method_of(row: &ClientRow) -> Option<String> {
    row.metadata
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The `clients.metadata` of these settings (what [`settings_of`] reads back).
pub fn metadata_of(c: &ClientSettings, method: Option<&str>) -> Value {
    let mut m = json!({
        "redirect_uris": c.redirect_uris,
        "post_logout_redirect_uris": c.post_logout_redirect_uris,
        "require_pkce": c.public || c.require_pkce,
        "connectors": c.connectors,
        "require_phone": c.require_phone,
        "skip_consent": c.skip_consent,
        "refresh_without_offline_access": c.refresh_without_offline_access,
        "id_token_on_refresh": c.id_token_on_refresh,
        "require_pushed_authorization_requests": c.require_pushed_authorization_requests,
        "allowed_origins": c.allowed_origins,
    });
    if let Some(obj) = m.as_object_mut() {
        if let Some(name) = &c.name {
            obj.insert("name".into(), name.clone().into());
        }
        if let Some(alg) = &c.id_token_signed_response_alg {
            obj.insert("id_token_signed_response_alg".into(), alg.clone().into());
        }
        if let Some(method) = method.filter(|_| !c.public) {
            obj.insert("token_endpoint_auth_method".into(), method.into());
        }
    }
    m
}
