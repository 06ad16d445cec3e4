//! WeChat mobile-app login end to end: a native app (or its backend) exchanges a
//! WeChat SDK code at the broker's token endpoint (RFC 8693 token exchange) and
//! gets the broker's tokens. One broker with the website QR, Official Account and
//! mobile-app connectors of one Open Platform account, plus a mobile app and a
//! website app of another, all against one simulator. Every failure is a clear
//! OAuth error, a log line that tells the operator what to fix, and no account.

use crate::both_backends;
use crate::harness::*;
use idbridge_server::config::ClientSettings;
use openidconnect::core::{CoreClient, CoreIdToken, CoreProviderMetadata};
use openidconnect::{ClientId, ClientSecret, IssuerUrl, Nonce};
use std::str::FromStr;
use wechat_sim::{dev, Endpoint, Fault, FaultKind, SimConfig, Simulator};

pub(crate) const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const SDK_CODE: &str = "urn:idbridge:params:oauth:token-type:wechat_sdk_code";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const WECHAT_UA: &str = "Mozilla/5.0 (iPhone) AppleWebKit MicroMessenger/8.0.40";
pub(crate) const DESKTOP_UA: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36";

/// A public native app allowed (explicitly) to exchange through `{tag}-app`.
const NATIVE_ID: &str = "native";
/// A confidential client whose connectors are `{tag}-app` and `{tag}-web`.
const SOLO_ID: &str = "solo";
const SOLO_SECRET: &str = "solo-secret-0123456789abcdef";
/// A confidential client limited to the website QR connector.
const WEBONLY_ID: &str = "webonly";
const WEBONLY_SECRET: &str = "webonly-secret-0123456789abcdef";

pub(crate) struct World {
    pub(crate) sim: Simulator,
    pub(crate) broker: Broker,
    pub(crate) tag: String,
}

fn wechat(
    id: String,
    kind: &str,
    appid: &str,
    secret: &str,
    platform: &str,
    base: &str,
) -> serde_json::Value {
    let mut c = serde_json::json!({
        "id": id, "type": kind, "name": format!("WeChat {kind}"),
        "appid": appid, "appsecret": secret, "open_platform_id": platform,
        "api_base_url": base, "timeout_secs": 1.0,
    });
    if kind == "wechat-web" || kind == "wechat-mp" {
        c["open_base_url"] = base.into();
    }
    c
}

/// A registered redirect URI: a custom scheme for a native (public) app, https
/// for a confidential one.
fn redirect_for(id: &str, public: bool) -> String {
    if public {
        format!("com.example.{id}:/oauth/callback")
    } else {
        format!("https://{id}.example.com/callback")
    }
}

pub(crate) fn client_settings(
    id: &str,
    secret: Option<&str>,
    connectors: Vec<String>,
) -> ClientSettings {
    ClientSettings {
        id: id.into(),
        name: Some(format!("{id} app")),
        secret: secret.map(str::to_owned),
        secret_file: None,
        public: secret.is_none(),
        redirect_uris: vec![redirect_for(id, secret.is_none())],
        post_logout_redirect_uris: Vec::new(),
        require_pkce: true,
        id_token_signed_response_alg: None,
        connectors,
        require_phone: false,
        skip_consent: true,
        refresh_without_offline_access: false,
        id_token_on_refresh: true,
        require_pushed_authorization_requests: false,
        allowed_origins: Vec::new(),
    }
}

