//! Text from outside, end to end: control characters in parameters, credentials,
//! paths and forms get a 400 (an OAuth error or a page that says what was wrong),
//! never a 5xx, on SQLite and Postgres; upstream profiles are screened the same
//! way on both (identifiers refused, display strings cleaned, https pictures
//! only); and the text log never lets a value start a line of its own.

use crate::accounts::{dev_callback, field};
use crate::harness::*;
use std::process::{Command, Stdio};
use std::time::Duration;
use wechat_sim::{dev, Endpoint, Fault, FaultKind, SimConfig, SimUser, Simulator};

const ADMIN_TOKEN: &str = "t3st-Admin-Token_0123456789abcdefGHIJKL";
const WECHAT_UA: &str = "Mozilla/5.0 (iPhone) AppleWebKit MicroMessenger/8.0.40";

/// A 400 OAuth JSON error `invalid_request` whose description names `what`.
async fn assert_invalid_request(resp: reqwest::Response, what: &str, label: &str) {
    let status = resp.status().as_u16();
    assert_eq!(
        resp.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "{label}"
    );
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    assert_eq!(status, 400, "{label}: {body}");
    assert_eq!(body["error"], "invalid_request", "{label}: {body}");
    let d = body["error_description"].as_str().unwrap_or_default();
    assert!(
        d.contains(what) && d.contains("control character"),
        "{label}: {body}"
    );
}

/// A 400 page saying a control character was found in `place`.
async fn assert_bad_input_page(resp: reqwest::Response, place: &str, label: &str) {
    let status = resp.status().as_u16();
    let page = resp.text().await.unwrap_or_default();
    assert_eq!(status, 400, "{label}: {page}");
    assert!(
        page.contains("holds a control character") && page.contains(place),
        "{label}: {page}"
    );
    assert!(
        page.contains("Go back to the application") || page.contains("Clear this site"),
        "{label}: {page}"
    );
}

