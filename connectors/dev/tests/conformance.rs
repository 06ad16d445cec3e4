//! The dev connector passes the connector kit's conformance suite. It has no
//! upstream: "the upstream" is its own page, where the person picks a test user
//! and the form comes back to the callback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use idbridge_connector_dev::DevFactory;
use idbridge_connector_kit::conformance::{self, BrowserFlow, Expect, Fixture, Params, Upstream};
use idbridge_connector_kit::testing;
use idbridge_core::{Begin, ErrorKind, Stage, Started};

/// What the page's form sends when `user` is picked: its hidden state, and the user.
fn pick(started: &Started, user: &str) -> Result<Params, String> {
    let Begin::Page { body_html, .. } = &started.begin else {
        return Err("the dev connector answers a page".into());
    };
    let state = body_html
        .split("name=\"state\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or("no hidden state field on the page")?;
    Ok(testing::params(&[("state", state), ("user", user)]))
}

#[tokio::test]
async fn the_dev_connector_conforms() {
    conformance::run(
        Fixture::new(&DevFactory, serde_json::json!({})).browser(
            BrowserFlow::new(Upstream::new(|started: Started| pick(&started, "alice")))
                // The form without a user: nothing to sign in.
                .no_code(
                    Upstream::fixed(Params::new()),
                    Expect::new(Stage::Callback, ErrorKind::InvalidRequest),
                )
                // The page's "Refuse" link.
                .upstream_error(
                    Upstream::fixed(testing::params(&[("error", "access_denied")])),
                    Expect::new(Stage::Callback, ErrorKind::UserCancelled),
                )
                .replay_not_detected(
                    "no upstream code to spend: the broker's single-use state is the guard",
                ),
        ),
    )
    .await;
}