/// A broker on `db_url` with, for `tag`: `{tag}-web`, `{tag}-mp`, `{tag}-app`
/// and the Mini Program's `{tag}-mini` on `gh_dev_platform`, `{tag}-oapp` and
/// `{tag}-oweb` on `gh_other_platform`; `tweak` adjusts the `{tag}-app`
/// connector's JSON and the settings.
pub(crate) async fn world(
    db_url: &str,
    tag: &str,
    tweak: impl FnOnce(&mut serde_json::Value, &mut idbridge_server::Settings) + Send + 'static,
) -> World {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    let base = sim.base_url();
    let t = tag.to_owned();
    let broker = start(db_url, None, move |s| {
        let p = dev::OPEN_PLATFORM_ID;
        let o = dev::OTHER_OPEN_PLATFORM_ID;
        let mut app = wechat(
            format!("{t}-app"),
            "wechat-app",
            dev::MOBILE_APPID,
            dev::MOBILE_SECRET,
            p,
            &base,
        );
        s.connectors = vec![
            wechat(
                format!("{t}-web"),
                "wechat-web",
                dev::WEB_APPID,
                dev::WEB_SECRET,
                p,
                &base,
            ),
            wechat(
                format!("{t}-mp"),
                "wechat-mp",
                dev::MP_APPID,
                dev::MP_SECRET,
                p,
                &base,
            ),
            wechat(
                format!("{t}-mini"),
                "wechat-miniprogram",
                dev::MINI_PROGRAM_APPID,
                dev::MINI_PROGRAM_SECRET,
                p,
                &base,
            ),
            wechat(
                format!("{t}-oapp"),
                "wechat-app",
                dev::OTHER_MOBILE_APPID,
                dev::OTHER_MOBILE_SECRET,
                o,
                &base,
            ),
            wechat(
                format!("{t}-oweb"),
                "wechat-web",
                dev::OTHER_WEB_APPID,
                dev::OTHER_WEB_SECRET,
                o,
                &base,
            ),
        ];
        s.clients
            .push(client_settings(NATIVE_ID, None, vec![format!("{t}-app")]));
        s.clients.push(client_settings(
            SOLO_ID,
            Some(SOLO_SECRET),
            vec![format!("{t}-app"), format!("{t}-web")],
        ));
        s.clients.push(client_settings(
            WEBONLY_ID,
            Some(WEBONLY_SECRET),
            vec![format!("{t}-web")],
        ));
        tweak(&mut app, s);
        s.connectors.insert(2, app);
    })
    .await;
    World {
        sim,
        broker,
        tag: tag.to_owned(),
    }
}

/// What the app sees of one token request.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) cache_control: String,
    pub(crate) body: serde_json::Value,
}

impl Answer {
    #[track_caller]
    pub(crate) fn error(&self, status: u16, error: &str) -> &str {
        assert_eq!(
            (self.status, self.body["error"].as_str()),
            (status, Some(error)),
            "{}",
            self.body
        );
        assert_eq!(self.cache_control, "no-store");
        self.body["error_description"].as_str().unwrap()
    }
}

/// How the app authenticates.
#[derive(Clone, Copy)]
pub(crate) enum Auth<'a> {
    Basic(&'a str, &'a str),
    Public(&'a str),
}

pub(crate) async fn post_token(base: &str, auth: Auth<'_>, params: &[(&str, &str)]) -> Answer {
    let mut form: Vec<(&str, &str)> = params.to_vec();
    let mut req = http().post(format!("{base}/token"));
    match auth {
        Auth::Basic(id, secret) => req = req.basic_auth(id, Some(secret)),
        Auth::Public(id) => form.push(("client_id", id)),
    }
    let resp = req.form(&form).send().await.unwrap();
    let status = resp.status().as_u16();
    let cache_control = resp
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.json().await.unwrap();
    Answer {
        status,
        cache_control,
        body,
    }
}

impl World {
    fn app(&self) -> String {
        format!("{}-app", self.tag)
    }

    fn sdk_code(&self, user: &str) -> String {
        self.sim
            .issue_code(dev::MOBILE_APPID, user, "snsapi_userinfo")
            .unwrap()
    }

    /// The exchange as the test app sends it: `extra` after the three required
    /// parameters (a later `connector` replaces the default one).
    async fn exchange_as(&self, auth: Auth<'_>, code: &str, extra: &[(&str, &str)]) -> Answer {
        let app = self.app();
        let mut params = vec![
            ("grant_type", GRANT),
            ("subject_token", code),
            ("subject_token_type", SDK_CODE),
        ];
        if !extra.iter().any(|(k, _)| *k == "connector") {
            params.push(("connector", app.as_str()));
        }
        params.extend_from_slice(extra);
        params.retain(|(_, v)| !v.is_empty());
        post_token(&self.broker.base, auth, &params).await
    }