async fn control_characters_in_requests_get_400_never_5xx(db_url: &str) {
    let broker = start(db_url, None, |s| s.admin.tokens = vec![ADMIN_TOKEN.into()]).await;
    let base = broker.base.clone();
    let http = http();

    // The back-channel endpoints: a form parameter, and HTTP Basic credentials.
    for endpoint in ["/token", "/revoke", "/introspect"] {
        let resp = http
            .post(format!("{base}{endpoint}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("client_id=heldout%00app&grant_type=authorization_code&code=x&token=x")
            .send()
            .await
            .unwrap();
        assert_invalid_request(resp, "client_id", endpoint).await;
        let resp = http
            .post(format!("{base}{endpoint}"))
            .basic_auth("held\0out", Some("secret"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "x"),
                ("token", "x"),
            ])
            .send()
            .await
            .unwrap();
        assert_invalid_request(resp, "Authorization header", endpoint).await;
        // A line break in another parameter, after a valid client.
        let name = if endpoint == "/token" {
            "refresh_token"
        } else {
            "token"
        };
        let resp = http
            .post(format!("{base}{endpoint}"))
            .basic_auth(APP_ID, Some(APP_SECRET))
            .form(&[("grant_type", "refresh_token"), (name, "a\nb")])
            .send()
            .await
            .unwrap();
        assert_invalid_request(resp, name, endpoint).await;
    }

    // The admin API: a path segment, a query parameter, a JSON body.
    let admin = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{base}{path}"))
            .bearer_auth(ADMIN_TOKEN)
    };
    let resp = admin(reqwest::Method::GET, "/admin/v1/users/a%00b")
        .send()
        .await
        .unwrap();
    assert_invalid_request(resp, "path", "admin path").await;
    let resp = admin(reqwest::Method::GET, "/admin/v1/users?q=a%00b")
        .send()
        .await
        .unwrap();
    assert_invalid_request(resp, "q", "admin query").await;
    let frank = tokens_for(&base, "frank").await;
    let sub = claims(frank["id_token"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = admin(
        reqwest::Method::POST,
        &format!("/admin/v1/users/{sub}/unlink"),
    )
    .json(&serde_json::json!({"connector_id": "dev", "subject": "fr\u{0}ank"}))
    .send()
    .await
    .unwrap();
    assert_invalid_request(resp, "subject", "admin body").await;

    // The hosted pages: a 400 page, in the person's language.
    let b = browser();
    let (authorize, _) = authorize_url(&base, &[]);
    let bad_client = authorize.replace(&format!("client_id={APP_ID}"), "client_id=x%00y");
    assert_bad_input_page(
        b.get(&bad_client).send().await.unwrap(),
        "client_id",
        "authorize",
    )
    .await;
    let resp = b
        .get(&bad_client)
        .header("accept-language", "zh-CN")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("控制字符") && page.contains("client_id"),
        "{page}"
    );
    let resp = b
        .get(format!("{base}/callback/dev?state=a%00b"))
        .send()
        .await
        .unwrap();
    assert_bad_input_page(resp, "state", "callback").await;
    let resp = b
        .get(format!("{base}/login/a%00b?connector=dev"))
        .send()
        .await
        .unwrap();
    assert_bad_input_page(resp, "path", "login").await;
    let resp = b
        .post(format!("{base}/authorize"))
        .form(&[
            ("client_id", APP_ID),
            ("redirect_uri", "https://app.example.com/callback\r\n"),
        ])
        .send()
        .await
        .unwrap();
    assert_bad_input_page(resp, "redirect_uri", "authorize form").await;

    // The account page's unlink form, posted by a signed-in person.
    let b = browser();
    let resp = b.get(format!("{base}/account")).send().await.unwrap();
    let chooser = location(&resp);
    let cb = dev_callback(&b, &base, &format!("{chooser}?connector=dev"), "grace").await;
    assert_eq!(cb.status(), 302);
    let page = get_text(&b, format!("{base}/account")).await;
    let resp = b
        .post(format!("{base}/account/unlink"))
        .form(&[
            ("csrf", field(&page, "csrf").as_str()),
            ("connector", "dev"),
            ("subject", "gr\u{0}ace"),
        ])
        .send()
        .await
        .unwrap();
    assert_bad_input_page(resp, "subject", "account unlink").await;
    // A cookie of the broker's with a NUL in it.
    let resp = http
        .get(format!("{base}/account"))
        .header("cookie", "idb_session=a%00b")
        .send()
        .await
        .unwrap();
    assert_bad_input_page(resp, "cookie idb_session", "cookie").await;

    // Nothing was half-written, and the broker still works.
    assert_eq!(
        broker.state.store.find_users("", 100).await.unwrap().len(),
        2,
        "frank and grace only"
    );
    assert!(tokens_for(&base, "frank").await["id_token"].is_string());
}
crate::both_backends!(control_characters_in_requests_get_400_never_5xx);

/// A broker with a wechat-web connector `{tag}` and a wechat-mp connector
/// `{tag}-mp` (snsapi_base: its openid comes from the code exchange alone).
async fn wechat_broker(db_url: &str, sim: &Simulator, tag: &str) -> Broker {
    let (base, tag) = (sim.base_url(), tag.to_owned());
    start(db_url, None, move |s| {
        s.connectors = vec![
            serde_json::json!({
                "id": tag, "type": "wechat-web", "name": "WeChat",
                "appid": dev::WEB_APPID, "appsecret": dev::WEB_SECRET,
                "open_platform_id": dev::OPEN_PLATFORM_ID,
                "api_base_url": base, "open_base_url": base, "timeout_secs": 1.0,
            }),
            serde_json::json!({
                "id": format!("{tag}-mp"), "type": "wechat-mp", "name": "WeChat MP",
                "appid": dev::MP_APPID, "appsecret": dev::MP_SECRET,
                "open_platform_id": dev::OPEN_PLATFORM_ID, "scope": "snsapi_base",
                "api_base_url": base, "open_base_url": base, "timeout_secs": 1.0,
            }),
        ];
    })
    .await
}

/// Begin at the broker with `connector` in a fresh browser with `ua`, and scan
/// at the simulator as `user`: the browser, the broker's callback, the verifier.
async fn scanned(
    broker: &Broker,
    sim: &Simulator,
    connector: &str,
    ua: &str,
    user: &str,
) -> (reqwest::Client, String, String) {
    let b = reqwest::Client::builder()
        .cookie_store(true)
        .user_agent(ua)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (url, verifier) = authorize_url(&broker.base, &[]);
    let url = url.replace("connector=dev", &format!("connector={connector}"));
    let resp = b.get(&url).send().await.unwrap();
    assert_eq!(
        resp.status(),
        302,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let callback = sim.scan(&location(&resp), user).unwrap().remove(0);
    (b, callback, verifier)
}

/// A whole sign-in through the website connector: the token response.
async fn web_sign_in(broker: &Broker, sim: &Simulator, tag: &str, user: &str) -> serde_json::Value {
    let (b, callback, verifier) = scanned(broker, sim, tag, "Mozilla/5.0", user).await;
    let resp = b.get(&callback).send().await.unwrap();
    assert_eq!(
        resp.status(),
        302,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let code = query_param(&location(&resp), "code").expect("a code for the app");
    redeem(&broker.base, &code, &verifier)
        .await
        .json()
        .await
        .unwrap()
}

async fn userinfo(base: &str, access_token: &str) -> serde_json::Value {
    http()
        .get(format!("{base}/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn patch(endpoint: Endpoint, field: &str, value: &str) -> Fault {
    Fault {
        endpoint,
        kind: FaultKind::Patch(serde_json::Map::from_iter([(
            field.to_owned(),
            serde_json::Value::from(value),
        )])),
        times: Some(1),
    }
}

/// A refusal page for a WeChat answer whose identifier holds a control
/// character, the operator's log line, and no account.
async fn assert_identity_refused(
    broker: &Broker,
    b: &reqwest::Client,
    callback: &str,
    connector: &str,
) {
    let before = broker.state.store.find_users("", 100).await.unwrap().len();
    let resp = b.get(callback).send().await.unwrap();
    let status = resp.status().as_u16();
    let page = resp.text().await.unwrap();
    // The broker refuses this identity (a policy refusal): 403, not a gateway failure.
    assert_eq!(status, 403, "{page}");
    assert!(
        page.contains("This account cannot be used to sign in here"),
        "{page}"
    );
    assert!(
        page.contains("stage=callback kind=not_allowed code=control_character"),
        "{page}"
    );
    let id = format!("connector={connector}");
    let needles = [
        "login_failed",
        id.as_str(),
        "stage=\"callback\"",
        "upstream_code=\"control_character\"",
    ];
    assert!(
        !log_lines(&needles).is_empty(),
        "no log line with {needles:?}"
    );
    assert_eq!(
        broker.state.store.find_users("", 100).await.unwrap().len(),
        before,
        "no account was created"
    );
}

async fn upstream_profiles_are_screened_the_same_on_both_backends(db_url: &str) {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    let tag = format!(
        "in-{}",
        idbridge_tokens::random_alnum(6).unwrap().to_lowercase()
    );
    let broker = wechat_broker(db_url, &sim, &tag).await;

    // A nickname with NUL and a line break signs in, cleaned.
    sim.update_user(SimUser {
        id: dev::USER_ALICE.into(),
        nickname: "Ali\u{0}ce\n".into(),
        headimgurl: "javascript:alert(1)".into(),
    })
    .unwrap();
    let t = web_sign_in(&broker, &sim, &tag, dev::USER_ALICE).await;
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["name"], "Alice", "{id}");
    assert!(id.get("picture").is_none(), "{id}");
    let info = userinfo(&broker.base, t["access_token"].as_str().unwrap()).await;
    assert_eq!(info["name"], "Alice", "{info}");
    assert!(info.get("picture").is_none(), "{info}");
    assert!(
        !log_lines(&[
            "dropped the upstream profile picture",
            &format!("connector=\"{tag}\""),
            "not an https URL"
        ])
        .is_empty(),
        "the dropped picture is logged"
    );

    // A unionid with a NUL (from the code exchange) fails the sign-in.
    sim.set_fault(patch(Endpoint::AccessToken, "unionid", "u\u{0}x"));
    let (b, callback, _) = scanned(&broker, &sim, &tag, "Mozilla/5.0", dev::USER_XIAOMING).await;
    assert_identity_refused(&broker, &b, &callback, &tag).await;

    // An openid with a NUL, in the Official Account's silent flow (no profile call).
    let mp = format!("{tag}-mp");
    sim.set_fault(patch(Endpoint::AccessToken, "openid", "o\u{0}forged"));
    let (b, callback, _) = scanned(&broker, &sim, &mp, WECHAT_UA, dev::USER_ALICE2).await;
    assert_identity_refused(&broker, &b, &callback, &mp).await;

    // And the same people sign in once WeChat answers properly again.
    let (b, callback, verifier) = scanned(&broker, &sim, &mp, WECHAT_UA, dev::USER_ALICE2).await;
    let resp = b.get(&callback).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let code = query_param(&location(&resp), "code").unwrap();
    assert_eq!(redeem(&broker.base, &code, &verifier).await.status(), 200);
}
crate::both_backends!(upstream_profiles_are_screened_the_same_on_both_backends);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apps_get_https_pictures_only() {
    let cases = [
        ("javascript:alert(1)", None),
        ("http://example.com/a.png", None),
        ("https://user:pw@example.com/a.png", None),
        (
            "https://example.com/a.png",
            Some("https://example.com/a.png"),
        ),
        // WeChat's own CDN over http is moved to https by the WeChat connectors.
        (
            "http://thirdwx.qlogo.cn/mmopen/vi_32/SimAvatarXiaoming/132",
            Some("https://thirdwx.qlogo.cn/mmopen/vi_32/SimAvatarXiaoming/132"),
        ),
    ];
    // A person per case: a returning person keeps their last good picture.
    let mut config = SimConfig::dev_default("127.0.0.1");
    for (i, (avatar, _)) in cases.iter().enumerate() {
        config.users.push(SimUser {
            id: format!("pic{i}"),
            nickname: "Pic".into(),
            headimgurl: (*avatar).into(),
        });
    }
    let sim = Simulator::start(config).await.unwrap();
    let db = TestDb::new(Db::Sqlite);
    let broker = wechat_broker(&db.url(), &sim, "pic").await;
    for (i, (avatar, expected)) in cases.into_iter().enumerate() {
        let user = format!("pic{i}");
        let t = web_sign_in(&broker, &sim, "pic", &user).await;
        let id = claims(t["id_token"].as_str().unwrap());
        let info = userinfo(&broker.base, t["access_token"].as_str().unwrap()).await;
        for (what, claims) in [("id_token", &id), ("userinfo", &info)] {
            assert_eq!(
                claims.get("picture").and_then(|p| p.as_str()),
                expected,
                "{what} for {avatar}: {claims}"
            );
        }
    }
}

/// The real binary with its default text log: a path segment holding a line
/// break must not write a line of its own, and shows escaped.
#[tokio::test]
async fn a_line_break_in_a_path_cannot_forge_a_log_line() {
    let dir = std::env::temp_dir().join(format!(
        "idbridge-logforge-{}-{}",
        std::process::id(),
        idbridge_tokens::random_alnum(8).unwrap()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join("stderr.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_idbridge"))
        .args([
            "serve",
            "--dev",
            "--sim-port",
            "0",
            "--port",
            &port.to_string(),
            "--dir",
        ])
        .arg(dir.join("state"))
        .env_remove("IDBRIDGE_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..300 {
        if http().get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let forged = "2026-01-01T00:00:00.000000Z ERROR FORGED admin signed in";
    let resp = if up {
        http()
            .get(format!(
                "{base}/callback/x%0A2026-01-01T00:00:00.000000Z%20ERROR%20FORGED%20admin%20signed%20in?state=s"
            ))
            .send()
            .await
            .ok()
    } else {
        None
    };
    let status = resp.map(|r| r.status().as_u16());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(up, "the broker did not start:\n{log}");
    assert_eq!(status, Some(400), "{log}");
    let forged_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("2026-01-01"))
        .collect();
    assert!(
        forged_lines.is_empty(),
        "forged lines {forged_lines:?} in:\n{log}"
    );
    assert!(
        log.lines().any(|l| l.contains(&format!("x\\n{forged}"))),
        "the path is logged escaped:\n{log}"
    );
}
