//! The open.weixin.qq.com pages: `qrconnect` (website login), `oauth2/authorize`
//! (Official Account, inside WeChat), their validation and error pages, the
//! simulated "scan and confirm" step, and WeChat's double callback.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use url::Url;

use crate::api::raw_fault;
use crate::fault::{Endpoint, FaultKind};
use crate::ids;
use crate::shared::Shared;
use crate::state::{Grant, Params, State};

/// Cookie holding the "current WeChat user" for `oauth2/authorize`.
pub(crate) const USER_COOKIE: &str = "sim_wechat_user";
/// Pending pages are forgotten after this long (ms).
const FLOW_TTL: i64 = 3600 * 1000;
/// The authorize parameters, in the order WeChat's clients expect.
const PARAM_ORDER: [&str; 5] = ["appid", "redirect_uri", "response_type", "scope", "state"];

/// Page language (`lang=cn|en` on qrconnect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    Zh,
    En,
}

impl Lang {
    fn pick<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    fn param(self) -> &'static str {
        self.pick("cn", "en")
    }

    fn from_param(value: Option<&str>) -> Lang {
        match value {
            Some(v) if v.eq_ignore_ascii_case("en") => Lang::En,
            _ => Lang::Zh,
        }
    }
}

/// Which authorize page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageKind {
    /// `/connect/qrconnect`, website apps.
    QrConnect,
    /// `/connect/oauth2/authorize`, Official Accounts.
    OfficialAccount,
}

/// A shown login/consent page waiting for the person's decision.
#[derive(Debug, Clone)]
pub(crate) struct Flow {
    appid: String,
    redirect_uri: Url,
    state: String,
    scope: String,
    lang: Lang,
    kind: PageKind,
    created: i64,
    /// Embedded QR (`login_type=jssdk`, from wxLogin.js): a compact page.
    embedded: bool,
    /// Embedded QR with `self_redirect=true`: the callback loads inside the
    /// iframe; otherwise it replaces the top window.
    self_redirect: bool,
}

/// What WeChat shows instead of calling back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PageError {
    pub(crate) code: Option<i64>,
    pub(crate) zh: String,
    pub(crate) en: String,
}

fn perr(code: Option<i64>, zh: &str, en: &str) -> PageError {
    PageError {
        code,
        zh: zh.to_owned(),
        en: en.to_owned(),
    }
}

/// A validated authorize request.
#[derive(Debug)]
pub(crate) struct Authorize {
    flow: Flow,
    sim_user: Option<String>,
    snapshot: bool,
}

fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

pub(crate) fn query_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// `MicroMessenger/` means WeChat's browser, unless it is WeCom (`wxwork/`).
pub(crate) fn is_wechat_browser(user_agent: &str) -> bool {
    let ua = user_agent.to_ascii_lowercase();
    ua.contains("micromessenger/") && !ua.contains("wxwork/")
}

/// The redirect_uri's host must equal the callback domain exactly (host only;
/// `host:port` in the config also pins the port).
fn host_matches(url: &Url, domain: &str) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let domain = domain.trim();
    if let Some((h, p)) = domain.rsplit_once(':') {
        if let (false, Ok(port)) = (h.contains(':'), p.parse::<u16>()) {
            return host.eq_ignore_ascii_case(h) && url.port_or_known_default() == Some(port);
        }
    }
    host.eq_ignore_ascii_case(domain)
}

