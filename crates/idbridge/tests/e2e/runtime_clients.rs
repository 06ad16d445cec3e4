//! Clients managed at run time, observed as an operator and an app observe
//! them: made through the admin API, a real code flow with the new client,
//! secret rotation with its grace period (moved through the broker's clock),
//! redirect URI updates, bad input naming the field and writing nothing,
//! config-file clients refused, deletion ending the client's grants; on SQLite
//! and Postgres; two broker processes on one Postgres seeing each change on
//! their next request; and `idbridge admin clients` on a real SQLite file.

use crate::both_backends;
use crate::cli::{bin, free_port, temp_dir, wait_for, Killed};
use crate::harness::*;
use serde_json::{json, Value};
use std::process::Stdio;

const ADMIN_TOKEN: &str = "t3st-Admin-Token_0123456789abcdefGHIJKL";
const SHOP: &str = "shop";
const SHOP_CB: &str = "https://shop.example/cb";
const SHOP_NEW_CB: &str = "https://shop.example/new-cb";

/// One admin API call: status, JSON body.
async fn api(base: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{base}/admin/v1{path}");
    let mut req = match method {
        "GET" => http().get(url),
        _ => http().post(url),
    }
    .bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["cache-control"], "no-store", "{path}");
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// An authorization URL for `client` (PKCE, offline_access, the dev connector).
fn authorize(base: &str, client: &str, redirect: &str) -> (String, String) {
    let verifier = "verifier-0123456789-0123456789-0123456789-runtime".to_owned();
    let mut u = url::Url::parse(&format!("{base}/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "openid profile offline_access")
        .append_pair("state", "s1")
        .append_pair("nonce", "n1")
        .append_pair("code_challenge", &idbridge_tokens::pkce_s256(&verifier))
        .append_pair("code_challenge_method", "S256")
        .append_pair("connector", "dev");
    (u.to_string(), verifier)
}

/// POST /token with Basic client authentication.
async fn token(base: &str, id: &str, secret: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = http()
        .post(format!("{base}/token"))
        .basic_auth(id, Some(secret))
        .form(form)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Sign in through `client` as `user` and redeem the code: the token response.
async fn code_flow(base: &str, id: &str, secret: &str, redirect: &str, user: &str) -> Value {
    let (url, verifier) = authorize(base, id, redirect);
    let b = browser();
    let mut back = sign_in(&b, base, &url, user).await;
    // A runtime client is asked about (no skip_consent) on its first sign-in.
    if is_consent_page(base, &back) {
        back = allow_consent(&b, &back).await;
    }
    assert!(back.starts_with(redirect), "{back}");
    let code = query_param(&back, "code").unwrap_or_else(|| panic!("no code: {back}"));
    let (status, t) = token(
        base,
        id,
        secret,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{t}");
    t
}

/// The status of a client-authenticated call that needs nothing else: a
/// revocation of a token never issued (RFC 7009: 200 once the client is known).
async fn auth_status(base: &str, id: &str, secret: &str) -> u16 {
    http()
        .post(format!("{base}/revoke"))
        .basic_auth(id, Some(secret))
        .form(&[("token", "never-issued")])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn userinfo_status(base: &str, access_token: &str) -> u16 {
    http()
        .get(format!("{base}/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn a_client_made_at_run_time_signs_in_rotates_changes_and_goes(db_url: &str) {
    let broker = start(db_url, None, |s| s.admin.tokens = vec![ADMIN_TOKEN.into()]).await;
    let base = broker.base.clone();

    // Create: 201, the secret once, a Location; show never has it.
    let (status, created) = api(
        &base,
        "POST",
        "/clients",
        Some(json!({
            "id": SHOP,
            "name": "The shop",
            "redirect_uris": [SHOP_CB],
            "post_logout_redirect_uris": ["https://shop.example/bye"],
            "reason": "new shop app",
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 43);
    assert!(secret
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(created["source"], "api");
    assert_eq!(created["public"], false);
    let (status, shown) = api(&base, "GET", "/clients/shop", None).await;
    assert_eq!(status, 200);
    assert!(
        !shown.to_string().contains(&secret),
        "show never has the secret"
    );
    assert_eq!(
        shown["secrets"],
        json!([{ "current": true, "expires_at": null }])
    );
    assert_eq!(shown["redirect_uris"], json!([SHOP_CB]));

    // A real code flow with it, and a refresh.
    let t = code_flow(&base, SHOP, &secret, SHOP_CB, "alice").await;
    assert_eq!(claims(t["id_token"].as_str().unwrap())["aud"], SHOP);
    let refresh = |rt: String, s: String| {
        let base = base.clone();
        async move {
            token(
                &base,
                SHOP,
                &s,
                &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
            )
            .await
        }
    };
    let (status, t) = refresh(t["refresh_token"].as_str().unwrap().into(), secret.clone()).await;
    assert_eq!(status, 200, "{t}");

    // Rotate with an hour's grace: both secrets work, show has both as expiry.
    let (status, rotated) = api(
        &base,
        "POST",
        "/clients/shop/rotate-secret",
        Some(json!({ "grace": "1h" })),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    let grace_end = rotated["previous_secret_expires_at"].as_i64().unwrap();
    let now = broker.clock().now();
    assert!(
        (now + 3590..=now + 3600).contains(&grace_end),
        "{grace_end} vs {now}"
    );
    assert_eq!(
        auth_status(&base, SHOP, &secret).await,
        200,
        "old, inside the grace"
    );
    assert_eq!(auth_status(&base, SHOP, &new_secret).await, 200, "new");
    let (status, t) = refresh(t["refresh_token"].as_str().unwrap().into(), secret.clone()).await;
    assert_eq!(
        status, 200,
        "the old secret refreshes inside the grace: {t}"
    );
    let (_, shown) = api(&base, "GET", "/clients/shop", None).await;
    assert_eq!(
        shown["secrets"],
        json!([{ "current": true, "expires_at": null }, { "current": false, "expires_at": grace_end }])
    );
    assert!(!shown.to_string().contains(&new_secret));

    // After the grace the old secret is refused, with a log line saying why.
    broker.clock().advance(3601);
    assert_eq!(
        auth_status(&base, SHOP, &secret).await,
        401,
        "old, after the grace"
    );
    assert_eq!(auth_status(&base, SHOP, &new_secret).await, 200);
    let (status, err) = refresh(t["refresh_token"].as_str().unwrap().into(), secret.clone()).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert!(!log_lines(&["client authentication failed", "\"shop\"", "wrong secret"]).is_empty());
    let (_, shown) = api(&base, "GET", "/clients/shop", None).await;
    assert_eq!(
        shown["secrets"],
        json!([{ "current": true, "expires_at": null }])
    );

    // Update the redirect URIs: the old one is refused at /authorize, the new works.
    let (status, updated) = api(
        &base,
        "POST",
        "/clients/shop/update",
        Some(json!({ "redirect_uris": [SHOP_NEW_CB], "reason": "moved" })),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["changed"], json!(["redirect_uris"]));
    assert!(updated.get("client_secret").is_none());
    let (url, _) = authorize(&base, SHOP, SHOP_CB);
    let resp = browser().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 400, "the old redirect URI is refused");
    assert!(!location(&resp).starts_with(SHOP_CB));
    let t = code_flow(&base, SHOP, &new_secret, SHOP_NEW_CB, "alice").await;
    let access = t["access_token"].as_str().unwrap().to_owned();
    let refresh_token = t["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo_status(&base, &access).await, 200);

    // Bad input: 400 naming the field, in the config file's words; nothing written.
    for (body, field, words) in [
        (
            json!({ "redirect_uris": ["http://shop.example/cb"] }),
            "redirect_uris",
            "http is allowed only on loopback hosts; use https",
        ),
        (
            json!({ "redirect_uris": [] }),
            "redirect_uris",
            "at least one redirect URI is required",
        ),
        (
            json!({ "connectors": ["dev", "nope"] }),
            "connectors",
            "no connector with id \"nope\"",
        ),
        (
            json!({ "allowed_origins": ["https://shop.example/path"] }),
            "allowed_origins",
            "an origin is scheme, host and port only",
        ),
        (
            json!({ "id_token_signed_response_alg": "HS256" }),
            "id_token_signed_response_alg",
            "is not one of signing.algorithms",
        ),
        (
            json!({ "token_endpoint_auth_method": "private_key_jwt" }),
            "token_endpoint_auth_method",
            "use none",
        ),
    ] {
        let (status, err) = api(&base, "POST", "/clients/shop/update", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"], "invalid_request");
        assert_eq!(err["field"], field, "{err}");
        let d = err["error_description"].as_str().unwrap();
        assert!(
            d.starts_with(&format!("{field}: ")) && d.contains(words),
            "{d}"
        );
    }
    let (status, err) = api(
        &base,
        "POST",
        "/clients/shop/update",
        Some(json!({ "secret": "x" })),
    )
    .await;
    assert_eq!(status, 400, "unknown field: {err}");
    let (_, after) = api(&base, "GET", "/clients/shop", None).await;
    assert_eq!(
        after["redirect_uris"],
        json!([SHOP_NEW_CB]),
        "nothing half-written"
    );
    assert_eq!(after["connectors"], json!([]));
    assert_eq!(after["updated_at"], updated["updated_at"]);
    let (status, err) = api(
        &base,
        "POST",
        "/clients",
        Some(json!({ "id": SHOP, "redirect_uris": [SHOP_CB] })),
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (409, Some("client_exists"))
    );

    // Clients of the config file are listed but read-only.
    let (_, list) = api(&base, "GET", "/clients", None).await;
    let source = |id: &str| {
        list["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["source"].clone())
    };
    assert_eq!(source(APP_ID), Some(json!("config")));
    assert_eq!(source(SHOP), Some(json!("api")));
    for (path, body) in [
        ("/clients/app/update", json!({ "redirect_uris": [SHOP_CB] })),
        ("/clients/app/rotate-secret", json!({})),
        ("/clients/app/delete", json!({})),
        (
            "/clients",
            json!({ "id": APP_ID, "redirect_uris": [SHOP_CB] }),
        ),
    ] {
        let (status, err) = api(&base, "POST", path, Some(body)).await;
        assert_eq!(
            (status, err["error"].as_str()),
            (409, Some("read_only")),
            "{path}"
        );
        assert!(
            err["error_description"]
                .as_str()
                .unwrap()
                .contains("config file"),
            "{err}"
        );
    }
    assert_eq!(
        auth_status(&base, APP_ID, APP_SECRET).await,
        200,
        "app untouched"
    );

    // Delete: invalid_client at the token endpoint, refresh fails, its access
    // tokens refused by userinfo at once.
    let (status, deleted) = api(
        &base,
        "POST",
        "/clients/shop/delete",
        Some(json!({ "reason": "shop closed" })),
    )
    .await;
    assert_eq!(status, 200, "{deleted}");
    // Two sign-ins, two grants (a refresh keeps its grant).
    assert_eq!(deleted["grants_revoked"], 2, "{deleted}");
    let (status, err) = token(
        &base,
        SHOP,
        &new_secret,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
        ],
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert_eq!(userinfo_status(&base, &access).await, 401);
    let (status, _) = api(&base, "GET", "/clients/shop", None).await;
    assert_eq!(status, 404);
    let (status, _) = api(&base, "POST", "/clients/shop/delete", None).await;
    assert_eq!(status, 404);

    // The audit log: every change, by whom, never a secret.
    let admin = idbridge_server::admin::tokens::token_id(ADMIN_TOKEN);
    for event in [
        "admin_client_create",
        "admin_client_rotate_secret",
        "admin_client_update",
        "admin_client_delete",
    ] {
        let rows = audit_events(&broker, event).await;
        assert_eq!(rows.len(), 1, "{event}");
        let e = &rows[0].event;
        assert_eq!(e.client_id.as_deref(), Some(SHOP));
        assert_eq!(e.detail["admin"], admin.as_str(), "{event}");
        let text = e.detail.to_string();
        assert!(
            !text.contains(&secret) && !text.contains(&new_secret),
            "{event}: {text}"
        );
    }
    let update = &audit_events(&broker, "admin_client_update").await[0].event;
    assert_eq!(
        update.detail["changed"]["redirect_uris"],
        json!({ "from": [SHOP_CB], "to": [SHOP_NEW_CB] })
    );
    assert_eq!(update.detail["reason"], "moved");
    broker.stop().await;
}
both_backends!(a_client_made_at_run_time_signs_in_rotates_changes_and_goes);

/// A public client and one held to client_secret_post, made at run time.
async fn public_and_post_only_clients(db_url: &str) {
    let broker = start(db_url, None, |s| s.admin.tokens = vec![ADMIN_TOKEN.into()]).await;
    let base = broker.base.clone();
    let (status, spa) = api(
        &base,
        "POST",
        "/clients",
        Some(json!({ "public": true, "redirect_uris": ["http://127.0.0.1:5173/cb"], "allowed_origins": ["http://127.0.0.1:5173"] })),
    )
    .await;
    assert_eq!(status, 201, "{spa}");
    assert!(spa.get("client_secret").is_none());
    assert_eq!(spa["token_endpoint_auth_method"], "none");
    assert_eq!(spa["id"].as_str().unwrap().len(), 22, "a generated id");
    // Its origin gets CORS at once.
    let pre = http()
        .request(reqwest::Method::OPTIONS, format!("{base}/token"))
        .header("origin", "http://127.0.0.1:5173")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "http://127.0.0.1:5173"
    );

    let (status, post) = api(
        &base,
        "POST",
        "/clients",
        Some(json!({ "id": "poster", "token_endpoint_auth_method": "client_secret_post", "redirect_uris": [SHOP_CB] })),
    )
    .await;
    assert_eq!(status, 201, "{post}");
    let secret = post["client_secret"].as_str().unwrap();
    let by_post = http()
        .post(format!("{base}/revoke"))
        .form(&[
            ("token", "never-issued"),
            ("client_id", "poster"),
            ("client_secret", secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(by_post.status(), 200);
    assert_eq!(
        auth_status(&base, "poster", secret).await,
        401,
        "Basic refused"
    );
    assert!(!log_lines(&[
        "\"poster\"",
        "registered for client_secret_post, sent client_secret_basic"
    ])
    .is_empty());
    // Made public: its secret stops working; no secret to rotate.
    let (status, _) = api(
        &base,
        "POST",
        "/clients/poster/update",
        Some(json!({ "public": true })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(auth_status(&base, "poster", secret).await, 401);
    let (status, err) = api(&base, "POST", "/clients/poster/rotate-secret", None).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (409, Some("public_client"))
    );
    let (status, err) = api(
        &base,
        "POST",
        "/clients/poster/rotate-secret",
        Some(json!({ "grace": "31d" })),
    )
    .await;
    assert_eq!(
        (status, err["field"].as_str()),
        (400, Some("grace")),
        "{err}"
    );
    broker.stop().await;
}
both_backends!(public_and_post_only_clients);

/// `idbridge serve --dev` on `port`, on `db_url`, with the admin API on.
fn broker_process(dir: &std::path::Path, port: u16, db_url: &str, issuer: &str) -> Killed {
    Killed(
        bin()
            .args([
                "serve",
                "--dev",
                "--sim-port",
                "0",
                "--port",
                &port.to_string(),
                "--dir",
            ])
            .arg(dir)
            .env("IDBRIDGE__STORAGE__URL", db_url)
            .env("IDBRIDGE__ISSUER", issuer)
            .env("IDBRIDGE__ADMIN__TOKENS", ADMIN_TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Two broker processes on one Postgres: a client made through A signs in
/// through B; a rotation on B (no grace) and a deletion on A hold on the
/// other's very next request (nothing is cached: the bound is zero).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_see_client_changes_on_the_next_request() {
    let db = TestDb::new(Db::Postgres);
    let dir = temp_dir("runtime-clients");
    let (pa, pb) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{pa}");
    let (a, b) = (issuer.clone(), format!("http://127.0.0.1:{pb}"));
    let _pa = broker_process(&dir, pa, &db.url(), &issuer);
    let _pb = broker_process(&dir, pb, &db.url(), &issuer);
    wait_for(&a).await;
    wait_for(&b).await;

    let (status, created) = api(
        &a,
        "POST",
        "/clients",
        // First-party: the callback answers the app at once (no consent page).
        Some(json!({ "id": SHOP, "redirect_uris": [SHOP_CB], "skip_consent": true })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["skip_consent"], true, "{created}");
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(
        auth_status(&b, SHOP, &secret).await,
        200,
        "B knows it at once"
    );
    // Begin on A, come back through B (a load balancer may do that), redeem on B.
    let (url, verifier) = authorize(&a, SHOP, SHOP_CB);
    let page = http().get(&url).send().await.unwrap();
    let cookie = page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let state = state_from_page(&page.text().await.unwrap());
    let back = http()
        .get(format!("{b}/callback/dev"))
        .header("cookie", cookie)
        .query(&[("state", state.as_str()), ("user", "alice")])
        .send()
        .await
        .unwrap();
    let code = query_param(&location(&back), "code").expect("a code");
    let (status, t) = token(
        &b,
        SHOP,
        &secret,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", SHOP_CB),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{t}");

    // Rotate on B without grace: A refuses the old secret on its next request.
    let (status, rotated) = api(
        &b,
        "POST",
        "/clients/shop/rotate-secret",
        Some(json!({ "grace": 0 })),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(auth_status(&a, SHOP, &secret).await, 401);
    assert_eq!(auth_status(&a, SHOP, &new_secret).await, 200);
    let rt = t["refresh_token"].as_str().unwrap();
    let (status, t) = token(
        &a,
        SHOP,
        &new_secret,
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
    )
    .await;
    assert_eq!(status, 200, "{t}");

    // Delete on A: B answers invalid_client at once.
    let (status, _) = api(&a, "POST", "/clients/shop/delete", None).await;
    assert_eq!(status, 200);
    let rt = t["refresh_token"].as_str().unwrap();
    let (status, err) = token(
        &b,
        SHOP,
        &new_secret,
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let _ = std::fs::remove_dir_all(dir);
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn admin_clients(config: &str, args: &[&str]) -> Run {
    let out = bin()
        .env_remove("IDBRIDGE_LOG")
        .env("USER", "ops")
        .args(["admin", "clients"])
        .args(args)
        .args(["--config", config])
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `idbridge admin clients` on the SQLite file of a running broker: what it
/// does, the broker applies on its next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_command_changes_what_a_running_broker_accepts() {
    let db = TestDb::new(Db::Sqlite);
    let broker = start(&db.url(), None, |_| {}).await;
    let base = broker.base.clone();
    let dir = temp_dir("admin-clients");
    let config = dir.join("idbridge.toml");
    std::fs::write(
        &config,
        format!(
            "issuer = \"http://127.0.0.1:9\"\n[storage]\nurl = \"{}\"\n[signing]\nmaster_key = \"{MASTER_KEY}\"\n\
             [[connectors]]\nid = \"dev\"\ntype = \"dev\"\n\
             [[clients]]\nid = \"app\"\nsecret = \"{APP_SECRET}\"\nredirect_uris = [\"{APP_REDIRECT}\"]\n",
            db.url()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    let r = admin_clients(
        config,
        &[
            "create",
            "--id",
            "cli-app",
            "--name",
            "CLI app",
            "--redirect-uri",
            SHOP_CB,
            "--json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let created: Value = serde_json::from_str(&r.stdout).unwrap();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(auth_status(&base, "cli-app", &secret).await, 200);

    let r = admin_clients(config, &["list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("SOURCE"),
        "{}",
        r.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("app ") && l.contains("config")),
        "{}",
        r.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("cli-app ") && l.contains("api")),
        "{}",
        r.stdout
    );

    let r = admin_clients(config, &["rotate-secret", "cli-app", "--grace", "0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let new_secret = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("client_secret "))
        .unwrap()
        .to_owned();
    assert_eq!(auth_status(&base, "cli-app", &secret).await, 401);
    assert_eq!(auth_status(&base, "cli-app", &new_secret).await, 200);
    let r = admin_clients(config, &["show", "cli-app"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !r.stdout.contains(&new_secret) && r.stdout.contains("CLI app"),
        "{}",
        r.stdout
    );

    let r = admin_clients(
        config,
        &[
            "update",
            "cli-app",
            "--redirect-uri",
            "http://shop.example/cb",
        ],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("bad input: redirect_uris: \"http://shop.example/cb\": http is allowed only on loopback hosts"),
        "{}",
        r.stderr
    );
    let r = admin_clients(
        config,
        &[
            "update",
            "cli-app",
            "--connector",
            "dev",
            "--require-phone",
            "false",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("updated (connectors)"), "{}", r.stdout);
    let r = admin_clients(config, &["delete", "app"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("refused:") && r.stderr.contains("config file"),
        "{}",
        r.stderr
    );

    let r = admin_clients(config, &["delete", "cli-app", "--reason", "done"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(auth_status(&base, "cli-app", &new_secret).await, 401);
    let r = admin_clients(config, &["show", "cli-app"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let deleted = audit_events(&broker, "admin_client_delete").await;
    assert_eq!(deleted[0].event.detail["admin"], "cli:ops");
    let _ = std::fs::remove_dir_all(dir);
    broker.stop().await;
}

const REGISTRATION_TOKEN: &str = "r3gistration-Token_0123456789abcdefGHIJ";

/// RFC 7591 dynamic registration: off by default; with an initial access
/// token, an app registers itself and signs a person in with what it got.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamic_registration_is_off_by_default_and_needs_an_initial_access_token() {
    let db = TestDb::new(Db::Sqlite);
    let off = start(&db.url(), None, |_| {}).await;
    let meta = get_json(
        &http(),
        format!("{}/.well-known/openid-configuration", off.base),
    )
    .await;
    assert!(meta.get("registration_endpoint").is_none(), "{meta}");
    let resp = http()
        .post(format!("{}/register", off.base))
        .bearer_auth(REGISTRATION_TOKEN)
        .json(&json!({ "redirect_uris": [SHOP_CB] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    off.stop().await;

    let broker = start(&db.url(), None, |s| {
        s.admin.registration_tokens = vec![REGISTRATION_TOKEN.into()]
    })
    .await;
    let base = broker.base.clone();
    let meta = get_json(&http(), format!("{base}/.well-known/openid-configuration")).await;
    assert_eq!(meta["registration_endpoint"], format!("{base}/register"));
    let register = |token: Option<&'static str>, body: Value| {
        let base = base.clone();
        async move {
            let mut req = http().post(format!("{base}/register")).json(&body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.headers()["cache-control"], "no-store");
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, err) = register(None, json!({ "redirect_uris": [SHOP_CB] })).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("invalid_token"))
    );
    let (status, err) = register(Some(ADMIN_TOKEN), json!({ "redirect_uris": [SHOP_CB] })).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("invalid_token")),
        "another token"
    );
    let token = Some(REGISTRATION_TOKEN);
    let (status, err) = register(
        token,
        json!({ "redirect_uris": ["http://shop.example/cb"] }),
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_redirect_uri")),
        "{err}"
    );
    assert!(err["error_description"]
        .as_str()
        .unwrap()
        .contains("http is allowed only on loopback hosts"));
    let (status, err) = register(
        token,
        json!({ "redirect_uris": [SHOP_CB], "grant_types": ["client_credentials"] }),
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_client_metadata")),
        "{err}"
    );
    let (status, err) = register(
        token,
        json!({ "redirect_uris": [SHOP_CB], "token_endpoint_auth_method": "private_key_jwt" }),
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_client_metadata")),
        "{err}"
    );
    assert!(
        broker.state.store.list_clients().await.unwrap().is_empty(),
        "nothing written"
    );

    let (status, reg) = register(
        token,
        json!({ "redirect_uris": [SHOP_CB], "client_name": "Self-made", "logo_uri": "https://shop.example/logo.png" }),
    )
    .await;
    assert_eq!(status, 201, "{reg}");
    let id = reg["client_id"].as_str().unwrap().to_owned();
    let secret = reg["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(reg["client_secret_expires_at"], 0);
    assert_eq!(reg["client_name"], "Self-made");
    assert_eq!(reg["redirect_uris"], json!([SHOP_CB]));
    let t = code_flow(&base, &id, &secret, SHOP_CB, "bob").await;
    assert_eq!(claims(t["id_token"].as_str().unwrap())["aud"], id.as_str());
    let created = audit_events(&broker, "admin_client_create").await;
    assert_eq!(created[0].event.client_id.as_deref(), Some(id.as_str()));
    assert_eq!(created[0].event.detail["via"], "registration");
    assert_eq!(
        created[0].event.detail["admin"],
        idbridge_server::admin::tokens::token_id(REGISTRATION_TOKEN).as_str()
    );
    assert!(!created[0].event.detail.to_string().contains(&secret));
    broker.stop().await;
}
