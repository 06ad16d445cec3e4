//! The development connector: a page where you pick (or type) a test user, then a
//! callback like any upstream's. It exists so `idbridge serve --dev` and the tests
//! can sign people in with no upstream account; the registry refuses it outside
//! dev mode (`dev_only`).

use async_trait::async_trait;
use idbridge_core::{
    escape_html, Begin, BeginRequest, BuildContext, CallbackRequest, ConfigError, Connector,
    ConnectorError, ConnectorFactory, ConnectorId, ConnectorSettings, ErrorKind, ExternalIdentity,
    Locale, Profile, RequestContext, Stage, Started,
};
use std::sync::Arc;

/// Test users offered on the page: (subject, display name).
const TEST_USERS: &[(&str, &str)] = &[("alice", "Alice"), ("bob", "Bob"), ("zhangwei", "张伟")];

pub struct DevConnector {
    id: ConnectorId,
    name: String,
}

pub struct DevFactory;

impl ConnectorFactory for DevFactory {
    fn kind(&self) -> &'static str {
        "dev"
    }

    fn dev_only(&self) -> bool {
        true
    }

    fn build(
        &self,
        settings: &ConnectorSettings,
        _ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, Vec<ConfigError>> {
        if let Some(map) = settings.options.as_object() {
            if let Some(key) = map.keys().next() {
                return Err(vec![ConfigError::new(
                    format!("connectors[{}].{key}", settings.id),
                    "the dev connector takes no options",
                )]);
            }
        }
        Ok(Arc::new(DevConnector {
            id: settings.id.clone(),
            name: settings
                .name
                .clone()
                .unwrap_or_else(|| "Development login".to_owned()),
        }))
    }
}

