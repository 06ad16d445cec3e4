//! One-time codes through WeChat, end to end: binding a new WeChat sign-in (a
//! website app without unionid, `first_login = "bind"`) to an existing account
//! whose Official Account identity receives the code as a customer-service
//! message; the phone fallback outside WeChat's 48 h window; two broker instances
//! on one Postgres database sharing one app token; and the webhook sender.

use crate::accounts::{ask_bind_code, enter_code, field, sub_of};
use crate::harness::*;
use wechat_sim::{dev, SimConfig, SimUser, Simulator};

const WECHAT_UA: &str = "Mozilla/5.0 (iPhone) AppleWebKit MicroMessenger/8.0.40";

fn connectors(sim: &Simulator) -> Vec<serde_json::Value> {
    let base = sim.base_url();
    vec![
        serde_json::json!({
            "id": "wechat-mp", "type": "wechat-mp", "name": "WeChat",
            "appid": dev::MP_APPID, "appsecret": dev::MP_SECRET,
            "open_platform_id": dev::OPEN_PLATFORM_ID, "messages": true,
            "api_base_url": base, "open_base_url": base, "timeout_secs": 2.0,
        }),
        serde_json::json!({
            "id": "wechat-unbound", "type": "wechat-web", "name": "WeChat (no unionid)",
            "first_login": "bind",
            "appid": dev::UNBOUND_WEB_APPID, "appsecret": dev::UNBOUND_WEB_SECRET,
            "api_base_url": base, "open_base_url": base, "timeout_secs": 2.0,
        }),
    ]
}

async fn broker(sim: &Simulator, db_url: &str) -> Broker {
    let connectors = connectors(sim);
    start(db_url, None, move |s| {
        s.connectors = connectors;
        s.verification.sender = "log".into();
    })
    .await
}

/// A simulator with `extra` more test users (`user0`, `user1`, …).
async fn simulator(extra: usize) -> Simulator {
    let mut config = SimConfig::dev_default("127.0.0.1");
    for i in 0..extra {
        config.users.push(SimUser {
            id: format!("user{i}"),
            nickname: format!("User {i}"),
            headimgurl: String::new(),
        });
    }
    Simulator::start(config).await.unwrap()
}

