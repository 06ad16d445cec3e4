//! The fake as `idbridge serve --dev` runs it: one app and a few people to
//! pick from on its sign-in page.

use super::{Decision, DingApp, DingTalkSim, Person};

pub const CLIENT_ID: &str = "dingdevsimulator0001";
pub const CLIENT_SECRET: &str = "dev-dingtalk-sim-secret-0123456789abcdef";
/// The organisation the dev people belong to.
pub const CORP_ID: &str = "dingcorpdevacme0001";

/// The dev app, its redirect prefix `{broker}/callback/`.
pub fn app(broker: &str) -> DingApp {
    DingApp {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        redirect_prefix: format!("{}/callback/", broker.trim_end_matches('/')),
    }
}

/// The people: a member of the dev organisation (signed in to the
/// "DingTalk client" too, for its in-app browser), and one of no organisation.
pub fn people() -> Vec<Person> {
    vec![
        Person::new("iPiSgnAdevZhangSan0001", "张三 Zhang San")
            .mobile("13800138000")
            .email("zhangsan@example.test")
            .corp(CORP_ID, "Acme 示例公司"),
        Person::new("iPiSgnAdevLiSi00000002", "李四 Li Si").mobile("13900139000"),
    ]
}

/// Start the dev fake on `listener`, asking who signs in.
pub async fn start(broker: &str, listener: std::net::TcpListener) -> std::io::Result<DingTalkSim> {
    let sim = DingTalkSim::start_on(app(broker), listener).await?;
    let people = people();
    if let Some(first) = people.first() {
        sim.set_client_user(Some(&first.union_id));
    }
    for p in people {
        sim.add_person(p);
    }
    sim.decide(Decision::Ask);
    Ok(sim)
}