    async fn exchange(&self, code: &str, extra: &[(&str, &str)]) -> Answer {
        self.exchange_as(Auth::Basic(APP_ID, APP_SECRET), code, extra)
            .await
    }

    /// A good exchange for `user` through `connector`; the token response.
    async fn app_login(&self, connector: &str, appid: &str, user: &str) -> serde_json::Value {
        let code = self.sim.issue_code(appid, user, "snsapi_userinfo").unwrap();
        let a = self
            .exchange(
                &code,
                &[
                    ("connector", connector),
                    ("scope", "openid profile offline_access"),
                ],
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.body
    }

    /// A browser login through `connector` with this User-Agent; the ID token's claims.
    pub(crate) async fn browser_login(
        &self,
        ua: &str,
        connector: &str,
        user: &str,
    ) -> serde_json::Value {
        let b = reqwest::Client::builder()
            .cookie_store(true)
            .user_agent(ua)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let (url, verifier) = authorize_url(&self.broker.base, &[]);
        let url = url.replace("connector=dev", &format!("connector={connector}"));
        let resp = b.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 302);
        let upstream = location(&resp);
        assert!(upstream.starts_with(&self.sim.base_url()), "{upstream}");
        let callback = self.sim.scan(&upstream, user).unwrap().remove(0);
        let back = b.get(&callback).send().await.unwrap();
        assert_eq!(
            back.status(),
            302,
            "{}",
            back.text().await.unwrap_or_default()
        );
        let code = query_param(&location(&back), "code").expect("a code for the app");
        let t: serde_json::Value = redeem(&self.broker.base, &code, &verifier)
            .await
            .json()
            .await
            .unwrap();
        claims(t["id_token"].as_str().unwrap())
    }

    pub(crate) async fn users(&self) -> usize {
        self.broker
            .state
            .store
            .find_users("", 1000)
            .await
            .unwrap()
            .len()
    }

    fn code_exchanges(&self) -> u64 {
        self.sim.counters().code_exchanges
    }

    #[track_caller]
    fn assert_logged(&self, needles: &[&str]) {
        let connector = format!("connector={}", self.app());
        let mut all = vec!["login_failed", "via=\"token_exchange\"", connector.as_str()];
        all.extend_from_slice(needles);
        assert!(!log_lines(&all).is_empty(), "no log line with {all:?}");
    }
}

