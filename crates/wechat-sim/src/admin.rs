//! The `/__sim/` admin API and index page, for browser tests and people:
//! flip faults, read counters and messages, move the clock, choose the
//! "current WeChat user", hand out SDK codes.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, Scope};
use serde_json::{json, Value};

use crate::fault::Fault;
use crate::pages::{cookie_safe, esc, html_doc, html_ok, Lang, USER_COOKIE};
use crate::shared::Shared;
use crate::state::Params;
use crate::SimLimits;

pub(crate) fn scope() -> Scope {
    web::scope("/__sim")
        .route("", web::get().to(index))
        .route("/", web::get().to(index))
        .route("/faults", web::get().to(list_faults))
        .route("/faults", web::post().to(add_fault))
        .route("/faults", web::delete().to(clear_faults))
        .route("/counters", web::get().to(counters))
        .route("/messages", web::get().to(messages))
        .route("/redirects", web::get().to(redirects))
        .route("/advance", web::post().to(advance))
        .route("/limits", web::get().to(get_limits))
        .route("/limits", web::post().to(set_limits))
        .route("/interaction", web::post().to(interaction))
        .route("/codes", web::post().to(issue_code))
        .route("/phone-codes", web::post().to(issue_phone_code))
        .route("/wechat-user", web::post().to(choose_user))
}

fn bad_request(msg: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": msg}))
}

async fn list_faults(sim: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(sim.with(|st, _| st.faults.list()))
}

async fn add_fault(sim: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<Fault>(&body) {
        Ok(fault) => {
            sim.with(|st, _| st.faults.push(fault.clone()));
            HttpResponse::Ok().json(fault)
        }
        Err(e) => bad_request(&format!("bad fault: {e}")),
    }
}

async fn clear_faults(sim: web::Data<Shared>) -> HttpResponse {
    sim.with(|st, _| st.faults.clear());
    HttpResponse::Ok().json(json!({"ok": true}))
}

async fn counters(sim: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(sim.with(|st, _| st.counters.clone()))
}

async fn messages(sim: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(sim.with(|st, _| st.messages.clone()))
}

async fn redirects(sim: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(sim.with(|st, _| st.last_redirects.clone()))
}

async fn advance(req: HttpRequest, sim: web::Data<Shared>) -> HttpResponse {
    let q = Params::parse(req.query_string().as_bytes());
    match q.get("secs").map(str::parse::<i64>) {
        Some(Ok(secs)) => {
            sim.clock.advance(secs);
            HttpResponse::Ok().json(json!({"now": sim.clock.now_ms() / 1000}))
        }
        _ => bad_request("need ?secs=N (an integer)"),
    }
}

async fn get_limits(sim: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(sim.with(|st, _| st.limits))
}

/// Merges the posted fields onto the current limits.
async fn set_limits(sim: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let patch = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(patch)) => patch,
        _ => return bad_request("need a JSON object of limits"),
    };
    let result = sim.with(|st, _| {
        let mut merged = serde_json::to_value(st.limits).map_err(|e| e.to_string())?;
        if let Value::Object(fields) = &mut merged {
            for (k, v) in patch {
                if !fields.contains_key(&k) {
                    return Err(format!("unknown limit {k:?}"));
                }
                fields.insert(k, v);
            }
        }
        let limits: SimLimits = serde_json::from_value(merged).map_err(|e| e.to_string())?;
        st.limits = limits;
        Ok(limits)
    });
    match result {
        Ok(limits) => HttpResponse::Ok().json(limits),
        Err(e) => bad_request(&e),
    }
}

async fn interaction(req: HttpRequest, sim: web::Data<Shared>) -> HttpResponse {
    let q = Params::parse(req.query_string().as_bytes());
    let (Some(appid), Some(user)) = (q.get("appid"), q.get("user")) else {
        return bad_request("need ?appid=...&user=...");
    };
    if sim.with(|st, now| st.mark_interaction(appid, user, now)) {
        HttpResponse::Ok().json(json!({"ok": true}))
    } else {
        bad_request("unknown appid or user")
    }
}