/// Validates an authorize request the way WeChat does (plus the parameter order).
pub(crate) fn validate(
    st: &State,
    kind: PageKind,
    pairs: &[(String, String)],
    in_wechat: bool,
    now: i64,
) -> Result<Authorize, PageError> {
    if kind == PageKind::OfficialAccount && !in_wechat {
        return Err(perr(
            None,
            "请在微信客户端打开链接",
            "Please open this link in WeChat",
        ));
    }
    let appid = first(pairs, "appid").ok_or_else(|| {
        perr(
            Some(10012),
            "appid 参数错误（appid 不能为空）",
            "appid is empty",
        )
    })?;
    let app = st
        .app(appid)
        .ok_or_else(|| perr(None, "AppID 参数错误", "Invalid AppID"))?;
    let redirect = first(pairs, "redirect_uri").ok_or_else(|| {
        perr(
            Some(10011),
            "redirect_uri 参数错误（redirect_uri 不能为空）",
            "redirect_uri is empty",
        )
    })?;
    let scope = first(pairs, "scope").ok_or_else(|| {
        perr(
            Some(10010),
            "Scope 参数错误（scope 不能为空）",
            "scope is empty",
        )
    })?;
    // wxLogin.js builds its own iframe URL: other order, no response_type.
    let embedded = kind == PageKind::QrConnect && first(pairs, "login_type") == Some("jssdk");
    if !embedded && first(pairs, "response_type") != Some("code") {
        return Err(perr(
            None,
            "response_type 参数错误",
            "response_type must be code",
        ));
    }
    match kind {
        PageKind::QrConnect => {
            if app.kind != crate::AppKind::Website || scope != "snsapi_login" {
                return Err(perr(
                    Some(10005),
                    "Scope 参数错误或没有 Scope 权限",
                    "Invalid scope or no permission for the scope",
                ));
            }
        }
        PageKind::OfficialAccount => {
            if app.kind != crate::AppKind::OfficialAccount {
                return Err(perr(
                    Some(10016),
                    "不支持微信开放平台的Appid，请使用公众号Appid",
                    "Open Platform appids are not supported here; use an Official Account appid",
                ));
            }
            if scope != "snsapi_base" && scope != "snsapi_userinfo" {
                return Err(perr(
                    Some(10005),
                    "Scope 参数错误或没有 Scope 权限",
                    "Invalid scope or no permission for the scope",
                ));
            }
        }
    }
    let redirect_uri = Url::parse(redirect)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .filter(|u| host_matches(u, &app.callback_domain))
        .ok_or_else(|| {
            perr(
                Some(10003),
                "redirect_uri 参数错误",
                "redirect_uri does not match the authorization callback domain",
            )
        })?;
    let state = first(pairs, "state").ok_or_else(|| {
        perr(
            Some(10013),
            "state 参数错误（state 不能为空）",
            "state is empty",
        )
    })?;
    if state.len() > 128 {
        return Err(perr(None, "state参数过长", "state is too long"));
    }
    let positions: Vec<usize> = PARAM_ORDER
        .iter()
        .filter_map(|name| pairs.iter().position(|(k, _)| k == name))
        .collect();
    if !embedded && positions.windows(2).any(|w| w.first() > w.get(1)) {
        return Err(perr(
            None,
            "参数顺序错误：应为 appid、redirect_uri、response_type、scope、state（模拟器严格检查）",
            "Parameters out of order: expected appid, redirect_uri, response_type, scope, state (simulator strict check)",
        ));
    }
    let snapshot = first(pairs, "sim_snapshot") == Some("1") && scope == "snsapi_userinfo";
    Ok(Authorize {
        flow: Flow {
            appid: appid.to_owned(),
            redirect_uri,
            state: state.to_owned(),
            scope: scope.to_owned(),
            lang: Lang::from_param(first(pairs, "lang")),
            kind,
            created: now,
            embedded,
            self_redirect: embedded && first(pairs, "self_redirect") == Some("true"),
        },
        sim_user: first(pairs, "sim_user").map(str::to_owned),
        snapshot,
    })
}

/// The "current WeChat user": `sim_user=` on the URL, else the cookie, else the first user.
fn current_user(
    st: &State,
    sim_user: Option<&str>,
    cookie: Option<&str>,
) -> Result<String, PageError> {
    if let Some(id) = sim_user {
        return st.user(id).map(|u| u.id.clone()).ok_or_else(|| {
            perr(
                None,
                &format!("模拟器：未知的测试用户 sim_user={id}"),
                &format!("Simulator: unknown test user sim_user={id}"),
            )
        });
    }
    cookie
        .and_then(|id| st.user(id))
        .or_else(|| st.users().first())
        .map(|u| u.id.clone())
        .ok_or_else(|| {
            perr(
                None,
                "模拟器：没有配置测试用户",
                "Simulator: no test users configured",
            )
        })
}