pub(crate) fn sub(token_response: &serde_json::Value) -> String {
    claims(token_response["id_token"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn a_native_code_exchange_returns_tokens_that_verify(db_url: &str) {
    let w = world(db_url, "xa-ok", |_, _| {}).await;
    let http = http();
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(w.broker.base.clone()).unwrap(), &http)
            .await
            .expect("discovery and JWKS");
    let raw_meta: serde_json::Value = http
        .get(format!(
            "{}/.well-known/openid-configuration",
            w.broker.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        raw_meta["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&GRANT.into()),
        "{raw_meta}"
    );
    let oidc = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(APP_ID.into()),
        Some(ClientSecret::new(APP_SECRET.into())),
    );

    let code = w.sdk_code(dev::USER_XIAOMING);
    let a = w
        .exchange(&code, &[("scope", "openid profile offline_access")])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.cache_control, "no-store");
    let t = &a.body;
    assert_eq!(t["issued_token_type"], ACCESS_TOKEN_TYPE);
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], "openid profile offline_access");
    assert!(t["expires_in"].as_i64().unwrap() > 0);
    assert!(t["refresh_token"].is_string());

    // The ID token verifies like any other: signature against the JWKS, iss, aud, exp.
    let id_token = CoreIdToken::from_str(t["id_token"].as_str().unwrap()).unwrap();
    let verified = id_token
        .claims(&oidc.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
        .expect("the ID token verifies");
    assert_eq!(verified.issuer().as_str(), w.broker.base);
    assert_eq!(verified.audiences()[0].as_str(), APP_ID);
    let sub = verified.subject().as_str().to_owned();
    let raw = claims(t["id_token"].as_str().unwrap());
    assert_eq!(raw["name"], "王小明🐼✨");
    assert_eq!(raw["linked_connectors"], serde_json::json!([w.app()]));
    assert!(raw.get("sid").is_none(), "an exchange opens no SSO session");
    let at = claims(t["access_token"].as_str().unwrap());
    assert_eq!(
        (at["sub"].as_str(), at["client_id"].as_str()),
        (Some(sub.as_str()), Some(APP_ID))
    );
    let identities = w.broker.state.store.list_identities(&sub).await.unwrap();
    assert_eq!(
        identities[0].subject,
        w.sim.openid(dev::MOBILE_APPID, dev::USER_XIAOMING),
        "the identity is the mobile app's openid"
    );

    // The access token works at userinfo and introspection.
    let userinfo: serde_json::Value = http
        .get(format!("{}/userinfo", w.broker.base))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(userinfo["sub"], sub.as_str());
    assert_eq!(
        introspect(&w.broker.base, t["access_token"].as_str().unwrap()).await["active"],
        true
    );

    // The refresh token rotates like any other.
    let r = refresh(&w.broker.base, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    let r: serde_json::Value = r.json().await.unwrap();
    assert_eq!(claims(r["id_token"].as_str().unwrap())["sub"], sub.as_str());
    assert_ne!(r["refresh_token"], t["refresh_token"]);

    // The audit log has the login.
    let events = w
        .broker
        .state
        .store
        .list_audit(Some(&sub), 10, None)
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event.event == "login" && e.event.detail["grant"] == "token_exchange"),
        "{events:?}"
    );

    // Without scope: openid only, an ID token and no refresh token.
    let a = w.exchange(&w.sdk_code(dev::USER_XIAOMING), &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["scope"], "openid");
    assert!(a.body.get("refresh_token").is_none(), "{}", a.body);
    assert!(claims(a.body["id_token"].as_str().unwrap())
        .get("name")
        .is_none());
    assert_eq!(
        self::sub(&a.body),
        sub,
        "a returning person keeps their sub"
    );
    assert_eq!(w.users().await, 1);
}
both_backends!(a_native_code_exchange_returns_tokens_that_verify);

