//! The fake as `idbridge serve --dev` runs it: one self-built app, a few
//! members and a non-member to pick from on its pages.

use super::{CorpApp, Decision, Member, WeComSim};

pub const CORP_ID: &str = "ww0d3v5im0000c0rp";
pub const AGENT_ID: u64 = 1000002;
pub const SECRET: &str = "dev-wecom-sim-secret-0123456789abcdefghijk";
/// The non-member the page offers.
pub const NON_MEMBER_OPENID: &str = "oDevNonMember0000000000000";

/// The dev app, trusting `127.0.0.1` (the dev broker's host).
pub fn app() -> CorpApp {
    CorpApp {
        corp_id: CORP_ID.into(),
        agent_id: AGENT_ID,
        secret: SECRET.into(),
        trusted_domain: "127.0.0.1".into(),
    }
}

/// Two members in the visible range, one outside it.
pub fn members() -> Vec<Member> {
    vec![
        Member::new("ZhangSan", "张三")
            .position("工程师")
            .alias("Sam"),
        Member::new("LiSi", "李四").position("产品经理"),
        Member::new("WangWu", "王五").outside_visible_range(),
    ]
}

/// Start the dev fake on `listener`, asking who signs in.
pub async fn start(listener: std::net::TcpListener) -> std::io::Result<WeComSim> {
    let sim = WeComSim::start_on(app(), listener).await?;
    for m in members() {
        sim.add_member(m);
    }
    sim.add_non_member(NON_MEMBER_OPENID);
    sim.decide(Decision::Ask);
    Ok(sim)
}