/// `redirect_uri` with `code` (if any) and `state` appended to its query.
fn callback_url(redirect_uri: &Url, code: Option<&str>, state: &str) -> String {
    let mut url = redirect_uri.clone();
    {
        let mut q = url.query_pairs_mut();
        if let Some(code) = code {
            q.append_pair("code", code);
        }
        q.append_pair("state", state);
    }
    url.to_string()
}

/// The person confirmed: one callback URL, or two under a DoubleCallback fault.
fn confirm(st: &mut State, flow: &Flow, user_id: &str, snapshot: bool, now: i64) -> Vec<String> {
    let grant = Grant {
        appid: flow.appid.clone(),
        user_id: user_id.to_owned(),
        scope: flow.scope.clone(),
        snapshot,
    };
    let urls = if st.faults.take_double_callback() {
        let (a, b) = st.new_code_pair(grant, now);
        vec![
            callback_url(&flow.redirect_uri, Some(&a), &flow.state),
            callback_url(&flow.redirect_uri, Some(&b), &flow.state),
        ]
    } else {
        let code = st.new_code(grant, now);
        vec![callback_url(&flow.redirect_uri, Some(&code), &flow.state)]
    };
    st.last_redirects.clone_from(&urls);
    urls
}

fn refuse(st: &mut State, flow: &Flow) -> String {
    let url = callback_url(&flow.redirect_uri, None, &flow.state);
    st.last_redirects = vec![url.clone()];
    url
}

fn remember_flow(st: &mut State, flow: Flow, now: i64) -> String {
    st.flows
        .retain(|_, f| now < f.created.saturating_add(FLOW_TTL));
    let id = ids::flow_id();
    st.flows.insert(id.clone(), flow);
    id
}

// ---- the same steps without a browser (Simulator::scan / refuse) ----------

fn parse_authorize_url(url: &str) -> Result<(PageKind, Vec<(String, String)>), PageError> {
    let url = Url::parse(url).map_err(|e| perr(None, &e.to_string(), &e.to_string()))?;
    let kind = match url.path() {
        p if p.ends_with("/connect/qrconnect") => PageKind::QrConnect,
        p if p.ends_with("/connect/oauth2/authorize") => PageKind::OfficialAccount,
        p => {
            return Err(perr(
                None,
                &format!("不是授权页：{p}"),
                &format!("not an authorize page: {p}"),
            ))
        }
    };
    Ok((kind, query_pairs(url.query().unwrap_or(""))))
}

/// What a browser inside WeChat ends up at after `user_id` confirms on `url`.
pub(crate) fn scan(
    st: &mut State,
    url: &str,
    user_id: &str,
    now: i64,
) -> Result<Vec<String>, PageError> {
    let (kind, pairs) = parse_authorize_url(url)?;
    let auth = validate(st, kind, &pairs, true, now)?;
    let user = current_user(st, Some(user_id), None)?;
    Ok(confirm(st, &auth.flow, &user, auth.snapshot, now))
}

/// Where a browser ends up after the person refuses on `url`.
pub(crate) fn refuse_url(st: &mut State, url: &str, now: i64) -> Result<String, PageError> {
    let (kind, pairs) = parse_authorize_url(url)?;
    let auth = validate(st, kind, &pairs, true, now)?;
    Ok(refuse(st, &auth.flow))
}

// ---- handlers ---------------------------------------------------------------

