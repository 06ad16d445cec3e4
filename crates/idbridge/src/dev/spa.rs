//! `serve --dev --spa-origin ORIGIN`: a public client for a single-page app.

/// The client's id.
pub const CLIENT_ID: &str = "dev-spa";

/// The public client for a single-page app served from `origin` (redirect URI
/// ORIGIN/callback, post-logout redirect URI ORIGIN/); as a public client, its
/// redirect URI's origin gets CORS.
pub fn client(origin: &str) -> Result<idbridge_server::config::ClientSettings, String> {
    idbridge_server::config::check_origin(origin)
        .map_err(|e| format!("--spa-origin {origin:?}: {e}"))?;
    let origin = origin.trim_end_matches('/');
    Ok(idbridge_server::config::ClientSettings {
        id: CLIENT_ID.into(),
        name: Some("Single-page app (--spa-origin)".into()),
        secret: None,
        secret_file: None,
        public: true,
        redirect_uris: vec![format!("{origin}/callback")],
        post_logout_redirect_uris: vec![format!("{origin}/")],
        require_pkce: true,
        id_token_signed_response_alg: None,
        connectors: Vec::new(),
        require_phone: false,
        // A third-party app in the dev setup: the consent page is seen here.
        skip_consent: false,
        refresh_without_offline_access: false,
        id_token_on_refresh: true,
        require_pushed_authorization_requests: false,
        allowed_origins: Vec::new(),
    })
}
