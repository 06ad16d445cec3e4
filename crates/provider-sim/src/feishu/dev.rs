//! The fake as `idbridge serve --dev` runs it: one app and a few people to
//! pick from on its authorization page.

use super::{Decision, FeishuApp, FeishuSim, Person};

pub const APP_ID: &str = "cli_a5devsimulator01";
pub const APP_SECRET: &str = "dev-feishu-sim-secret-0123456789abcdef";
/// The `developer` the dev connector names.
pub const DEVELOPER: &str = "dev-simulator";

/// The dev app, its 重定向 URL prefix `{broker}/callback/`.
pub fn app(broker: &str) -> FeishuApp {
    FeishuApp {
        app_id: APP_ID.into(),
        app_secret: APP_SECRET.into(),
        redirect_urls: vec![format!("{}/callback/", broker.trim_end_matches('/'))],
    }
}

/// The people: one who may use the app, one outside its availability range.
pub fn people() -> Vec<Person> {
    vec![
        Person::new("on_d89jhsdhjsajkda7828enjdj328ydhhw3u", "张三 Zhang San")
            .email("zhangsan@example.test")
            .mobile("+8613800138000"),
        Person::new("on_7a1b2c3d4e5f60718293a4b5c6d7e8f9", "李四 Li Si").without_access(),
    ]
}

/// Start the dev fake on `listener`, asking who signs in.
pub async fn start(broker: &str, listener: std::net::TcpListener) -> std::io::Result<FeishuSim> {
    let sim = FeishuSim::start_on(app(broker), listener).await?;
    for p in people() {
        sim.add_person(p);
    }
    sim.decide(Decision::Ask);
    Ok(sim)
}
