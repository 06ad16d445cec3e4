//! The token endpoint (authorization code and refresh token grants, with the
//! client authentication configured) and the userinfo endpoint.

use crate::config::{ClientAuth, Credentials};
use crate::http::{json_object, shown, Answer, Http};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use idbridge_connector_kit::call::endpoint;
use idbridge_connector_kit::flow::random_token;
use idbridge_connector_kit::oauth_errors::{clean_description, token_error, TokenFailure};
use idbridge_connector_kit::options::Secret;
use idbridge_core::{ConnectorError, ErrorKind, Stage};
use serde_json::{Map, Value};

/// The token endpoint's successful answer.
#[derive(Clone)]
pub struct Tokens {
    pub access_token: String,
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_in: Option<i64>,
    pub refresh_expires_in: Option<i64>,
    pub scope: Option<String>,
}

/// RFC 6749 2.3.1: the id and secret are form-urlencoded before Basic.
fn basic(client_id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(client_id), enc(secret)))
    )
}

/// Who we are, at the token endpoint.
pub struct Client<'a> {
    pub http: &'a Http,
    pub client_id: &'a str,
    pub credentials: &'a Credentials,
    pub token_endpoint: &'a str,
    pub now: i64,
    /// The secret a preset made for [`Credentials::Provided`].
    pub provided_secret: Option<Secret>,
}

impl Client<'_> {
    fn authenticated(
        &self,
        stage: Stage,
        mut form: Vec<(&'static str, String)>,
    ) -> Result<reqwest::RequestBuilder, ConnectorError> {
        let mut request = self.http.post(self.token_endpoint);
        match self.credentials {
            Credentials::Secret(ClientAuth::SecretPost, secret) => {
                form.push(("client_id", self.client_id.to_owned()));
                form.push(("client_secret", secret.expose().to_owned()));
            }
            Credentials::Secret(_, secret) => {
                request = request.header(
                    reqwest::header::AUTHORIZATION,
                    basic(self.client_id, secret.expose()),
                );
            }
            Credentials::Provided(method) => {
                let Some(secret) = &self.provided_secret else {
                    return Err(ConnectorError::new(stage, ErrorKind::Misconfigured)
                        .fix("the connector made no client secret for the token request"));
                };
                if *method == ClientAuth::SecretBasic {
                    request = request.header(
                        reqwest::header::AUTHORIZATION,
                        basic(self.client_id, secret.expose()),
                    );
                } else {
                    form.push(("client_id", self.client_id.to_owned()));
                    form.push(("client_secret", secret.expose().to_owned()));
                }
            }
            Credentials::PrivateKey(key) => {
                let mut header = jsonwebtoken::Header::new(key.alg);
                header.kid = key.kid.clone();
                let claims = serde_json::json!({
                    "iss": self.client_id,
                    "sub": self.client_id,
                    "aud": self.token_endpoint,
                    "jti": random_token(24),
                    "iat": self.now,
                    "exp": self.now + 60,
                });
                let assertion = jsonwebtoken::encode(&header, &claims, &key.key).map_err(|_| {
                    ConnectorError::new(stage, ErrorKind::Misconfigured)
                        .fix("cannot sign the client assertion with private_key: check it matches private_key_alg")
                })?;
                form.push(("client_id", self.client_id.to_owned()));
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
                ));
                form.push(("client_assertion", assertion));
            }
        }
        Ok(request
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form))
    }

    /// `grant_type=authorization_code`.
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<Tokens, ConnectorError> {
        let form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", redirect_uri.to_owned()),
            ("code_verifier", verifier.to_owned()),
        ];
        let request = self.authenticated(Stage::TokenExchange, form)?;
        self.call(Stage::TokenExchange, "the code exchange", request)
            .await
    }

    /// `grant_type=refresh_token`.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, ConnectorError> {
        let form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token.to_owned()),
        ];
        let request = self.authenticated(Stage::Refresh, form)?;
        self.call(Stage::Refresh, "the refresh token grant", request)
            .await
    }

    async fn call(
        &self,
        stage: Stage,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Tokens, ConnectorError> {
        let url = self.token_endpoint;
        let answer = self
            .http
            .send(stage, (what, endpoint::TOKEN), url, request)
            .await?;
        if answer.status != 200 {
            return Err(self.token_error(stage, what, &answer));
        }
        let body = json_object(stage, what, url, &answer)?;
        let field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
        let Some(access_token) = field("access_token").filter(|t| !t.is_empty()) else {
            return Err(
                ConnectorError::new(stage, ErrorKind::BadResponse).fix(format!(
                    "the token endpoint {} answered {what} without an access_token",
                    shown(url)
                )),
            );
        };
        if let Some(t) = field("token_type") {
            if !t.eq_ignore_ascii_case("bearer") && !t.eq_ignore_ascii_case("dpop") {
                return Err(ConnectorError::new(stage, ErrorKind::BadResponse).fix(format!(
                    "the token endpoint issued a token of type {t:?}; only Bearer tokens are supported"
                )));
            }
        }
        let seconds = |k: &str| {
            body.get(k).and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
        };
        Ok(Tokens {
            access_token,
            id_token: field("id_token").filter(|t| !t.is_empty()),
            refresh_token: field("refresh_token").filter(|t| !t.is_empty()),
            expires_in: seconds("expires_in"),
            refresh_expires_in: seconds("refresh_expires_in"),
            scope: field("scope"),
        })
    }

    fn token_error(&self, stage: Stage, what: &str, answer: &Answer) -> ConnectorError {
        let body: Map<String, Value> = serde_json::from_slice(&answer.body).unwrap_or_default();
        let code = body.get("error").and_then(Value::as_str);
        let description = clean_description(
            body.get("error_description")
                .and_then(Value::as_str)
                .unwrap_or(""),
        );
        let method = self.credentials.method().as_str();
        let credentials_fix = match self.credentials {
            Credentials::PrivateKey(_) => format!("the provider refused the client authentication of client_id {:?} (token_endpoint_auth = \"private_key_jwt\"): check that the public key of private_key (kid private_key_id) is registered for the client at the provider, and that the client is set up for private_key_jwt", self.client_id),
            Credentials::Provided(_) => format!("the provider refused client_id {:?} with the client secret this connector made", self.client_id),
            Credentials::Secret(..) => format!("the provider refused client_id {:?} with its client_secret (token_endpoint_auth = {method:?}): check that client_secret (or client_secret_file) is the client's current secret at the provider and that the client is set up for {method}", self.client_id),
        };
        token_error(
            stage,
            TokenFailure {
                code,
                description: &description,
                status: answer.status,
                endpoint: self.token_endpoint,
                what,
                credentials_fix,
                client_id: self.client_id,
            },
        )
    }
}