/// A fault aimed at the authorize pages, if any (Slow just waits).
async fn page_fault(req: &HttpRequest, sim: &Shared, lang: Lang) -> Option<HttpResponse> {
    let kind = sim.with(|st, _| st.faults.take(Endpoint::Authorize))?;
    tracing::debug!(?kind, "wechat-sim: injecting fault on an authorize page");
    match kind {
        FaultKind::Slow(delay) => {
            actix_web::rt::time::sleep(delay).await;
            None
        }
        FaultKind::Busy | FaultKind::BusyAfterApply => Some(error_page(
            lang,
            &perr(
                Some(-1),
                "系统繁忙，请稍后再试",
                "System busy, try again later",
            ),
        )),
        FaultKind::Errcode(code, msg) => Some(error_page(lang, &perr(Some(code), &msg, &msg))),
        other => raw_fault(req, &other),
    }
}

/// `GET /connect/qrconnect`: website login, shows the "scan" page.
pub(crate) async fn qrconnect(req: HttpRequest, sim: web::Data<Shared>) -> HttpResponse {
    let pairs = query_pairs(req.query_string());
    let lang = Lang::from_param(first(&pairs, "lang"));
    if let Some(resp) = page_fault(&req, &sim, lang).await {
        return resp;
    }
    let shown = sim.with(|st, now| {
        let auth = validate(st, PageKind::QrConnect, &pairs, true, now)?;
        let flow = auth.flow.clone();
        let id = remember_flow(st, auth.flow, now);
        Ok::<_, PageError>((id, flow, st.users().to_vec()))
    });
    match shown {
        Err(e) => error_page(lang, &e),
        Ok((id, flow, users)) => {
            let switch = lang_switch_link(&pairs, lang);
            html_ok(render_qr_page(&id, &flow, &users, &switch))
        }
    }
}

enum Landing {
    Redirect(Vec<String>, Lang),
    Consent(Box<(String, Flow, crate::SimUser, Vec<crate::SimUser>)>),
}

/// `GET /connect/oauth2/authorize`: Official Account authorization inside WeChat.
pub(crate) async fn oauth2_authorize(req: HttpRequest, sim: web::Data<Shared>) -> HttpResponse {
    let pairs = query_pairs(req.query_string());
    let lang = Lang::from_param(first(&pairs, "lang"));
    if let Some(resp) = page_fault(&req, &sim, lang).await {
        return resp;
    }
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let in_wechat = is_wechat_browser(user_agent);
    let cookie_user = req.cookie(USER_COOKIE).map(|c| c.value().to_owned());
    let landing = sim.with(|st, now| {
        let auth = validate(st, PageKind::OfficialAccount, &pairs, in_wechat, now)?;
        let user = current_user(st, auth.sim_user.as_deref(), cookie_user.as_deref())?;
        if auth.flow.scope == "snsapi_base" || auth.snapshot {
            // Silent: no page, straight back with a code.
            let urls = confirm(st, &auth.flow, &user, auth.snapshot, now);
            return Ok::<_, PageError>(Landing::Redirect(urls, auth.flow.lang));
        }
        let flow = auth.flow.clone();
        let id = remember_flow(st, auth.flow, now);
        let current = st
            .user(&user)
            .cloned()
            .ok_or_else(|| perr(None, "?", "?"))?;
        Ok(Landing::Consent(Box::new((
            id,
            flow,
            current,
            st.users().to_vec(),
        ))))
    });
    match landing {
        Err(e) => error_page(lang, &e),
        Ok(Landing::Redirect(urls, lang)) => redirect(lang, &urls),
        Ok(Landing::Consent(consent)) => {
            let (id, flow, current, users) = *consent;
            html_ok(render_consent_page(&id, &flow, &current, &users))
        }
    }
}