fn browser_as(ua: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .user_agent(ua)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `user` signs in inside WeChat through the Official Account; their `sub`.
async fn sign_in_inside_wechat(broker: &Broker, sim: &Simulator, user: &str) -> String {
    sign_in_inside_wechat_with(&browser_as(WECHAT_UA), broker, sim, user).await
}

async fn sign_in_inside_wechat_with(
    b: &reqwest::Client,
    broker: &Broker,
    sim: &Simulator,
    user: &str,
) -> String {
    let (url, verifier) = authorize_url(&broker.base, &[]);
    let url = url.replace("connector=dev", "connector=wechat-mp");
    let resp = b.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let callback = sim.scan(&location(&resp), user).unwrap().remove(0);
    let resp = b.get(&callback).send().await.unwrap();
    assert_eq!(
        resp.status(),
        302,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    sub_of(&broker.base, &location(&resp), &verifier).await
}

/// `user` scans the website QR of the app without unionid on a desktop; the
/// browser, the bind page URL and HTML, and the PKCE verifier.
async fn reach_bind_page(
    broker: &Broker,
    sim: &Simulator,
    user: &str,
) -> (reqwest::Client, String, String, String) {
    let b = browser();
    let (url, verifier) = authorize_url(&broker.base, &[]);
    let url = url.replace("connector=dev", "connector=wechat-unbound");
    let resp = b.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let callback = sim.scan(&location(&resp), user).unwrap().remove(0);
    let resp = b.get(&callback).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let bind_url = location(&resp);
    assert!(bind_url.ends_with("/bind"), "{bind_url}");
    let page = b.get(&bind_url).send().await.unwrap().text().await.unwrap();
    (b, bind_url, page, verifier)
}

fn number(i: usize) -> String {
    format!("+86138{i:08}")
}

/// The six digits in a message.
fn code_in(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("a 6-digit code in {text:?}"))
        .to_owned()
}

async fn a_bind_code_reaches_the_accounts_wechat_chat(db_url: &str) {
    let sim = simulator(0).await;
    let broker = broker(&sim, db_url).await;
    let alice = sign_in_inside_wechat(&broker, &sim, "alice").await;
    broker
        .state
        .store
        .set_user_phone(&alice, &number(1), broker.clock().now())
        .await
        .unwrap();
    // Alice messaged the Official Account recently: the 48 h window is open.
    sim.mark_interaction(dev::MP_APPID, "alice");
    let (b, bind_url, page, verifier) = reach_bind_page(&broker, &sim, "alice").await;
    let sent = ask_bind_code(&b, &bind_url, &page, &number(1)).await;
    assert_eq!(sent.status(), 303);
    let messages = sim.messages();
    assert_eq!(messages.len(), 1, "the code went into WeChat");
    assert_eq!(messages[0].touser, sim.openid(dev::MP_APPID, "alice"));
    let code = code_in(&messages[0].content);
    let outbox = broker.state.verifier.outbox.list();
    assert_eq!(outbox[0].channel, "wechat");
    let resp = enter_code(&b, &format!("{}{}", broker.base, location(&sent)), &code).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        sub_of(&broker.base, &location(&resp), &verifier).await,
        alice
    );
    let identity = broker
        .state
        .store
        .get_identity(
            "wechat-unbound",
            &sim.openid(dev::UNBOUND_WEB_APPID, "alice"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(identity.user_id, alice);
}
crate::both_backends!(a_bind_code_reaches_the_accounts_wechat_chat);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outside_the_48_hour_window_the_code_goes_to_the_phone() {
    let db = TestDb::new(Db::Sqlite);
    let sim = simulator(0).await;
    let broker = broker(&sim, &db.url()).await;
    let xiaoming = sign_in_inside_wechat(&broker, &sim, "xiaoming").await;
    broker
        .state
        .store
        .set_user_phone(&xiaoming, &number(2), broker.clock().now())
        .await
        .unwrap();
    let (b, bind_url, page, verifier) = reach_bind_page(&broker, &sim, "xiaoming").await;
    let sent = ask_bind_code(&b, &bind_url, &page, &number(2)).await;
    assert_eq!(sent.status(), 303);
    assert!(sim.messages().is_empty(), "WeChat refused (45015)");
    let outbox = broker.state.verifier.outbox.list();
    assert_eq!(outbox[0].channel, "sms");
    assert!(
        !log_lines(&["falling back to the phone", "upstream_code=\"45015\""]).is_empty()
            || !log_lines(&["falling back to the phone", "45015"]).is_empty(),
        "the log names the WeChat refusal"
    );
    let resp = enter_code(
        &b,
        &format!("{}{}", broker.base, location(&sent)),
        &outbox[0].code,
    )
    .await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        sub_of(&broker.base, &location(&resp), &verifier).await,
        xiaoming
    );
}

/// Two broker instances on one Postgres database send codes through WeChat at
/// the same time, starting with no app token: WeChat is asked for one app token
/// once between them, and every message goes out with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_send_codes_through_wechat_with_one_app_token() {
    const PEOPLE: usize = 8;
    let db = TestDb::new(Db::Postgres);
    let sim = simulator(PEOPLE).await;
    let a = broker(&sim, &db.url()).await;
    let b = broker(&sim, &db.url()).await;
    let mut ready = Vec::new();
    for i in 0..PEOPLE {
        let user = format!("user{i}");
        let instance = if i % 2 == 0 { &a } else { &b };
        let sub = sign_in_inside_wechat(instance, &sim, &user).await;
        a.state
            .store
            .set_user_phone(&sub, &number(100 + i), a.clock().now())
            .await
            .unwrap();
        sim.mark_interaction(dev::MP_APPID, &user);
        let (browser, bind_url, page, _) = reach_bind_page(instance, &sim, &user).await;
        ready.push((browser, bind_url, page, number(100 + i)));
    }
    assert_eq!(sim.counters().app_token_requests, 0);
    let sends = ready.into_iter().map(|(browser, bind_url, page, phone)| {
        tokio::spawn(async move {
            let resp = ask_bind_code(&browser, &bind_url, &page, &phone).await;
            resp.status().as_u16()
        })
    });
    for s in sends.collect::<Vec<_>>() {
        assert_eq!(s.await.unwrap(), 303);
    }
    let counters = sim.counters();
    assert_eq!(
        counters.app_token_requests, 1,
        "one app-token fetch for both instances"
    );
    assert_eq!(counters.messages_sent, PEOPLE as u64);
    assert_eq!(sim.messages().len(), PEOPLE);
}

