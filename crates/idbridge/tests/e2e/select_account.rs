//! `prompt=select_account` (OpenID Connect Core 3.1.2.1): with an SSO session
//! the broker does not answer silently; the chooser shows "Continue as" the
//! signed-in person beside the sign-in methods, even when one method would do.

use crate::harness::*;

async fn select_account_lets_the_person_continue_or_switch(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let base = &broker.base;
    let b = browser();
    let (url, verifier) = authorize_url(base, &[]);
    let back = sign_in(&b, base, &url, "alice").await;
    let code = query_param(&back, "code").unwrap();
    let alice: serde_json::Value = redeem(base, &code, &verifier).await.json().await.unwrap();
    let alice_sub = claims(alice["id_token"].as_str().unwrap())["sub"].clone();

    // Without the prompt the session answers at once.
    let silent = b.get(&url).send().await.unwrap();
    assert_eq!(silent.status(), 302);
    assert!(location(&silent).starts_with(APP_REDIRECT), "SSO answers");

    // With it: the chooser, with "Continue as Alice" and the dev sign-in.
    let (url, verifier) = authorize_url(base, &[("prompt", "select_account")]);
    let url = url.replace("&connector=dev", "");
    let first = b.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 302);
    let chooser_url = location(&first);
    assert!(
        chooser_url.starts_with(&format!("{base}/login/")),
        "{chooser_url}"
    );
    let page = b
        .get(&chooser_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Continue as Alice"), "{page}");
    assert!(page.contains("?connector=dev"), "{page}");

    // Continue as Alice: a code for the same person, without signing in again.
    let cont = b
        .get(format!("{chooser_url}?continue=session"))
        .send()
        .await
        .unwrap();
    assert_eq!(cont.status(), 302);
    let back = location(&cont);
    assert!(back.starts_with(APP_REDIRECT), "{back}");
    let code = query_param(&back, "code").unwrap();
    let again: serde_json::Value = redeem(base, &code, &verifier).await.json().await.unwrap();
    assert_eq!(
        claims(again["id_token"].as_str().unwrap())["sub"],
        alice_sub
    );

    // Or switch: the chooser again, sign in as Bob, a different person.
    let (url, verifier) = authorize_url(base, &[("prompt", "select_account")]);
    let back = sign_in(&b, base, &url, "bob").await;
    let code = query_param(&back, "code").unwrap();
    let bob: serde_json::Value = redeem(base, &code, &verifier).await.json().await.unwrap();
    assert_ne!(claims(bob["id_token"].as_str().unwrap())["sub"], alice_sub);

    // Without a session, select_account is the chooser with no "Continue as".
    let fresh = browser();
    let (url, _) = authorize_url(base, &[("prompt", "select_account")]);
    let first = fresh
        .get(url.replace("&connector=dev", ""))
        .send()
        .await
        .unwrap();
    let page = fresh
        .get(location(&first))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("Continue as"), "{page}");
    assert!(page.contains("?connector=dev"), "{page}");
    broker.stop().await;
}
crate::both_backends!(select_account_lets_the_person_continue_or_switch);