/// `POST /connect/sim/decide`: the person confirmed (`user=ID`) or refused
/// (`decision=refuse`) on a page.
pub(crate) async fn decide(sim: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let form = Params::parse(&body);
    let lang = Lang::from_param(form.get("lang"));
    let outcome = sim.with(|st, now| {
        let expired = || {
            perr(
                None,
                "二维码已失效，请刷新页面重试",
                "This page has expired; reload the login page",
            )
        };
        let id = form.get("flow").ok_or_else(expired)?;
        let flow = st.flows.get(id).cloned().ok_or_else(expired)?;
        if form.get("decision") == Some("refuse") {
            st.flows.remove(id);
            return Ok::<_, PageError>((flow.lang, vec![refuse(st, &flow)], None));
        }
        let user = form
            .get("user")
            .and_then(|u| st.user(u))
            .map(|u| u.id.clone())
            .ok_or_else(|| {
                perr(
                    None,
                    "模拟器：未知的测试用户",
                    "Simulator: unknown test user",
                )
            })?;
        st.flows.remove(id);
        let urls = confirm(st, &flow, &user, false, now);
        let remember = (flow.kind == PageKind::OfficialAccount).then_some(user);
        Ok((flow.lang, urls, remember))
    });
    match outcome {
        Err(e) => error_page(lang, &e),
        Ok((lang, urls, remember)) => {
            let mut resp = redirect(lang, &urls);
            if let Some(user) = remember.filter(|u| cookie_safe(u)) {
                let cookie = Cookie::build(USER_COOKIE, user)
                    .path("/")
                    .same_site(SameSite::Lax)
                    .finish();
                if let Err(e) = resp.add_cookie(&cookie) {
                    tracing::debug!(error = %e, "wechat-sim: could not set the user cookie");
                }
            }
            resp
        }
    }
}

pub(crate) fn cookie_safe(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

// ---- rendering --------------------------------------------------------------

pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;background:#ededed;margin:0}\
main{max-width:420px;margin:40px auto;background:#fff;border-radius:8px;padding:24px;text-align:center}\
h1{font-size:20px;font-weight:500}code{font-size:12px;color:#888}\
.qr{font-size:120px;line-height:1;color:#ccc;margin:8px 0}.hint,.desc{color:#888;font-size:14px}\
ul{list-style:none;padding:0}li{margin:8px 0}\
button{width:100%;padding:10px;border:0;border-radius:4px;font-size:16px;cursor:pointer}\
button.confirm,#allow{background:#07c160;color:#fff}button.refuse{background:#f2f2f2;color:#333}\
#error-message{color:#fa5151}small{opacity:.8}\
.embedded main{margin:0;padding:8px;border-radius:0}.embedded .qr{display:none}.embedded h1{font-size:16px;margin:4px}\
.embedded button{padding:6px;font-size:14px}.embedded li{margin:4px 0}";

/// Stands in for res.wx.qq.com's wxLogin.js: `new WxLogin({id, appid, scope,
/// redirect_uri, state, self_redirect, style, href, lang, ...})` puts an iframe
/// with this simulator's qrconnect page into the element `id`.
const WX_LOGIN_JS: &str = r#"(function (w, d) {
  var me = d.currentScript;
  var base = me ? new URL(me.src, w.location.href).origin : "";
  function WxLogin(o) {
    var sr = o.self_redirect === true ? "true" : (o.self_redirect === false ? "false" : "default");
    var src = base + "/connect/qrconnect?appid=" + o.appid + "&scope=" + o.scope +
      "&redirect_uri=" + o.redirect_uri + "&state=" + o.state +
      "&login_type=jssdk&self_redirect=" + sr +
      "&styletype=" + (o.styletype || "") + "&sizetype=" + (o.sizetype || "") +
      "&bgcolor=" + (o.bgcolor || "") + "&rst=" + (o.rst || "");
    if (o.style) { src += "&style=" + o.style; }
    if (o.href) { src += "&href=" + o.href; }
    if (o.lang) { src += "&lang=" + o.lang; }
    if (o.stylelite) { src += "&stylelite=" + o.stylelite; }
    if (o.fast_login === 0) { src += "&fast_login=0"; }
    var f = d.createElement("iframe");
    f.src = src;
    f.frameBorder = "0";
    f.scrolling = "no";
    f.width = "300px";
    f.height = "400px";
    f.title = "WeChat login";
    var box = d.getElementById(o.id);
    box.innerHTML = "";
    box.appendChild(f);
  }
  w.WxLogin = WxLogin;
})(window, document);
"#;

/// `GET /connect/zh_CN/htmledition/js/wxLogin.js` (WeChat serves it from
/// res.wx.qq.com; point the broker's script URL at the simulator).
pub(crate) async fn wx_login_js() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "application/javascript; charset=utf-8",
        ))
        .body(WX_LOGIN_JS)
}

