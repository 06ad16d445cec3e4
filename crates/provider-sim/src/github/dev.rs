//! The fake as `idbridge serve --dev` runs it: one OAuth app and a few people
//! to pick from on its authorize page.

use super::{Decision, Email, GithubSim, OAuthApp, Person};

pub const CLIENT_ID: &str = "Ov23liDevSimulator01";
pub const CLIENT_SECRET: &str = "dev-github-sim-secret-0123456789abcdef";

/// The dev app, its callback prefix `{broker}/callback/`.
pub fn app(broker: &str) -> OAuthApp {
    OAuthApp {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        callback_url: format!("{}/callback/", broker.trim_end_matches('/')),
        expiring_tokens: false,
    }
}

/// The people: one with a verified primary email in an organisation, one
/// whose only email is unverified.
pub fn people() -> Vec<Person> {
    vec![
        Person::new(583231, "octocat")
            .name("The Octocat")
            .email(Email::new("octocat@example.test", true, true))
            .org("acme"),
        Person::new(1000002, "mona")
            .name("Mona Lisa")
            .email(Email::new("mona@example.test", false, true)),
    ]
}

/// Start the dev fake on `listener`, asking who signs in.
pub async fn start(broker: &str, listener: std::net::TcpListener) -> std::io::Result<GithubSim> {
    let sim = GithubSim::start_on(app(broker), listener).await?;
    for p in people() {
        sim.add_person(p);
    }
    sim.decide(Decision::Ask);
    Ok(sim)
}