/// A minimal receiving end for the webhook sender: records each request (headers
/// and body) and answers with `status`.
struct Receiver {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(actix_web::http::header::HeaderMap, String)>>>,
    handle: actix_web::dev::ServerHandle,
}

async fn receiver(status: u16) -> Receiver {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = seen.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        let keep = keep.clone();
        App::new().route(
            "/sms",
            web::post().to(move |req: HttpRequest, body: String| {
                let keep = keep.clone();
                async move {
                    keep.lock().unwrap().push((req.headers().clone(), body));
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                        .finish()
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Receiver { url, seen, handle }
}

const WEBHOOK_SECRET: &str = "webhook-secret-0123456789";

async fn webhook_broker(db_url: &str, url: &str) -> Broker {
    let url = url.to_owned();
    start(db_url, None, move |s| {
        s.connectors = vec![
            serde_json::json!({"id": "dev", "type": "dev", "name": "Dev"}),
            serde_json::json!({"id": "dev2", "type": "dev", "name": "Dev two", "first_login": "bind"}),
        ];
        s.verification.sender = "webhook".into();
        s.verification.webhook_url = Some(url);
        s.verification.webhook_secret = Some(WEBHOOK_SECRET.into());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_webhook_sender_posts_a_signed_message_and_a_failing_one_stores_nothing() {
    let db = TestDb::new(Db::Sqlite);
    let ok = receiver(204).await;
    let broker = webhook_broker(&db.url(), &ok.url).await;
    let base = broker.base.clone();
    let (url, _) = authorize_url(&base, &[]);
    let back = sign_in(&browser(), &base, &url, "alice").await;
    assert!(back.starts_with(APP_REDIRECT));
    let alice = broker
        .state
        .store
        .get_identity("dev", "alice")
        .await
        .unwrap()
        .unwrap()
        .user_id;
    broker
        .state
        .store
        .set_user_phone(&alice, &number(7), broker.clock().now())
        .await
        .unwrap();
    // A new sign-in through the binding connector asks for a code by SMS.
    let b = browser();
    let (url, verifier) = authorize_url(&base, &[]);
    let url = url.replace("connector=dev", "connector=dev2");
    let cb = crate::accounts::dev_callback(&b, &base, &url, "alice-2").await;
    let bind_url = location(&cb);
    let page = b.get(&bind_url).send().await.unwrap().text().await.unwrap();
    let sent = ask_bind_code(&b, &bind_url, &page, &number(7)).await;
    assert_eq!(sent.status(), 303);
    let (headers, body) = ok
        .seen
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("one webhook");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["to"], number(7));
    assert_eq!(json["channel"], "sms");
    assert_eq!(json["purpose"], "bind");
    let code = json["code"].as_str().unwrap().to_owned();
    assert!(json["text"].as_str().unwrap().contains(&code));
    // The signature is HMAC-SHA256(secret, timestamp "." body), as documented.
    let timestamp = headers
        .get("x-idbridge-timestamp")
        .unwrap()
        .to_str()
        .unwrap();
    let signature = headers
        .get("x-idbridge-signature")
        .unwrap()
        .to_str()
        .unwrap();
    let expected = idbridge_tokens::hmac_sha256_hex(
        WEBHOOK_SECRET.as_bytes(),
        format!("{timestamp}.{body}").as_bytes(),
    );
    assert_eq!(signature, format!("sha256={expected}"));
    let resp = enter_code(&b, &format!("{base}{}", location(&sent)), &code).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(sub_of(&base, &location(&resp), &verifier).await, alice);
    ok.handle.stop(false).await;

    // A gateway that fails: the person is told, nothing is stored, nothing throttled.
    let failing = receiver(500).await;
    let db2 = TestDb::new(Db::Sqlite);
    let broker = webhook_broker(&db2.url(), &failing.url).await;
    let base = broker.base.clone();
    let (url, _) = authorize_url(&base, &[]);
    sign_in(&browser(), &base, &url, "bob").await;
    let bob = broker
        .state
        .store
        .get_identity("dev", "bob")
        .await
        .unwrap()
        .unwrap()
        .user_id;
    broker
        .state
        .store
        .set_user_phone(&bob, &number(8), broker.clock().now())
        .await
        .unwrap();
    let b = browser();
    let (url, _) = authorize_url(&base, &[]);
    let url = url.replace("connector=dev", "connector=dev2");
    let cb = crate::accounts::dev_callback(&b, &base, &url, "bob-2").await;
    let bind_url = location(&cb);
    let page = b.get(&bind_url).send().await.unwrap().text().await.unwrap();
    let resp = ask_bind_code(&b, &bind_url, &page, &number(8)).await;
    assert_eq!(resp.status(), 400);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("could not be sent right now"));
    assert_eq!(failing.seen.lock().unwrap().len(), 1);
    assert!(!log_lines(&["verification_failed", "HTTP 500"]).is_empty());
    // Not throttled by the failed attempt: the next try reaches the gateway again.
    let resp = ask_bind_code(&b, &bind_url, &page, &number(8)).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(failing.seen.lock().unwrap().len(), 2);
    failing.handle.stop(false).await;
}

/// The account page asks a person whose sign-in is old to confirm it is them
/// before changing sign-in methods: the code goes into their WeChat chat.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_step_up_code_reaches_the_wechat_chat() {
    let db = TestDb::new(Db::Sqlite);
    let sim = simulator(0).await;
    let broker = broker(&sim, &db.url()).await;
    let b = browser_as(WECHAT_UA);
    let alice = sign_in_inside_wechat_with(&b, &broker, &sim, "alice").await;
    sim.mark_interaction(dev::MP_APPID, "alice");
    broker.clock().advance(3600);
    let base = &broker.base;
    let page = get_text(&b, format!("{base}/account")).await;
    let resp = b
        .post(format!("{base}/account/link"))
        .form(&[
            ("csrf", field(&page, "csrf").as_str()),
            ("connector", "wechat-unbound"),
        ])
        .send()
        .await
        .unwrap();
    let confirm = resp.text().await.unwrap();
    assert!(confirm.contains("/account/confirm/send"), "{confirm}");
    let sent = b
        .post(format!("{base}/account/confirm/send"))
        .form(&[("csrf", field(&confirm, "csrf").as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 303);
    let messages = sim.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].touser, sim.openid(dev::MP_APPID, "alice"));
    let resp = enter_code(
        &b,
        &format!("{base}{}", location(&sent)),
        &code_in(&messages[0].content),
    )
    .await;
    assert_eq!(location(&resp), "/account?done=confirmed");
    let audit = broker
        .state
        .store
        .list_audit(Some(&alice), 50, None)
        .await
        .unwrap();
    let step_up = audit
        .iter()
        .find(|e| e.event.event == "step_up")
        .expect("audited");
    assert_eq!(step_up.event.detail["via"], "wechat");
}