async fn one_person_through_qr_official_account_and_app_has_one_sub(db_url: &str) {
    let w = world(db_url, "xa-link", |_, _| {}).await;
    let t = &w.tag;
    let web = w
        .browser_login(DESKTOP_UA, &format!("{t}-web"), dev::USER_ALICE)
        .await;
    let mp = w
        .browser_login(WECHAT_UA, &format!("{t}-mp"), dev::USER_ALICE)
        .await;
    let app = w
        .app_login(&w.app(), dev::MOBILE_APPID, dev::USER_ALICE)
        .await;
    assert_eq!(mp["sub"], web["sub"]);
    assert_eq!(
        sub(&app),
        web["sub"].as_str().unwrap(),
        "one sub through all three"
    );
    let mut linked: Vec<String> = serde_json::from_value(
        claims(app["id_token"].as_str().unwrap())["linked_connectors"].clone(),
    )
    .unwrap();
    linked.sort();
    assert_eq!(
        linked,
        [format!("{t}-app"), format!("{t}-mp"), format!("{t}-web")]
    );

    // The same WeChat user under another Open Platform account is another person
    // to the broker (its apps' unionids differ), whichever of its apps they use.
    let other_app = w
        .app_login(
            &format!("{t}-oapp"),
            dev::OTHER_MOBILE_APPID,
            dev::USER_ALICE,
        )
        .await;
    assert_ne!(sub(&other_app), sub(&app));
    let other_web = w
        .browser_login(DESKTOP_UA, &format!("{t}-oweb"), dev::USER_ALICE)
        .await;
    assert_eq!(other_web["sub"], sub(&other_app).as_str());
    // And another person on the first platform is another account.
    let xiaoming = w
        .app_login(&w.app(), dev::MOBILE_APPID, dev::USER_XIAOMING)
        .await;
    assert_ne!(sub(&xiaoming), sub(&app));
    assert_eq!(w.users().await, 3);
}
both_backends!(one_person_through_qr_official_account_and_app_has_one_sub);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replayed_unknown_and_expired_codes_are_invalid_grant() {
    let db = TestDb::new(Db::Sqlite);
    let w = world(&db.url(), "xa-code", |_, _| {}).await;
    let code = w.sdk_code(dev::USER_ALICE);
    assert_eq!(w.exchange(&code, &[]).await.status, 200);
    let users = w.users().await;

    let d = w
        .exchange(&code, &[])
        .await
        .error(400, "invalid_grant")
        .to_owned();
    assert!(d.contains("already used") && d.contains("40163"), "{d}");
    w.assert_logged(&[
        "kind=\"code_reused\"",
        "upstream_code=\"40163\"",
        "stage=\"exchange\"",
        "twice",
    ]);

    let d = w
        .exchange("061NotARealCodeFromTheWeChatSDK0", &[])
        .await
        .error(400, "invalid_grant")
        .to_owned();
    assert!(
        d.contains("invalid or expired") && d.contains("40029"),
        "{d}"
    );
    w.assert_logged(&[
        "kind=\"invalid_code\"",
        "upstream_code=\"40029\"",
        dev::MOBILE_APPID,
    ]);

    let late = w.sdk_code(dev::USER_XIAOMING);
    w.sim.advance(301);
    w.exchange(&late, &[]).await.error(400, "invalid_grant");
    w.assert_logged(&["kind=\"invalid_code\"", "upstream_code=\"42003\""]);
    assert_eq!(w.users().await, users, "no account from a failed exchange");
    assert!(log_lines(&[&code]).is_empty(), "no SDK code in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_secret_is_server_error_and_the_log_names_the_fix() {
    let db = TestDb::new(Db::Sqlite);
    let w = world(&db.url(), "xa-secret", |app, _| {
        app["appsecret"] = "0123456789abcdef0123456789abcdef".into();
    })
    .await;
    let a = w.exchange(&w.sdk_code(dev::USER_ALICE), &[]).await;
    let d = a.error(500, "server_error");
    assert!(d.contains("configuration") && d.contains("log"), "{d}");
    assert!(
        !d.contains("0123456789abcdef"),
        "no secret on the wire: {d}"
    );
    w.assert_logged(&[
        "kind=\"bad_credentials\"",
        "upstream_code=\"40125\"",
        "fix=",
        "AppSecret",
    ]);
    assert!(
        log_lines(&["0123456789abcdef0123456789abcdef"]).is_empty(),
        "no secret in the log"
    );
    assert_eq!(w.users().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wechat_busy_or_slow_is_temporarily_unavailable() {
    let db = TestDb::new(Db::Sqlite);
    let w = world(&db.url(), "xa-busy", |_, _| {}).await;
    // Busy once: the single retry succeeds.
    w.sim.set_fault(Fault {
        endpoint: Endpoint::AccessToken,
        kind: FaultKind::Busy,
        times: Some(1),
    });
    assert_eq!(
        w.exchange(&w.sdk_code(dev::USER_ALICE), &[]).await.status,
        200
    );
    // Busy twice: try later.
    w.sim.set_fault(Fault {
        endpoint: Endpoint::AccessToken,
        kind: FaultKind::Busy,
        times: Some(2),
    });
    let a = w.exchange(&w.sdk_code(dev::USER_XIAOMING), &[]).await;
    assert!(a
        .error(503, "temporarily_unavailable")
        .contains("new subject_token"));
    w.assert_logged(&["kind=\"upstream_unavailable\"", "upstream_code=\"-1\""]);
    // Slower than the connector's 1 s timeout: a prompt 503, not a hang.
    w.sim.set_fault(Fault {
        endpoint: Endpoint::AccessToken,
        kind: FaultKind::Slow(std::time::Duration::from_secs(4)),
        times: Some(1),
    });
    let started = std::time::Instant::now();
    let a = w.exchange(&w.sdk_code(dev::USER_XIAOMING), &[]).await;
    a.error(503, "temporarily_unavailable");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    w.assert_logged(&["kind=\"timeout\""]);
    assert_eq!(w.users().await, 1, "only the good exchange made an account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_user_is_refused() {
    let db = TestDb::new(Db::Sqlite);
    let w = world(&db.url(), "xa-snap", |_, _| {}).await;
    let code = w
        .sim
        .issue_snapshot_code(dev::MOBILE_APPID, dev::USER_ALICE)
        .unwrap();
    let d = w
        .exchange(&code, &[])
        .await
        .error(400, "invalid_grant")
        .to_owned();
    assert!(d.contains("snapshot"), "{d}");
    w.assert_logged(&["kind=\"not_allowed\"", "upstream_code=\"is_snapshotuser\""]);
    assert_eq!(w.users().await, 0, "no account from a virtual user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_clients_allowed_to_use_the_connector_may_exchange() {
    let db = TestDb::new(Db::Sqlite);
    let w = world(&db.url(), "xa-client", |_, _| {}).await;
    let exchanges = w.code_exchanges();
    // A confidential client limited to the website connector.
    let code = w.sdk_code(dev::USER_ALICE);
    let d = w
        .exchange_as(Auth::Basic(WEBONLY_ID, WEBONLY_SECRET), &code, &[])
        .await
        .error(400, "unauthorized_client")
        .to_owned();
    assert!(d.contains(&w.app()), "{d}");
    // A public client that may use every connector in a browser still may not
    // exchange: public clients need the connector listed explicitly.
    let d = w
        .exchange_as(Auth::Public(SPA_ID), &code, &[])
        .await
        .error(400, "unauthorized_client")
        .to_owned();
    assert!(d.contains("explicitly"), "{d}");
    // Wrong credentials: invalid_client before anything else.
    let a = w
        .exchange_as(Auth::Basic(APP_ID, "not-the-secret-0123456789"), &code, &[])
        .await;
    a.error(401, "invalid_client");
    assert_eq!(w.code_exchanges(), exchanges, "WeChat was never asked");

    // The native app listed for the connector exchanges without a secret, and
    // without naming the connector (it may use only that one).
    let a = w
        .exchange_as(Auth::Public(NATIVE_ID), &code, &[("connector", "")])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        claims(a.body["access_token"].as_str().unwrap())["client_id"],
        NATIVE_ID
    );
    // A confidential client that may use one wechat-app connector needs no connector= either.
    let a = w
        .exchange_as(
            Auth::Basic(SOLO_ID, SOLO_SECRET),
            &w.sdk_code(dev::USER_ALICE),
            &[("connector", "")],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_requests_are_clear_errors_and_never_reach_wechat() {
    let db = TestDb::new(Db::Sqlite);
    let w = world(&db.url(), "xa-bad", |_, _| {}).await;
    let t = w.tag.clone();
    let code = w.sdk_code(dev::USER_ALICE);
    let exchanges = w.code_exchanges();
    let base = &w.broker.base;
    let app_auth = Auth::Basic(APP_ID, APP_SECRET);

    let a = post_token(
        base,
        app_auth,
        &[("grant_type", GRANT), ("subject_token_type", SDK_CODE)],
    )
    .await;
    assert!(a
        .error(400, "invalid_request")
        .contains("subject_token is required"));
    let a = post_token(
        base,
        app_auth,
        &[("grant_type", GRANT), ("subject_token", &code)],
    )
    .await;
    assert!(a
        .error(400, "invalid_request")
        .contains("subject_token_type is required"));
    let a = post_token(
        base,
        app_auth,
        &[
            ("grant_type", GRANT),
            ("subject_token", &code),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ],
    )
    .await;
    let d = a.error(400, "invalid_request");
    assert!(d.contains("not supported") && d.contains(SDK_CODE), "{d}");
    // Two wechat-app connectors accept SDK codes: this client must say which.
    let a = post_token(
        base,
        app_auth,
        &[
            ("grant_type", GRANT),
            ("subject_token", &code),
            ("subject_token_type", SDK_CODE),
        ],
    )
    .await;
    let d = a.error(400, "invalid_request");
    assert!(
        d.contains("connector=")
            && d.contains(&format!("{t}-app"))
            && d.contains(&format!("{t}-oapp")),
        "{d}"
    );
    let a = w.exchange(&code, &[("connector", "nope")]).await;
    a.error(400, "invalid_request");
    let a = w
        .exchange(&code, &[("connector", &format!("{t}-web"))])
        .await;
    assert!(a.error(400, "invalid_request").contains("does not accept"));
    let a = w.exchange(&code, &[("scope", "profile")]).await;
    a.error(400, "invalid_scope");
    let a = w
        .exchange(
            &code,
            &[("actor_token", "x"), ("actor_token_type", SDK_CODE)],
        )
        .await;
    a.error(400, "invalid_request");
    let a = w.exchange(&code, &[("audience", "someone-else")]).await;
    a.error(400, "invalid_target");
    let a = w
        .exchange(&code, &[("resource", "https://api.example.com")])
        .await;
    a.error(400, "invalid_target");
    let a = w
        .exchange(
            &code,
            &[(
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:refresh_token",
            )],
        )
        .await;
    a.error(400, "invalid_request");
    let a = w.exchange(&code, &[("subject_token", "second")]).await;
    assert!(a.error(400, "invalid_request").contains("more than once"));
    assert_eq!(w.code_exchanges(), exchanges, "WeChat was never asked");
    assert_eq!(w.users().await, 0);

    // The code is still good: audience = the client itself is fine.
    let a = w.exchange(&code, &[("audience", APP_ID)]).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

async fn first_login_deny_refuses_a_new_person_but_not_a_linked_one(db_url: &str) {
    let w = world(db_url, "xa-deny", |app, _| {
        app["first_login"] = "deny".into();
    })
    .await;
    let d = w
        .exchange(&w.sdk_code(dev::USER_ALICE), &[])
        .await
        .error(400, "invalid_grant")
        .to_owned();
    assert!(d.contains("first_login = deny"), "{d}");
    assert!(!log_lines(&[
        "login_failed",
        "via=\"token_exchange\"",
        &format!("connector={}", w.app()),
        "reason=\"first_login_denied\""
    ])
    .is_empty());
    assert_eq!(w.users().await, 0, "nothing written");
    // Once the person has an account (website QR creates one), the app links to it.
    let web = w
        .browser_login(DESKTOP_UA, &format!("{}-web", w.tag), dev::USER_ALICE)
        .await;
    let a = w.exchange(&w.sdk_code(dev::USER_ALICE), &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(sub(&a.body), web["sub"].as_str().unwrap());
    assert_eq!(w.users().await, 1);
}
both_backends!(first_login_deny_refuses_a_new_person_but_not_a_linked_one);

async fn a_disabled_account_gets_invalid_grant(db_url: &str) {
    let w = world(db_url, "xa-off", |_, _| {}).await;
    let first = w
        .exchange(
            &w.sdk_code(dev::USER_ALICE),
            &[("scope", "openid offline_access")],
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let user = sub(&first.body);
    let store = &w.broker.state.store;
    store
        .set_user_disabled(&user, Some(w.broker.clock().now()))
        .await
        .unwrap();
    let events_before = store
        .list_audit(Some(&user), 100, None)
        .await
        .unwrap()
        .len();
    let d = w
        .exchange(&w.sdk_code(dev::USER_ALICE), &[])
        .await
        .error(400, "invalid_grant")
        .to_owned();
    assert!(d.contains("disabled"), "{d}");
    let events = store.list_audit(Some(&user), 100, None).await.unwrap();
    assert!(
        events.len() == events_before + 1 && events[0].event.event == "login_denied",
        "only the denial is recorded: {events:?}"
    );
    let r = refresh(
        &w.broker.base,
        first.body["refresh_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(r.status(), 400);
    // Enabled again, the same person signs in to the same account.
    store.set_user_disabled(&user, None).await.unwrap();
    let again = w.exchange(&w.sdk_code(dev::USER_ALICE), &[]).await;
    assert_eq!(sub(&again.body), user);
}
both_backends!(a_disabled_account_gets_invalid_grant);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_login_page_never_offers_the_app_connector() {
    let db = TestDb::new(Db::Sqlite);
    let w = world(&db.url(), "xa-page", |_, _| {}).await;
    let b = browser();
    // A desktop browser may use the two website connectors: the chooser lists
    // them and not the mobile-app ones.
    let (url, _) = authorize_url(&w.broker.base, &[]);
    let resp = b
        .get(url.replace("&connector=dev", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let chooser = get_text(&b, location(&resp)).await;
    assert!(
        chooser.contains(&format!("connector={}-web", w.tag)),
        "{chooser}"
    );
    assert!(!chooser.contains(&w.app()), "{chooser}");
    assert!(!chooser.contains(&format!("{}-oapp", w.tag)), "{chooser}");
    // A client that may use only the website and the app connector: the one
    // with a browser flow is picked without asking.
    let solo = url
        .replace("&connector=dev", "")
        .replace(
            &format!("client_id={APP_ID}"),
            &format!("client_id={SOLO_ID}"),
        )
        .replace(
            &format!(
                "redirect_uri={}",
                wechat_api::encode_component(APP_REDIRECT)
            ),
            &format!(
                "redirect_uri={}",
                wechat_api::encode_component(&redirect_for(SOLO_ID, false))
            ),
        );
    assert!(
        solo.contains(SOLO_ID) && !solo.contains("app.example.com"),
        "{solo}"
    );
    let resp = b.get(&solo).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    assert!(
        location(&resp).contains("/connect/qrconnect?"),
        "{}",
        location(&resp)
    );
    // Asking for the mobile-app connector in a browser is a clear error.
    let (url, _) = authorize_url(&w.broker.base, &[]);
    let resp = b
        .get(url.replace("connector=dev", &format!("connector={}", w.app())))
        .send()
        .await
        .unwrap();
    let back = location(&resp);
    assert!(back.starts_with(APP_REDIRECT), "{back}");
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("invalid_request")
    );
    assert!(
        query_param(&back, "error_description")
            .unwrap()
            .contains("no browser sign-in"),
        "{back}"
    );
    // Also from the chooser's own link format.
    let request = location(
        &b.get(
            authorize_url(&w.broker.base, &[])
                .0
                .replace("&connector=dev", ""),
        )
        .send()
        .await
        .unwrap(),
    );
    let page = b
        .get(format!("{request}?connector={}", w.app()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_exchanges_count_against_the_failure_limit() {
    let db = TestDb::new(Db::Sqlite);
    let w = world(&db.url(), "xa-limit", |_, s| {
        s.server.failures_per_minute = 3;
    })
    .await;
    for i in 0..3 {
        w.exchange(&format!("061GuessedCode{i}"), &[])
            .await
            .error(400, "invalid_grant");
    }
    let a = w.exchange(&w.sdk_code(dev::USER_ALICE), &[]).await;
    a.error(429, "slow_down");
    assert_eq!(w.users().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_an_exchanging_connector_the_grant_is_not_offered() {
    let db = TestDb::new(Db::Sqlite);
    let broker = start(&db.url(), None, |_| {}).await;
    let meta: serde_json::Value = get_json(
        &http(),
        format!("{}/.well-known/openid-configuration", broker.base),
    )
    .await;
    assert_eq!(
        meta["grant_types_supported"],
        serde_json::json!(["authorization_code", "refresh_token"])
    );
    let a = post_token(
        &broker.base,
        Auth::Basic(APP_ID, APP_SECRET),
        &[
            ("grant_type", GRANT),
            ("subject_token", "061SomeCode"),
            ("subject_token_type", SDK_CODE),
        ],
    )
    .await;
    assert!(a
        .error(400, "invalid_request")
        .contains("no connector of this broker accepts token exchange"));
}
