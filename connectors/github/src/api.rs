//! The REST calls a GitHub sign-in makes with the person's token: `GET /user`
//! (id, login, name, avatar), `GET /user/emails` (the primary verified
//! address; scope `user:email`) and, with `allowed_orgs`, `GET /user/orgs`
//! (scope `read:org`).

use crate::config::API_VERSION;
use idbridge_connector_oauth2::{api_error, ApiAnswer, OAuthClient};
use idbridge_core::{ConnectorError, ErrorKind, Stage};
use serde_json::Value;

/// The headers GitHub's REST API asks for (the client sends the User-Agent).
const HEADERS: [(&str, &str); 2] = [
    ("accept", "application/vnd.github+json"),
    ("x-github-api-version", API_VERSION),
];

/// Organisations read at most (10 pages of 100).
const MAX_ORG_PAGES: u32 = 10;

pub struct Api<'a> {
    pub client: &'a OAuthClient,
    pub api_url: &'a str,
    pub token: &'a str,
    pub stage: Stage,
}

/// Who `/user` says the person is.
pub struct User {
    pub id: u64,
    pub login: String,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    pub html_url: Option<String>,
}

impl Api<'_> {
    async fn get(&self, what: &str, path: &str) -> Result<(String, ApiAnswer), ConnectorError> {
        let url = format!("{}{path}", self.api_url);
        let answer = self
            .client
            .get(self.stage, what, &url, self.token, &HEADERS)
            .await?;
        Ok((url, answer))
    }

    fn failed(&self, what: &str, url: &str, answer: &ApiAnswer) -> ConnectorError {
        let mut e = api_error(self.stage, what, url, answer);
        if let Some(message) = answer.json().get("message").and_then(Value::as_str) {
            e.upstream_message = Some(message.chars().take(200).collect());
        }
        e
    }

    pub async fn user(&self) -> Result<User, ConnectorError> {
        let what = "GET /user";
        let (url, answer) = self.get(what, "/user").await?;
        if answer.status != 200 {
            return Err(self.failed(what, &url, &answer));
        }
        let doc = answer.json();
        let text = |k: &str| {
            doc.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let (Some(id), Some(login)) = (doc.get("id").and_then(Value::as_u64), text("login")) else {
            return Err(ConnectorError::new(self.stage, ErrorKind::BadResponse)
                .upstream("HTTP 200", answer.start())
                .fix(format!("{url} answered without a numeric id and a login: check api_url points at GitHub's REST API (https://api.github.com, or https://HOST/api/v3 on GitHub Enterprise Server)")));
        };
        Ok(User {
            id,
            login,
            name: text("name"),
            avatar_url: text("avatar_url"),
            html_url: text("html_url"),
        })
    }

    /// The primary address if GitHub says it is verified; `None` otherwise
    /// (also when the token may not read emails: scope `user:email` not
    /// granted, which is logged).
    pub async fn verified_primary_email(&self) -> Result<Option<String>, ConnectorError> {
        let what = "GET /user/emails";
        let (url, answer) = self.get(what, "/user/emails").await?;
        if answer.status == 404
            || (answer.status == 403 && answer.header("x-ratelimit-remaining") != Some("0"))
        {
            tracing::warn!(stage = self.stage.as_str(), status = answer.status, "GitHub does not let the broker read the person's emails (the token lacks scope user:email): no email claim; keep user:email in scopes");
            return Ok(None);
        }
        if answer.status != 200 {
            return Err(self.failed(what, &url, &answer));
        }
        let Value::Array(list) = answer.json() else {
            return Err(ConnectorError::new(self.stage, ErrorKind::BadResponse)
                .upstream("HTTP 200", answer.start())
                .fix(format!(
                    "{url} answered something else than a list of emails"
                )));
        };
        Ok(list
            .iter()
            .find(|e| {
                e.get("primary") == Some(&Value::Bool(true))
                    && e.get("verified") == Some(&Value::Bool(true))
            })
            .and_then(|e| e.get("email"))
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
            .map(str::to_owned))
    }

    /// The person's organisation logins (lower-cased) that the token may see.
    pub async fn orgs(&self) -> Result<Vec<String>, ConnectorError> {
        let what = "GET /user/orgs";
        let mut orgs = Vec::new();
        for page in 1..=MAX_ORG_PAGES {
            let (url, answer) = self
                .get(what, &format!("/user/orgs?per_page=100&page={page}"))
                .await?;
            if answer.status == 403 && answer.header("x-ratelimit-remaining") != Some("0") {
                return Err(ConnectorError::new(self.stage, ErrorKind::Misconfigured)
                    .upstream("HTTP 403", answer.json().get("message").and_then(Value::as_str).unwrap_or("").chars().take(200).collect::<String>())
                    .fix("GitHub does not let the broker list the person's organisations: scopes must hold read:org (the connector adds it when allowed_orgs is set; check a scopes key does not drop it)"));
            }
            if answer.status != 200 {
                return Err(self.failed(what, &url, &answer));
            }
            let Value::Array(list) = answer.json() else {
                return Err(
                    ConnectorError::new(self.stage, ErrorKind::BadResponse).fix(format!(
                        "{url} answered something else than a list of organisations"
                    )),
                );
            };
            orgs.extend(
                list.iter()
                    .filter_map(|o| o.get("login").and_then(Value::as_str))
                    .map(str::to_ascii_lowercase),
            );
            if list.len() < 100 {
                break;
            }
        }
        Ok(orgs)
    }
}
