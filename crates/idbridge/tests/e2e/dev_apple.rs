//! `serve --dev` offers "Sign in with Apple (simulator)": the fake is another
//! site than the broker (`http://localhost:PORT`, the broker is 127.0.0.1), its
//! callback is a form_post, and the broker posts that again from its own origin
//! so the browser cookie comes along. Plain HTTP here; the browser test
//! (`tests/browser/scenarios/apple.mjs`) does it in Chromium.

use crate::cli::{dev_command, free_port, temp_dir, wait_for, Killed};
use crate::form_post::form_post_page;
use crate::harness::*;
use provider_sim::oidc::follow;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_offers_sign_in_with_apple_on_another_site() {
    let dir = temp_dir("dev-apple");
    let port = free_port();
    let _guard = Killed(
        dev_command(port, &dir.join(".idbridge-dev"))
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_for(&base).await;
    let b = browser();
    let demo = b.get(format!("{base}/demo/login")).send().await.unwrap();
    let at = |l: &str| url::Url::parse(&base).unwrap().join(l).unwrap().to_string();
    let authorize = at(&location(&demo));
    // Pick it (as the chooser's link does), once discovery is loaded.
    let mut at_apple = None;
    for _ in 0..100 {
        let r = b
            .get(format!("{authorize}&connector=apple"))
            .send()
            .await
            .unwrap();
        if r.status() == 302 && location(&r).starts_with("http://localhost:") {
            at_apple = Some(location(&r));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let at_apple = at_apple.expect("the apple connector redirects to the fake under localhost");
    assert!(at_apple.contains("/auth/authorize?"), "{at_apple}");
    assert_eq!(
        query_param(&at_apple, "response_mode").as_deref(),
        Some("form_post")
    );
    // The fake's page names its people; Grace Hopper's link.
    let page = http()
        .get(&at_apple)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Grace Hopper"), "{page}");
    let grace = page
        .split("sim_user=")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a link per person")
        .to_owned();
    let callback = follow(&http(), &format!("{at_apple}&sim_user={grace}"))
        .await
        .unwrap();
    assert!(callback.post, "Apple POSTs the callback");
    assert_eq!(callback.url, format!("{base}/callback/apple"));
    assert!(
        callback.params.contains_key("user"),
        "the first sign-in's user field"
    );
    // Cross-site: no cookie. The broker answers with its own page posting it again.
    let fields: Vec<(String, String)> = callback.params.into_iter().collect();
    let cross_site = http()
        .post(&callback.url)
        .form(&fields)
        .send()
        .await
        .unwrap();
    let again = form_post_page(cross_site).await;
    assert_eq!(again.field("idb_resubmitted"), Some("1"));
    let to_app = b
        .post(&again.action)
        .form(&again.fields)
        .send()
        .await
        .unwrap();
    assert_eq!(
        to_app.status(),
        302,
        "{}",
        to_app.text().await.unwrap_or_default()
    );
    let shown = b
        .get(at(&location(&to_app)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(shown.contains("Grace Hopper"), "{shown}");
    let _ = std::fs::remove_dir_all(dir);
}
