//! Registered apps (relying parties): from config, or registered at runtime in the
//! store; and client authentication at the token, revocation and introspection
//! endpoints (client_secret_basic, client_secret_post, or none for public clients).

use crate::config::ClientSettings;
use crate::error::OAuthError;
use actix_web::HttpRequest;
use base64::Engine;
use idbridge_store::Store;
use idbridge_tokens::Algorithm;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub name: String,
    /// `None` for public clients.
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub require_pkce: bool,
    pub id_token_alg: Option<Algorithm>,
    /// Connector ids this client may use; empty = all.
    pub connectors: Vec<String>,
    /// The person must have a verified phone number before the app gets a code.
    pub require_phone: bool,
    /// A first-party app: no consent page unless it asks (`prompt=consent`).
    /// Never for a client registered through RFC 7591.
    pub skip_consent: bool,
    /// Refresh tokens even without `offline_access` in the granted scope.
    pub refresh_without_offline_access: bool,
    /// A new ID token in each refresh response (default); see OpenID Connect Core §12.2.
    pub id_token_on_refresh: bool,
    /// Authorization requests only through `/par` (RFC 9126).
    pub require_pushed_authorization_requests: bool,
    /// A rotated-away secret's hash and the end of its grace period (unix
    /// seconds): until then it is accepted beside the new one.
    pub previous_secret: Option<(String, i64)>,
    /// The one way a confidential client registered at run time may send its
    /// secret, when it was registered with one: `client_secret_basic` or
    /// `client_secret_post`. `None`: either.
    pub token_auth_method: Option<String>,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none()
    }

    pub fn from_settings(c: &ClientSettings) -> Result<Self, idbridge_tokens::TokenError> {
        let secret_hash = match c.secret.as_deref().filter(|_| !c.public) {
            Some(secret) => Some(idbridge_tokens::hash_client_secret(secret)?),
            None => None,
        };
        Ok(Self {
            id: c.id.clone(),
            name: c.name.clone().unwrap_or_else(|| c.id.clone()),
            secret_hash,
            redirect_uris: c.redirect_uris.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            require_pkce: c.public || c.require_pkce,
            id_token_alg: c
                .id_token_signed_response_alg
                .as_deref()
                .and_then(|a| a.parse().ok()),
            connectors: c.connectors.clone(),
            require_phone: c.require_phone,
            skip_consent: c.skip_consent,
            refresh_without_offline_access: c.refresh_without_offline_access,
            id_token_on_refresh: c.id_token_on_refresh,
            require_pushed_authorization_requests: c.require_pushed_authorization_requests,
            previous_secret: None,
            token_auth_method: None,
        })
    }

    /// Whether `secret` is this client's secret at `now`: the current one, or
    /// the previous one inside its grace period.
    fn secret_matches(&self, secret: &str, now: i64) -> bool {
        let current = self
            .secret_hash
            .as_deref()
            .is_some_and(|h| idbridge_tokens::verify_client_secret(secret, h));
        let previous = self.previous_secret.as_ref().is_some_and(|(h, until)| {
            now < *until && idbridge_tokens::verify_client_secret(secret, h)
        });
        current | previous
    }

    pub fn from_row(row: idbridge_store::ClientRow) -> Self {
        let m = &row.metadata;
        let strings = |k: &str| metadata_strings(&row.metadata, k);
        let public = row.secret_hash.is_none();
        Self {
            id: row.id.clone(),
            name: m
                .get("name")
                .and_then(|v| v.as_str())
                .unwrap_or(&row.id)
                .to_owned(),
            secret_hash: row.secret_hash,
            redirect_uris: strings("redirect_uris"),
            post_logout_redirect_uris: strings("post_logout_redirect_uris"),
            require_pkce: public
                || m.get("require_pkce")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(true),
            id_token_alg: m
                .get("id_token_signed_response_alg")
                .and_then(|v| v.as_str())
                .and_then(|a| a.parse().ok()),
            connectors: strings("connectors"),
            require_phone: m
                .get("require_phone")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            skip_consent: m
                .get("skip_consent")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            refresh_without_offline_access: m
                .get("refresh_without_offline_access")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            id_token_on_refresh: m
                .get("id_token_on_refresh")
                .and_then(|v| v.as_bool())
                .unwrap_or(true),
            require_pushed_authorization_requests: m
                .get("require_pushed_authorization_requests")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            token_auth_method: m
                .get("token_endpoint_auth_method")
                .and_then(|v| v.as_str())
                .filter(|_| !public)
                .map(str::to_owned),
            previous_secret: row.previous_secret_hash.zip(row.previous_secret_expires_at),
        }
    }

    /// Exact redirect URI match; for loopback IP redirect URIs of public (native)
    /// clients, any port (RFC 8252 §7.3). Nothing else: no prefixes, no extra
    /// query, no trailing-slash tolerance.
    pub fn redirect_uri_allowed(&self, uri: &str) -> bool {
        if self.redirect_uris.iter().any(|r| r == uri) {
            return true;
        }
        if !self.is_public() {
            return false;
        }
        let Ok(asked) = url::Url::parse(uri) else {
            return false;
        };
        let loopback_ip = |u: &url::Url| {
            u.scheme() == "http"
                && matches!(
                    u.host(),
                    Some(url::Host::Ipv4(ip)) if ip.is_loopback()
                )
                || u.scheme() == "http"
                    && matches!(u.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        };
        if !loopback_ip(&asked) {
            return false;
        }
        self.redirect_uris.iter().any(|r| {
            let Ok(mut reg) = url::Url::parse(r) else {
                return false;
            };
            if !loopback_ip(&reg) {
                return false;
            }
            let mut asked = asked.clone();
            if reg.set_port(None).is_err() || asked.set_port(None).is_err() {
                return false;
            }
            reg.as_str() == asked.as_str()
        })
    }

    /// Whether a new grant with `scope` gets a refresh token: only with
    /// `offline_access` (OpenID Connect Core §11), unless this client is
    /// registered with `refresh_without_offline_access`.
    pub fn gets_refresh_token(&self, scope: &str) -> bool {
        self.refresh_without_offline_access || crate::params::has_scope(scope, "offline_access")
    }

    pub fn may_use_connector(&self, id: &str) -> bool {
        self.connectors.is_empty() || self.connectors.iter().any(|c| c == id)
    }
}