/// A subject typed by hand must be short and URL-safe.
fn valid_subject(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[async_trait]
impl Connector for DevConnector {
    fn id(&self) -> &ConnectorId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "dev"
    }

    fn display_name(&self) -> &str {
        &self.name
    }

    async fn begin(
        &self,
        ctx: &RequestContext,
        request: &BeginRequest,
    ) -> Result<Started, ConnectorError> {
        let zh = ctx.locale == Locale::ZhCn;
        let (title, warning, pick, other, go, cancel) = if zh {
            (
                "开发用登录",
                "开发用连接器：没有真实的上游账号，仅在 idbridge serve --dev 中可用。",
                "选择测试用户",
                "或输入其他测试用户名（a-z、0-9、-、_）",
                "登录",
                "拒绝授权",
            )
        } else {
            (
                "Development sign-in",
                "Development connector: no real upstream account. Available only under idbridge serve --dev.",
                "Pick a test user",
                "or type another test user name (a-z, 0-9, -, _)",
                "Sign in",
                "Refuse",
            )
        };
        let action = escape_html(&request.callback_url);
        let state = escape_html(&request.state);
        let mut options = String::new();
        for (subject, name) in TEST_USERS {
            let selected = request
                .login_hint
                .as_deref()
                .is_some_and(|hint| hint == *subject);
            options.push_str(&format!(
                "<option value=\"{subject}\"{}>{} ({subject})</option>",
                if selected { " selected" } else { "" },
                escape_html(name)
            ));
        }
        let body_html = format!(
            "<p class=\"warning\" role=\"note\">{warning}</p>\
             <form method=\"get\" action=\"{action}\">\
             <input type=\"hidden\" name=\"state\" value=\"{state}\">\
             <label for=\"user\">{pick}</label>\
             <select id=\"user\" name=\"user\">{options}</select>\
             <label for=\"other\">{other}</label>\
             <input id=\"other\" name=\"other\" autocomplete=\"off\" pattern=\"[a-z0-9_-]{{1,32}}\">\
             <button type=\"submit\">{go}</button>\
             </form>\
             <p><a href=\"{action}?state={state}&amp;error=access_denied\">{cancel}</a></p>"
        );
        Ok(Started {
            begin: Begin::Page {
                title: title.to_owned(),
                body_html,
                script_sources: Vec::new(),
                frame_sources: Vec::new(),
            },
            flow_data: serde_json::Value::Null,
        })
    }

    async fn complete(
        &self,
        _ctx: &RequestContext,
        callback: &CallbackRequest,
    ) -> Result<ExternalIdentity, ConnectorError> {
        if callback.param("error").is_some() {
            return Err(
                ConnectorError::new(Stage::Callback, ErrorKind::UserCancelled).upstream(
                    "access_denied",
                    "the person refused on the development page",
                ),
            );
        }
        let subject = callback
            .param("other")
            .or_else(|| callback.param("user"))
            .ok_or_else(|| {
                ConnectorError::new(Stage::Callback, ErrorKind::InvalidRequest)
                    .fix("the development page must send `user`")
            })?;
        if !valid_subject(subject) {
            return Err(
                ConnectorError::new(Stage::Callback, ErrorKind::InvalidRequest)
                    .upstream(
                        "invalid_user",
                        format!("{subject:?} is not a valid test user name"),
                    )
                    .fix("use 1-32 characters of a-z, 0-9, '-' or '_'"),
            );
        }
        let name = TEST_USERS
            .iter()
            .find(|(s, _)| *s == subject)
            .map(|(_, n)| (*n).to_owned())
            .unwrap_or_else(|| subject.to_owned());
        // Test addresses, so apps can try the email scope: Alice's is verified,
        // Bob's is not, the others have none. Two more (typed, not offered),
        // for trying linking by email: "robert" has Bob's address verified (in
        // other letter case), "mallory" claims Alice's without verifying it.
        let (email, email_verified) = match subject {
            "alice" => (Some("alice@example.com"), Some(true)),
            "bob" => (Some("bob@example.com"), Some(false)),
            "robert" => (Some("Bob@Example.COM"), Some(true)),
            "mallory" => (Some("alice@example.com"), Some(false)),
            _ => (None, None),
        };
        Ok(ExternalIdentity {
            connector_id: self.id.clone(),
            subject: subject.to_owned(),
            link_key: None,
            profile: Profile {
                name: Some(name),
                email: email.map(str::to_owned),
                email_verified,
                ..Profile::default()
            },
            upstream_tokens: None,
            raw_claims: serde_json::json!({ "user": subject }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idbridge_connector_kit::testing;

    fn connector() -> Arc<dyn Connector> {
        testing::build(&DevFactory, "dev", serde_json::json!({})).unwrap()
    }

    fn callback(params: &[(&str, &str)]) -> CallbackRequest {
        testing::callback("dev", params)
    }

    #[tokio::test]
    async fn picked_user_becomes_the_subject() {
        let ctx = RequestContext::new("test", Locale::En, 0);
        let id = connector()
            .complete(&ctx, &callback(&[("state", "s"), ("user", "zhangwei")]))
            .await
            .unwrap();
        assert_eq!(id.subject, "zhangwei");
        assert_eq!(id.profile.name.as_deref(), Some("张伟"));
        assert!(id.link_key.is_none());
    }

    #[tokio::test]
    async fn refusal_and_bad_names_are_typed_errors() {
        let ctx = RequestContext::new("test", Locale::En, 0);
        let c = connector();
        let refused = c
            .complete(
                &ctx,
                &callback(&[("state", "s"), ("error", "access_denied")]),
            )
            .await
            .unwrap_err();
        assert_eq!(refused.kind, ErrorKind::UserCancelled);
        let bad = c
            .complete(&ctx, &callback(&[("state", "s"), ("other", "<script>")]))
            .await
            .unwrap_err();
        assert_eq!(bad.kind, ErrorKind::InvalidRequest);
    }

    #[tokio::test]
    async fn page_escapes_state_and_posts_to_callback() {
        let ctx = RequestContext::new("test", Locale::En, 0);
        let started = connector()
            .begin(
                &ctx,
                &BeginRequest::new("abc\"<x>", "http://127.0.0.1:1/callback/dev")
                    .with_login_hint(Some("bob".into())),
            )
            .await
            .unwrap();
        let Begin::Page { body_html, .. } = started.begin else {
            panic!("expected a page");
        };
        assert!(body_html.contains("action=\"http://127.0.0.1:1/callback/dev\""));
        assert!(body_html.contains("value=\"abc&quot;&lt;x&gt;\""));
        assert!(body_html.contains("<option value=\"bob\" selected>"));
    }

    #[test]
    fn refused_outside_dev_mode() {
        let registry = idbridge_core::Registry::new().with(DevFactory);
        let settings = testing::settings("dev", "dev", serde_json::json!({}));
        let ctx = testing::build_context_at("https://id.example.com", "dev", false);
        let errors = registry.build(&settings, &ctx).err().unwrap();
        assert!(errors[0].message.contains("development only"), "{errors:?}");
    }
}