/// The userinfo endpoint's claims for `access_token`.
pub async fn userinfo(
    http: &Http,
    stage: Stage,
    url: &str,
    access_token: &str,
) -> Result<Map<String, Value>, ConnectorError> {
    let what = "the userinfo request";
    let request = http
        .get(url)
        .bearer_auth(access_token)
        .header(reqwest::header::ACCEPT, "application/json");
    let answer = http
        .send(stage, (what, endpoint::USERINFO), url, request)
        .await?;
    if answer.status != 200 {
        let kind = match answer.status {
            429 => ErrorKind::RateLimited,
            s if s >= 500 => ErrorKind::UpstreamUnavailable,
            _ => ErrorKind::BadResponse,
        };
        return Err(ConnectorError::new(stage, kind)
            .upstream(
                format!("HTTP {}", answer.status),
                answer
                    .www_authenticate
                    .clone()
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect::<String>(),
            )
            .fix(format!(
                "the userinfo endpoint {} refused the access token it just issued (HTTP {}): check that the client may read userinfo, or set claims_source = \"id_token\"",
                shown(url),
                answer.status
            )));
    }
    if answer
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with("application/jwt"))
    {
        return Err(ConnectorError::new(stage, ErrorKind::Misconfigured).fix(
            "the provider signs its userinfo answers (application/jwt), which this connector does not read: turn that off for the client, or set claims_source = \"id_token\"",
        ));
    }
    json_object(stage, what, url, &answer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn basic_auth_form_encodes_first() {
        // RFC 6749 2.3.1: "a:b c" → "a%3Ab+c".
        let h = basic("my:id", "s e/c");
        let decoded =
            String::from_utf8(STANDARD.decode(h.trim_start_matches("Basic ")).unwrap()).unwrap();
        assert_eq!(decoded, "my%3Aid:s+e%2Fc");
    }
}