pub(crate) fn html_doc(lang: Lang, title: &str, head_extra: &str, body: &str) -> String {
    html_doc_class(lang, title, head_extra, "", body)
}

fn html_doc_class(lang: Lang, title: &str, head_extra: &str, class: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title>{head_extra}<style>{STYLE}</style></head>\n<body class=\"{class}\"><main>\n{body}\n</main></body></html>\n",
        lang.pick("zh-CN", "en"),
        esc(title),
    )
}

pub(crate) fn html_ok(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// WeChat's error page: HTTP 200, a message and the error code; never a callback.
pub(crate) fn error_page(lang: Lang, e: &PageError) -> HttpResponse {
    let message = lang.pick(&e.zh, &e.en);
    let code = e.code.map_or_else(String::new, |c| {
        format!(
            "<p class=\"desc\" id=\"error-code\" data-errcode=\"{c}\">{}{c}</p>",
            lang.pick("错误码：", "Error code: ")
        )
    });
    html_ok(html_doc(
        lang,
        lang.pick("微信登录", "WeChat Login"),
        "",
        &format!(
            "<div class=\"msg\" id=\"wechat-error\"><h2 id=\"error-message\">{}</h2>{code}</div>",
            esc(message)
        ),
    ))
}

/// One URL: a 302. Two (double callback): a page that loads the first in a
/// hidden iframe, then sends the window to the second.
fn redirect(lang: Lang, urls: &[String]) -> HttpResponse {
    match urls {
        [first, second] => {
            let head = format!(
                "<meta http-equiv=\"refresh\" content=\"2;url={}\">",
                esc(second)
            );
            let body = format!(
                "<p id=\"double-callback\">{}</p>\n\
                 <iframe id=\"first-callback\" title=\"callback 1\" src=\"{}\" data-next=\"{}\" \
                 onload=\"window.location.replace(this.dataset.next)\" width=\"1\" height=\"1\" style=\"border:0\"></iframe>\n\
                 <p><a id=\"second-callback\" href=\"{}\">{}</a></p>",
                lang.pick("登录成功，正在跳转…", "Signed in, redirecting…"),
                esc(first),
                esc(second),
                esc(second),
                lang.pick("继续", "Continue"),
            );
            html_ok(html_doc(
                lang,
                lang.pick("微信登录", "WeChat Login"),
                &head,
                &body,
            ))
        }
        [only, ..] => HttpResponse::Found()
            .insert_header((header::LOCATION, only.as_str()))
            .finish(),
        [] => error_page(lang, &perr(None, "?", "?")),
    }
}

fn lang_switch_link(pairs: &[(String, String)], lang: Lang) -> String {
    let other = match lang {
        Lang::Zh => Lang::En,
        Lang::En => Lang::Zh,
    };
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(k, _)| k != "lang") {
        ser.append_pair(k, v);
    }
    ser.append_pair("lang", other.param());
    format!("/connect/qrconnect?{}", ser.finish())
}

fn decide_form_start(id: &str, flow: &Flow) -> String {
    // Embedded without self_redirect: the callback replaces the top window.
    let target = if flow.embedded && !flow.self_redirect {
        " target=\"_top\""
    } else {
        ""
    };
    format!(
        "<form method=\"post\" action=\"/connect/sim/decide\"{target}>\
         <input type=\"hidden\" name=\"flow\" value=\"{}\"><input type=\"hidden\" name=\"lang\" value=\"{}\">\n",
        esc(id),
        flow.lang.param()
    )
}