/// The origin of an http(s) URL as a browser writes it in the `Origin` header
/// (`https://host[:port]`, the default port left out); `None` for anything else.
pub fn origin_of(uri: &str) -> Option<String> {
    let u = url::Url::parse(uri).ok()?;
    if !matches!(u.scheme(), "http" | "https") {
        return None;
    }
    match u.origin() {
        o @ url::Origin::Tuple(..) => Some(o.ascii_serialization()),
        url::Origin::Opaque(_) => None,
    }
}

/// A list of strings in a stored client's metadata (none when absent).
fn metadata_strings(m: &serde_json::Value, key: &str) -> Vec<String> {
    m.get(key)
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The CORS origins of a stored client (see [`cors_origins`]).
fn stored_cors_origins(row: &idbridge_store::ClientRow) -> Vec<String> {
    let m = &row.metadata;
    cors_origins(
        row.secret_hash.is_none(),
        &metadata_strings(m, "redirect_uris"),
        &metadata_strings(m, "allowed_origins"),
    )
}

/// A client's CORS origins: for a public client (an SPA is one), the origins of
/// its http(s) redirect URIs, exactly as registered (port included: the any-port
/// rule of loopback redirects is for native apps, which need no CORS); and, for
/// any client, its `allowed_origins`. Sorted, no duplicates.
fn cors_origins(public: bool, redirect_uris: &[String], allowed: &[String]) -> Vec<String> {
    let derived = redirect_uris.iter().filter(|_| public);
    let mut out: Vec<String> = derived
        .chain(allowed)
        .filter_map(|u| origin_of(u))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// All clients: config ones in memory, runtime ones looked up in the store on
/// every use, never cached, so a client created, changed, rotated or deleted
/// through one instance is what every instance uses from its next request.
pub struct Clients {
    configured: HashMap<String, Arc<Client>>,
    /// Every configured client's CORS origins together.
    configured_origins: std::collections::HashSet<String>,
    store: Store,
    clock: Arc<crate::Clock>,
}

impl Clients {
    pub fn new(
        configured: &[ClientSettings],
        store: Store,
        clock: Arc<crate::Clock>,
    ) -> Result<Self, idbridge_tokens::TokenError> {
        let mut map = HashMap::new();
        let mut configured_origins = std::collections::HashSet::new();
        for c in configured {
            map.insert(c.id.clone(), Arc::new(Client::from_settings(c)?));
            configured_origins.extend(cors_origins(c.public, &c.redirect_uris, &c.allowed_origins));
        }
        Ok(Self {
            configured: map,
            configured_origins,
            store,
            clock,
        })
    }

    /// Whether `id` is a client of the config file (or one the broker builds
    /// in): those are read-only at run time.
    pub fn is_configured(&self, id: &str) -> bool {
        self.configured.contains_key(id)
    }

    /// The ids of those read-only clients, sorted.
    pub fn configured_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.configured.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Whether a browser page on `origin` (the request's `Origin` header) may
    /// read the answers of the token, userinfo, revocation and introspection
    /// endpoints: it is a CORS origin of some registered client. The union, not
    /// the calling client's own: a preflight carries no client id, and the
    /// client of a token request is known only once its body is read. Configured
    /// clients are checked in memory; only an origin none of them has looks at
    /// the clients stored at run time. A store failure answers no (no CORS).
    pub async fn cors_allows(&self, origin: &str) -> bool {
        if self.configured_origins.contains(origin) {
            return true;
        }
        // A browser always sends a serialized origin; anything else (`null`,
        // garbage) is never looked up.
        if origin_of(origin).as_deref() != Some(origin) {
            return false;
        }
        match self.store.list_clients().await {
            Ok(rows) => rows
                .iter()
                .any(|row| stored_cors_origins(row).iter().any(|o| o == origin)),
            Err(e) => {
                tracing::warn!(stage = "cors", error = %e, "cannot read the stored clients; answering without CORS headers");
                false
            }
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<Arc<Client>>, OAuthError> {
        if let Some(c) = self.configured.get(id) {
            return Ok(Some(c.clone()));
        }
        Ok(self
            .store
            .get_client(id)
            .await
            .map_err(OAuthError::store)?
            .map(|row| Arc::new(Client::from_row(row))))
    }

    /// Authenticate the client calling a back-channel endpoint. Every refusal
    /// writes one WARN line naming the client id (escaped) and the reason, never
    /// the secret.
    pub async fn authenticate(
        &self,
        req: &HttpRequest,
        form: &BTreeMap<String, String>,
    ) -> Result<Arc<Client>, OAuthError> {
        let refused = |id: Option<&str>, why: AuthFailure| {
            why.log(req.path(), id);
            why.error()
        };
        let basic = match basic_credentials(req) {
            Ok(basic) => basic,
            Err(BasicRefused { client_id, why }) => return Err(refused(client_id.as_deref(), why)),
        };
        let form_id = form.get("client_id").filter(|s| !s.is_empty());
        let form_secret = form.get("client_secret").filter(|s| !s.is_empty());
        let (id, secret, via_basic) = match (&basic, form_id) {
            (Some((id, _)), _) if form_secret.is_some() => {
                return Err(refused(Some(id), AuthFailure::SentTwice))
            }
            (Some((id, secret)), form_id) => {
                if form_id.is_some_and(|f| f != id) {
                    return Err(refused(Some(id), AuthFailure::IdMismatch));
                }
                (id.clone(), Some(secret.clone()), true)
            }
            (None, Some(id)) => (id.clone(), form_secret.cloned(), false),
            (None, None) => return Err(refused(None, AuthFailure::NoCredentials)),
        };
        let Some(client) = self.get(&id).await? else {
            return Err(refused(Some(&id), AuthFailure::UnknownClient { via_basic }));
        };
        match (&client.secret_hash, secret) {
            (None, None) => Ok(client),
            (None, Some(_)) => Err(refused(
                Some(&id),
                AuthFailure::PublicWithSecret { via_basic },
            )),
            (Some(_), None) => Err(refused(Some(&id), AuthFailure::NoSecret)),
            (Some(_), Some(secret)) => {
                let used = if via_basic {
                    "client_secret_basic"
                } else {
                    "client_secret_post"
                };
                if client
                    .token_auth_method
                    .as_deref()
                    .is_some_and(|m| m != used)
                {
                    return Err(refused(Some(&id), AuthFailure::OtherMethod { via_basic }));
                }
                if client.secret_matches(&secret, self.clock.now()) {
                    Ok(client)
                } else {
                    Err(refused(Some(&id), AuthFailure::WrongSecret { via_basic }))
                }
            }
        }
    }
}

/// Why client authentication failed: the reason in the log line, and the
/// answer (`invalid_client`, or `invalid_request` where RFC 6749 §5.2 says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthFailure {
    /// Neither an Authorization header nor a client_id.
    NoCredentials,
    UnknownClient {
        via_basic: bool,
    },
    WrongSecret {
        via_basic: bool,
    },
    /// A confidential client sent only its client_id (method `none`).
    NoSecret,
    /// A public client sent a secret (it has none).
    PublicWithSecret {
        via_basic: bool,
    },
    /// client_secret_basic and client_secret_post in one request.
    SentTwice,
    /// The client is registered for the other of client_secret_basic and
    /// client_secret_post.
    OtherMethod {
        via_basic: bool,
    },
    /// Basic names one client, the form's client_id another.
    IdMismatch,
    /// The Authorization header is not valid Basic credentials.
    MalformedBasic,
    /// A control character in the id or secret of Basic credentials.
    ControlInBasic {
        field: &'static str,
    },
}

impl AuthFailure {
    fn reason(self) -> &'static str {
        match self {
            Self::NoCredentials => "no credentials",
            Self::UnknownClient { .. } => "unknown client",
            Self::WrongSecret { .. } => "wrong secret",
            Self::NoSecret => {
                "method not allowed for this client: a confidential client sent no secret"
            }
            Self::PublicWithSecret { .. } => {
                "method not allowed for this client: a public client sent a secret"
            }
            Self::SentTwice => "credentials sent twice (Basic and form)",
            Self::OtherMethod { via_basic: true } => {
                "method not allowed for this client: registered for client_secret_post, sent client_secret_basic"
            }
            Self::OtherMethod { via_basic: false } => {
                "method not allowed for this client: registered for client_secret_basic, sent client_secret_post"
            }
            Self::IdMismatch => "client_id in the form differs from the one in Basic",
            Self::MalformedBasic | Self::ControlInBasic { .. } => "malformed Basic",
        }
    }

    fn log(self, path: &str, client_id: Option<&str>) {
        let reason = self.reason();
        // `?` writes the id quoted and escaped, whatever it holds.
        match client_id {
            Some(id) => tracing::warn!(
                stage = "client_auth",
                client_id = ?id,
                reason,
                path,
                "client authentication failed"
            ),
            None => tracing::warn!(
                stage = "client_auth",
                reason,
                path,
                "client authentication failed"
            ),
        }
    }

    fn error(self) -> OAuthError {
        match self {
            Self::NoCredentials => OAuthError::invalid_client(
                "client authentication is required (client_secret_basic, client_secret_post, or client_id for public clients)",
                false,
            ),
            Self::UnknownClient { via_basic } => OAuthError::invalid_client("unknown client", via_basic),
            Self::WrongSecret { via_basic } => {
                OAuthError::invalid_client("client authentication failed", via_basic)
            }
            Self::NoSecret => OAuthError::invalid_client("client secret missing", false),
            Self::PublicWithSecret { via_basic } => OAuthError::invalid_client(
                "this is a public client; it has no secret",
                via_basic,
            ),
            Self::OtherMethod { via_basic } => OAuthError::invalid_client(
                if via_basic {
                    "this client is registered to send its secret in the request body (client_secret_post)"
                } else {
                    "this client is registered to send its secret with HTTP Basic (client_secret_basic)"
                },
                via_basic,
            ),
            Self::SentTwice => OAuthError::invalid_request(
                "use one client authentication method, not both client_secret_basic and client_secret_post",
            ),
            Self::IdMismatch => OAuthError::invalid_request(
                "client_id in the body differs from the Authorization header",
            ),
            Self::MalformedBasic => OAuthError::invalid_client("malformed Basic credentials", true),
            Self::ControlInBasic { field } => OAuthError::invalid_request(format!(
                "the {field} in the Authorization header (Basic) contains a control character (such as NUL or a line break), which is never valid"
            )),
        }
    }
}

/// Basic credentials refused: why, and the client id when one could be read.
struct BasicRefused {
    client_id: Option<String>,
    why: AuthFailure,
}

/// `Authorization: Basic` credentials, form-urlencoded inside (RFC 6749 §2.3.1).
fn basic_credentials(req: &HttpRequest) -> Result<Option<(String, String)>, BasicRefused> {
    let Some(header) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || BasicRefused {
        client_id: None,
        why: AuthFailure::MalformedBasic,
    };
    let Ok(value) = header.to_str() else {
        return Err(malformed());
    };
    let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return Ok(None);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(malformed)?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let (id, secret) = (unescape(id), unescape(secret));
    // The same rule as for every parameter (crate::params), after both decodings.
    for (field, value) in [("client_id", &id), ("client_secret", &secret)] {
        if !crate::params::control_free(value) {
            return Err(BasicRefused {
                client_id: Some(id.clone()),
                why: AuthFailure::ControlInBasic { field },
            });
        }
    }
    Ok(Some((id, secret)))
}