async fn issue_code(req: HttpRequest, sim: web::Data<Shared>) -> HttpResponse {
    let q = Params::parse(req.query_string().as_bytes());
    let (Some(appid), Some(user)) = (q.get("appid"), q.get("user")) else {
        return bad_request("need ?appid=...&user=...[&scope=...]");
    };
    let scope = q.get("scope").map(str::to_owned);
    let snapshot = q.get("snapshot") == Some("1");
    if snapshot && scope.as_deref().is_some_and(|s| s != "snsapi_userinfo") {
        return bad_request("snapshot=1 needs scope snsapi_userinfo (the default)");
    }
    match sim.with(|st, now| crate::issue_code(st, appid, user, scope.as_deref(), snapshot, now)) {
        Ok(code) => HttpResponse::Ok().json(json!({"code": code})),
        Err(e) => bad_request(&e.to_string()),
    }
}

/// A Mini Program's `getPhoneNumber` code for `?appid&phone=+86…`.
async fn issue_phone_code(req: HttpRequest, sim: web::Data<Shared>) -> HttpResponse {
    let q = Params::parse(req.query_string().as_bytes());
    let (Some(appid), Some(phone)) = (q.get("appid"), q.get("phone")) else {
        return bad_request("need ?appid=...&phone=+86...");
    };
    // A `+` sent unencoded in a query reads as a space.
    let phone = match phone.strip_prefix(' ') {
        Some(rest) => format!("+{rest}"),
        None => phone.to_owned(),
    };
    let Some((country, number)) = crate::split_phone(&phone) else {
        return bad_request("phone must be + country code and number, e.g. +8613800138000");
    };
    match sim.with(|st, now| st.issue_phone_code(appid, country, number, now)) {
        Some(code) => HttpResponse::Ok().json(json!({"code": code})),
        None => bad_request("unknown Mini Program appid"),
    }
}

/// Sets the "current WeChat user" cookie used by `oauth2/authorize`.
async fn choose_user(sim: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let form = Params::parse(&body);
    let Some(user) = form
        .get("user")
        .filter(|u| sim.with(|st, _| st.user(u).is_some()) && cookie_safe(u))
    else {
        return bad_request("unknown user");
    };
    let cookie = Cookie::build(USER_COOKIE, user.to_owned())
        .path("/")
        .same_site(SameSite::Lax)
        .finish();
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/__sim/"))
        .cookie(cookie)
        .finish()
}

async fn index(req: HttpRequest, sim: web::Data<Shared>) -> HttpResponse {
    let current = req.cookie(USER_COOKIE).map(|c| c.value().to_owned());
    let (apps, users, counters) =
        sim.with(|st, _| (st.apps().to_vec(), st.users().to_vec(), st.counters.clone()));
    let current = current
        .filter(|c| users.iter().any(|u| &u.id == c))
        .or_else(|| users.first().map(|u| u.id.clone()))
        .unwrap_or_default();
    let mut body = String::from("<h1>WeChat simulator</h1>\n<h2>Apps</h2>\n<table id=\"apps\">\n");
    body.push_str("<tr><th>appid</th><th>secret</th><th>kind</th><th>open platform</th><th>callback domain</th></tr>\n");
    for a in &apps {
        body.push_str(&format!(
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{:?}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&a.appid),
            esc(&a.secret),
            a.kind,
            esc(a.open_platform_id.as_deref().unwrap_or("(unbound)")),
            esc(&a.callback_domain)
        ));
    }
    body.push_str("</table>\n<h2>Current WeChat user (for oauth2/authorize)</h2>\n<form method=\"post\" action=\"/__sim/wechat-user\"><ul>\n");
    for u in &users {
        body.push_str(&format!(
            "<li><button type=\"submit\" id=\"as-{id}\" name=\"user\" value=\"{id}\"{cls}>{nick} <small>{id}</small>{mark}</button></li>\n",
            id = esc(&u.id),
            nick = esc(&u.nickname),
            cls = if u.id == current { " class=\"confirm\"" } else { "" },
            mark = if u.id == current { " ✓" } else { "" },
        ));
    }
    body.push_str("</ul></form>\n");
    body.push_str(&format!(
        "<h2>Counters</h2><pre id=\"counters\">{}</pre>\n<p class=\"hint\">JSON API: GET/POST/DELETE /__sim/faults, GET /__sim/counters, GET /__sim/messages, GET /__sim/redirects, POST /__sim/advance?secs=N, GET/POST /__sim/limits, POST /__sim/interaction?appid&amp;user, POST /__sim/codes?appid&amp;user&amp;scope[&amp;snapshot=1], POST /__sim/phone-codes?appid&amp;phone=%2B86…</p>",
        esc(&serde_json::to_string_pretty(&counters).unwrap_or_default())
    ));
    html_ok(html_doc(Lang::En, "WeChat simulator", "", &body))
}
