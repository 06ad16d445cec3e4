//! Client authentication diagnostics: every refusal writes one WARN line with
//! the client id (escaped) and the reason, and no secret ever reaches the log.

use crate::both_backends;
use crate::harness::*;
use base64::Engine;

fn basic(raw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

async fn client_authentication_failures_are_logged_with_their_reason(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let base = broker.base.clone();
    // Unique per run, so this test's lines are told apart from other tests'.
    let tag = base.rsplit(':').next().unwrap().to_owned();
    let token = |auth: Option<String>, form: Vec<(&'static str, String)>| {
        let base = base.clone();
        async move {
            let mut req = http().post(format!("{base}/token"));
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let mut form = form;
            form.push(("grant_type", "refresh_token".into()));
            form.push(("refresh_token", "x".into()));
            let resp = req.form(&form).send().await.unwrap();
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap();
            (status, body["error"].as_str().unwrap_or("").to_owned())
        }
    };
    let wrong = format!("wrong-secret-{tag}");
    let ghost_secret = format!("ghost-secret-{tag}");
    let spa_secret = format!("spa-secret-{tag}");
    let ghost = format!("ghost\"{tag}");
    let mismatch = format!("mismatch-{tag}");
    // (request, answer, needles of its log line)
    let cases: Vec<((u16, String), Vec<String>)> = vec![
        (
            token(None, vec![]).await,
            vec![r#"reason="no credentials""#.into()],
        ),
        (
            token(Some(basic(&format!("ghost%22{tag}:{ghost_secret}"))), vec![]).await,
            vec![
                format!(r#"client_id="ghost\"{tag}""#),
                r#"reason="unknown client""#.into(),
            ],
        ),
        (
            token(None, vec![("client_id", ghost.clone())]).await,
            vec![
                format!(r#"client_id="ghost\"{tag}""#),
                r#"reason="unknown client""#.into(),
            ],
        ),
        (
            token(Some(basic(&format!("{APP_ID}:{wrong}"))), vec![]).await,
            vec![
                format!(r#"client_id="{APP_ID}""#),
                r#"reason="wrong secret""#.into(),
            ],
        ),
        (
            token(None, vec![("client_id", OTHER_ID.into())]).await,
            vec![
                format!(r#"client_id="{OTHER_ID}""#),
                r#"reason="method not allowed for this client: a confidential client sent no secret""#.into(),
            ],
        ),
        (
            token(
                None,
                vec![
                    ("client_id", SPA_ID.into()),
                    ("client_secret", spa_secret.clone()),
                ],
            )
            .await,
            vec![
                format!(r#"client_id="{SPA_ID}""#),
                r#"reason="method not allowed for this client: a public client sent a secret""#
                    .into(),
            ],
        ),
        (
            token(
                Some(basic(&format!("{APP_ID}:{APP_SECRET}"))),
                vec![("client_secret", APP_SECRET.into())],
            )
            .await,
            vec![
                format!(r#"client_id="{APP_ID}""#),
                r#"reason="credentials sent twice (Basic and form)""#.into(),
            ],
        ),
        (
            token(
                Some(basic(&format!("{APP_ID}:{APP_SECRET}"))),
                vec![("client_id", mismatch.clone())],
            )
            .await,
            vec![
                format!(r#"client_id="{APP_ID}""#),
                r#"reason="client_id in the form differs from the one in Basic""#.into(),
            ],
        ),
        (
            token(Some(format!("Basic !!{tag}!!")), vec![]).await,
            vec![r#"reason="malformed Basic""#.into()],
        ),
        (
            token(Some(basic(&format!("ctl%0A{tag}:{APP_SECRET}"))), vec![]).await,
            vec![
                format!(r#"client_id="ctl\n{tag}""#),
                r#"reason="malformed Basic""#.into(),
            ],
        ),
    ];
    let expected = [
        (401, "invalid_client"),
        (401, "invalid_client"),
        (401, "invalid_client"),
        (401, "invalid_client"),
        (401, "invalid_client"),
        (401, "invalid_client"),
        (400, "invalid_request"),
        (400, "invalid_request"),
        (401, "invalid_client"),
        (400, "invalid_request"),
    ];
    for (((status, error), needles), (want_status, want_error)) in cases.iter().zip(expected) {
        assert_eq!(
            (*status, error.as_str()),
            (want_status, want_error),
            "{needles:?}"
        );
        let mut needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        needles.extend([
            "WARN",
            r#"stage="client_auth""#,
            "client authentication failed",
        ]);
        let lines = log_lines(&needles);
        assert!(!lines.is_empty(), "no log line with {needles:?}");
    }
    // Exactly one line per refusal where the line is this run's own.
    assert_eq!(
        log_lines(&[&format!(r#"client_id="ghost\"{tag}""#), "unknown client"]).len(),
        2
    );
    // The unknown client id with a quote is escaped, never written raw.
    assert!(log_lines(&[&format!("\"ghost\"{tag}\"")]).is_empty());
    // No secret, right or wrong, is ever written.
    for secret in [APP_SECRET, OTHER_SECRET, &wrong, &ghost_secret, &spa_secret] {
        assert!(log_lines(&[secret]).is_empty(), "{secret} was logged");
    }
    // A good client still gets through (and is not logged as refused).
    let ok = http()
        .post(format!("{}/token", broker.base))
        .basic_auth(APP_ID, Some(APP_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        ok.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
}
both_backends!(client_authentication_failures_are_logged_with_their_reason);