fn user_buttons(users: &[crate::SimUser], verb: &str) -> String {
    let mut out = String::from("<ul class=\"users\">\n");
    for u in users {
        out.push_str(&format!(
            "<li><button type=\"submit\" class=\"confirm\" id=\"confirm-{id}\" name=\"user\" value=\"{id}\" \
             aria-label=\"{verb} {nick} ({id})\">{verb} · {nick} <small>{id}</small></button></li>\n",
            id = esc(&u.id),
            nick = esc(&u.nickname),
            verb = esc(verb),
        ));
    }
    out.push_str("</ul>\n");
    out
}

fn render_qr_page(id: &str, flow: &Flow, users: &[crate::SimUser], switch: &str) -> String {
    let l = flow.lang;
    let body = format!(
        "<h1>{title}</h1>\n<p class=\"desc\">{app} <code id=\"appid\">{appid}</code></p>\n\
         <div class=\"qr\" aria-hidden=\"true\">&#9638;</div>\n<p class=\"hint\">{hint}</p>\n\
         {form}{buttons}<button type=\"submit\" class=\"refuse\" id=\"refuse\" name=\"decision\" value=\"refuse\">{refuse}</button>\n</form>\n\
         <p><a id=\"lang-switch\" href=\"{switch}\">{other}</a></p>",
        title = l.pick("微信登录", "WeChat Login"),
        app = l.pick("网站应用请求使用微信登录：", "This website asks you to log in with WeChat:"),
        appid = esc(&flow.appid),
        hint = l.pick(
            "模拟器：选择一个测试用户代替手机扫码，并确认登录",
            "Simulator: pick a test user instead of scanning with a phone, and confirm"
        ),
        form = decide_form_start(id, flow),
        buttons = user_buttons(users, l.pick("确认登录", "Confirm")),
        refuse = l.pick("拒绝", "Refuse"),
        switch = esc(switch),
        other = l.pick("English", "中文"),
    );
    let class = if flow.embedded { "embedded" } else { "" };
    html_doc_class(l, l.pick("微信登录", "WeChat Login"), "", class, &body)
}

fn render_consent_page(
    id: &str,
    flow: &Flow,
    current: &crate::SimUser,
    users: &[crate::SimUser],
) -> String {
    let l = flow.lang;
    let body = format!(
        "<h1>{title}</h1>\n<p class=\"desc\">{app} <code id=\"appid\">{appid}</code></p>\n\
         <p>{asks}</p>\n<p id=\"current-user\" data-user=\"{cur_id}\">{cur_label}{cur_nick} <small>{cur_id}</small></p>\n\
         {form}<p><button type=\"submit\" id=\"allow\" name=\"user\" value=\"{cur_id}\">{allow}</button></p>\n\
         <p><button type=\"submit\" class=\"refuse\" id=\"refuse\" name=\"decision\" value=\"refuse\">{refuse}</button></p>\n\
         <p class=\"hint\">{others}</p>\n{buttons}</form>",
        title = l.pick("授权", "Authorize"),
        app = l.pick("公众号申请获得以下权限：", "This Official Account asks for:"),
        appid = esc(&flow.appid),
        asks = l.pick(
            "获得你的公开信息（昵称、头像等）",
            "Your public profile (nickname, avatar)"
        ),
        cur_label = l.pick("当前微信用户：", "Current WeChat user: "),
        cur_nick = esc(&current.nickname),
        cur_id = esc(&current.id),
        form = decide_form_start(id, flow),
        allow = l.pick("允许", "Allow"),
        refuse = l.pick("拒绝", "Refuse"),
        others = l.pick("模拟器：以其他测试用户身份允许", "Simulator: allow as another test user"),
        buttons = user_buttons(users, l.pick("允许", "Allow")),
    );
    html_doc(l, l.pick("授权", "Authorize"), "", &body)
}
