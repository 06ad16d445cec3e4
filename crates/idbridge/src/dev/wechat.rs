//! WeChat's simulator (wechat-sim) and the WeChat connectors on it: the website
//! app (as a redirect to its QR page and as a QR on the sign-in page), the
//! mobile app, the Mini Program, the Official Account, and a website app bound
//! to no Open Platform account.

use super::{Ports, Running};
use wechat_sim::dev;

/// The connectors on the simulator at `sim`.
fn connectors(sim: &str) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    // The website app, once as a redirect to its QR page and once as the QR
    // embedded in the broker's page.
    for (id, name, mode) in [
        ("wechat", "微信登录 WeChat (simulator)", "redirect"),
        (
            "wechat-qr",
            "微信扫码 WeChat QR on this page (simulator)",
            "embedded",
        ),
    ] {
        all.push(serde_json::json!({
            "id": id,
            "type": "wechat-web",
            "name": name,
            "mode": mode,
            "appid": dev::WEB_APPID,
            "appsecret": dev::WEB_SECRET,
            "open_platform_id": dev::OPEN_PLATFORM_ID,
            "callback_domain": "127.0.0.1",
            "api_base_url": sim,
            "open_base_url": sim,
        }));
    }
    // The mobile app: no browser flow; a native app (or curl) exchanges an SDK
    // code from POST {sim}/__sim/codes at /token.
    all.push(serde_json::json!({
        "id": "wechat-app",
        "type": "wechat-app",
        "name": "微信 WeChat mobile app (simulator)",
        "appid": dev::MOBILE_APPID,
        "appsecret": dev::MOBILE_SECRET,
        "open_platform_id": dev::OPEN_PLATFORM_ID,
        "api_base_url": sim,
    }));
    // The Mini Program: no browser flow either; its wx.login code (POST
    // {sim}/__sim/codes) and getPhoneNumber code (POST {sim}/__sim/phone-codes)
    // are exchanged at /token.
    all.push(serde_json::json!({
        "id": "wechat-mini",
        "type": "wechat-miniprogram",
        "name": "微信小程序 WeChat Mini Program (simulator)",
        "appid": dev::MINI_PROGRAM_APPID,
        "appsecret": dev::MINI_PROGRAM_SECRET,
        "open_platform_id": dev::OPEN_PLATFORM_ID,
        "api_base_url": sim,
        "phone_number": true,
    }));
    // The Official Account: offered (and picked by itself) inside WeChat, i.e.
    // with a MicroMessenger User-Agent. It also sends one-time codes into the
    // person's WeChat chat.
    all.push(serde_json::json!({
        "id": "wechat-mp",
        "type": "wechat-mp",
        "name": "微信公众号 WeChat Official Account (simulator)",
        "appid": dev::MP_APPID,
        "appsecret": dev::MP_SECRET,
        "open_platform_id": dev::OPEN_PLATFORM_ID,
        "callback_domain": "127.0.0.1",
        "api_base_url": sim,
        "open_base_url": sim,
        "messages": true,
    }));
    // A website app bound to no Open Platform account (no unionid): a new person
    // must first prove an existing account (first_login = bind).
    all.push(serde_json::json!({
        "id": "wechat-unbound",
        "type": "wechat-web",
        "name": "微信登录（需关联账号）WeChat, link to your account first (simulator)",
        "first_login": "bind",
        "appid": dev::UNBOUND_WEB_APPID,
        "appsecret": dev::UNBOUND_WEB_SECRET,
        "callback_domain": "127.0.0.1",
        "api_base_url": sim,
        "open_base_url": sim,
    }));
    all
}

pub async fn start(ports: &mut Ports) -> Result<Running, String> {
    let failed = |e: std::io::Error| {
        format!("cannot start the WeChat simulator: {e} (choose another --port or --sim-port)")
    };
    let listener = ports.listen("WeChat simulator").map_err(failed)?;
    let sim =
        wechat_sim::Simulator::start_on(wechat_sim::SimConfig::dev_default("127.0.0.1"), listener)
            .await
            .map_err(failed)?;
    let base = sim.base_url();
    let banner = vec![
        format!("  WeChat simulator:    {base}/__sim/  (faults, counters, test users)"),
        format!("  Mobile-app login:    exchange an SDK code from POST {base}/__sim/codes at the broker's /token (README: \"Trying the mobile-app flow\")"),
    ];
    Ok(Running::new(sim, connectors(&base), banner))
}
