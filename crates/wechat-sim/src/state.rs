//! The simulator's memory and WeChat's rules: codes, user tokens, app tokens,
//! quotas, the 48 h message window. Pure logic: every call gets the sim time
//! `now` (milliseconds) from the caller and never reads a clock itself.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;
use serde_json::{json, Value};

use crate::config::{AppKind, SimApp, SimConfig, SimLimits, SimUser};
use crate::fault::{Endpoint, FaultList};
use crate::ids;
use crate::pages::Flow;

mod mini_program;

const SEC: i64 = 1000;
const USER_ACCESS_TTL: i64 = 7200 * SEC;
const REFRESH_TTL: i64 = 30 * 86_400 * SEC;
const APP_TOKEN_TTL: i64 = 7200 * SEC;
/// A superseded app token keeps working this long after the new one is minted.
const SUPERSEDED_GRACE: i64 = 300 * SEC;
const MESSAGE_WINDOW: i64 = 48 * 3600 * SEC;
/// WeChat's days start at midnight Beijing time (UTC+8).
const BEIJING_OFFSET: i64 = 8 * 3600 * SEC;

/// The virtual profile a snapshot-mode user gets.
pub(crate) const SNAPSHOT_NICKNAME: &str = "微信用户";
pub(crate) const SNAPSHOT_HEADIMGURL: &str = "https://thirdwx.qlogo.cn/mmopen/vi_32/POgEwh4mIHO4nibH0KlMECNjjGxQUq24ZEaGT4poC6icRiccVGKSyXwibcPq4BWmiaIGuG1icwxaQX6grC9VemZoJ8rg/132";

/// Calls seen, for tests that assert how often the broker talks to WeChat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// App tokens newly minted by `cgi-bin/token` or `cgi-bin/stable_token`
    /// (a `stable_token` call that returns the cached token does not count).
    pub app_token_fetches: u64,
    /// Requests to `cgi-bin/token` and `cgi-bin/stable_token`, whatever the outcome.
    pub app_token_requests: u64,
    /// Requests to `sns/oauth2/access_token`, whatever the outcome (faults included).
    pub code_exchanges: u64,
    /// Requests to `sns/oauth2/refresh_token`, whatever the outcome.
    pub refresh_calls: u64,
    /// Requests to `sns/userinfo`, whatever the outcome.
    pub userinfo_calls: u64,
    /// Requests to `sns/auth`, whatever the outcome.
    pub auth_calls: u64,
    /// Requests to `cgi-bin/message/custom/send`, whatever the outcome.
    pub custom_send_calls: u64,
    /// Requests to `sns/jscode2session`, whatever the outcome.
    pub mini_program_sessions: u64,
    /// Requests to `wxa/business/getuserphonenumber`, whatever the outcome.
    pub phone_number_calls: u64,
    /// Customer-service messages delivered.
    pub messages_sent: u64,
    /// Codes handed out (by pages, `scan` or `issue_code`).
    pub codes_issued: u64,
}

/// A customer-service message the simulator delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentMessage {
    /// The Official Account that sent it.
    pub appid: String,
    /// The recipient's openid in that account.
    pub touser: String,
    /// The text.
    pub content: String,
}

/// A WeChat API error: `{"errcode": code, "errmsg": "msg rid: ..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WxError {
    pub(crate) code: i64,
    pub(crate) msg: String,
}

pub(crate) fn wx(code: i64, msg: &str) -> WxError {
    WxError {
        code,
        msg: msg.to_owned(),
    }
}

/// Query or form parameters; the first occurrence of a name wins, empty counts as missing.
#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    pub(crate) fn parse(input: &[u8]) -> Params {
        let mut map = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(input) {
            map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        Params(map)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Who a code or token speaks for.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) appid: String,
    pub(crate) user_id: String,
    pub(crate) scope: String,
    /// Snapshot mode (page opened from Moments): virtual ids and profile.
    pub(crate) snapshot: bool,
}

#[derive(Debug)]
struct CodeRec {
    grant: Grant,
    issued: i64,
    used: bool,
    /// The other code of a double callback: spending one spends both.
    sibling: Option<String>,
}

#[derive(Debug)]
struct AccessRec {
    grant: Grant,
    issued: i64,
}

#[derive(Debug)]
struct RefreshRec {
    grant: Grant,
    issued: i64,
    access: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Slot {
    /// `cgi-bin/token`.
    Plain,
    /// `cgi-bin/stable_token`, kept apart from the plain one as WeChat does.
    Stable,
}

#[derive(Debug)]
struct AppTokenRec {
    appid: String,
    issued: i64,
    superseded: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    opened: i64,
    sent: u32,
}

/// Everything the simulator remembers.
#[derive(Debug)]
pub(crate) struct State {
    apps: Vec<SimApp>,
    users: Vec<SimUser>,
    pub(crate) limits: SimLimits,
    codes: HashMap<String, CodeRec>,
    access: HashMap<String, AccessRec>,
    refresh: HashMap<String, RefreshRec>,
    app_tokens: HashMap<String, AppTokenRec>,
    current_app_token: HashMap<(String, Slot), String>,
    minted_per_day: HashMap<String, (i64, u32)>,
    forced_per_day: HashMap<String, (i64, u32)>,
    exchanges_per_minute: HashMap<String, (i64, u32)>,
    pub(crate) phone_codes: HashMap<String, mini_program::PhoneCode>,
    windows: HashMap<(String, String), Window>,
    ip_allowlists: HashMap<String, Vec<IpAddr>>,
    pub(crate) messages: Vec<SentMessage>,
    pub(crate) counters: Counters,
    pub(crate) faults: FaultList,
    pub(crate) flows: HashMap<String, Flow>,
    pub(crate) last_redirects: Vec<String>,
}

fn day_of(now: i64) -> i64 {
    (now + BEIJING_OFFSET).div_euclid(86_400 * SEC)
}

/// Bumps a per-period counter and tells whether it was still under `limit`.
fn within_limit(map: &mut HashMap<String, (i64, u32)>, key: &str, period: i64, limit: u32) -> bool {
    let entry = map.entry(key.to_owned()).or_insert((period, 0));
    if entry.0 != period {
        *entry = (period, 0);
    }
    if entry.1 >= limit {
        return false;
    }
    entry.1 += 1;
    true
}

fn peek_limit(map: &HashMap<String, (i64, u32)>, key: &str, period: i64, limit: u32) -> bool {
    match map.get(key) {
        Some(&(p, n)) if p == period => n < limit,
        _ => limit > 0,
    }
}

impl State {
    pub(crate) fn new(config: SimConfig) -> State {
        State {
            apps: config.apps,
            users: config.users,
            limits: SimLimits::default(),
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            app_tokens: HashMap::new(),
            current_app_token: HashMap::new(),
            phone_codes: HashMap::new(),
            minted_per_day: HashMap::new(),
            forced_per_day: HashMap::new(),
            exchanges_per_minute: HashMap::new(),
            windows: HashMap::new(),
            ip_allowlists: HashMap::new(),
            messages: Vec::new(),
            counters: Counters::default(),
            faults: FaultList::default(),
            flows: HashMap::new(),
            last_redirects: Vec::new(),
        }
    }

    pub(crate) fn apps(&self) -> &[SimApp] {
        &self.apps
    }

    pub(crate) fn users(&self) -> &[SimUser] {
        &self.users
    }

    pub(crate) fn app(&self, appid: &str) -> Option<&SimApp> {
        self.apps.iter().find(|a| a.appid == appid)
    }

    pub(crate) fn app_mut(&mut self, appid: &str) -> Option<&mut SimApp> {
        self.apps.iter_mut().find(|a| a.appid == appid)
    }

    pub(crate) fn user(&self, user_id: &str) -> Option<&SimUser> {
        self.users.iter().find(|u| u.id == user_id)
    }

    pub(crate) fn user_mut(&mut self, user_id: &str) -> Option<&mut SimUser> {
        self.users.iter_mut().find(|u| u.id == user_id)
    }

    pub(crate) fn set_ip_allowlist(&mut self, appid: &str, ips: Option<Vec<IpAddr>>) {
        match ips {
            Some(ips) => {
                self.ip_allowlists.insert(appid.to_owned(), ips);
            }
            None => {
                self.ip_allowlists.remove(appid);
            }
        }
    }

    /// Counts a request to an endpoint (before faults are applied).
    pub(crate) fn count_call(&mut self, endpoint: Endpoint) {
        let c = &mut self.counters;
        match endpoint {
            Endpoint::AccessToken => c.code_exchanges += 1,
            Endpoint::RefreshToken => c.refresh_calls += 1,
            Endpoint::UserInfo => c.userinfo_calls += 1,
            Endpoint::Auth => c.auth_calls += 1,
            Endpoint::AppToken | Endpoint::StableToken => c.app_token_requests += 1,
            Endpoint::CustomSend => c.custom_send_calls += 1,
            Endpoint::JsCode2Session => c.mini_program_sessions += 1,
            Endpoint::PhoneNumber => c.phone_number_calls += 1,
            Endpoint::Authorize | Endpoint::Any => {}
        }
    }

    // ---- ids -------------------------------------------------------------

    /// The openid the grant's app sees (virtual in snapshot mode).
    fn grant_openid(grant: &Grant) -> String {
        if grant.snapshot {
            ids::snapshot_openid(&grant.appid, &grant.user_id)
        } else {
            ids::openid(&grant.appid, &grant.user_id)
        }
    }

    /// The unionid for the grant, if the app is bound to an Open Platform account.
    fn grant_unionid(&self, grant: &Grant) -> Option<String> {
        let platform = self.app(&grant.appid)?.open_platform_id.as_deref()?;
        Some(if grant.snapshot {
            ids::snapshot_unionid(platform, &grant.user_id)
        } else {
            ids::unionid(platform, &grant.user_id)
        })
    }

    // ---- codes -----------------------------------------------------------

    /// Issues a fresh code for `grant`.
    pub(crate) fn new_code(&mut self, grant: Grant, now: i64) -> String {
        let code = ids::code();
        self.codes.insert(
            code.clone(),
            CodeRec {
                grant,
                issued: now,
                used: false,
                sibling: None,
            },
        );
        self.counters.codes_issued += 1;
        code
    }

    /// Issues the two codes of a double callback: either one works, and
    /// spending one spends the other (the second exchange gets 40163).
    pub(crate) fn new_code_pair(&mut self, grant: Grant, now: i64) -> (String, String) {
        let first = self.new_code(grant.clone(), now);
        let second = self.new_code(grant, now);
        if let Some(rec) = self.codes.get_mut(&first) {
            rec.sibling = Some(second.clone());
        }
        if let Some(rec) = self.codes.get_mut(&second) {
            rec.sibling = Some(first.clone());
        }
        (first, second)
    }

    fn mint_user_tokens(&mut self, grant: Grant, now: i64) -> Value {
        let access = ids::token(86);
        let refresh = ids::token(86);
        self.access.insert(
            access.clone(),
            AccessRec {
                grant: grant.clone(),
                issued: now,
            },
        );
        self.refresh.insert(
            refresh.clone(),
            RefreshRec {
                grant: grant.clone(),
                issued: now,
                access: access.clone(),
            },
        );
        self.token_body(&grant, &access, &refresh)
    }

    fn token_body(&self, grant: &Grant, access: &str, refresh: &str) -> Value {
        let mut body = json!({
            "access_token": access,
            "expires_in": 7200,
            "refresh_token": refresh,
            "openid": Self::grant_openid(grant),
            "scope": grant.scope,
        });
        let kind = self.app(&grant.appid).map(|a| a.kind);
        // snsapi_base has not returned unionid since December 2017.
        let unionid_allowed =
            kind != Some(AppKind::OfficialAccount) || grant.scope == "snsapi_userinfo";
        if unionid_allowed {
            if let Some(unionid) = self.grant_unionid(grant) {
                body["unionid"] = json!(unionid);
            }
        }
        if grant.snapshot {
            body["is_snapshotuser"] = json!(1);
        }
        body
    }

    /// `GET /sns/oauth2/access_token`.
    pub(crate) fn exchange_code(&mut self, q: &Params, now: i64) -> Result<Value, WxError> {
        let appid = q.get("appid").ok_or_else(|| wx(41002, "appid missing"))?;
        let app = self.app(appid).ok_or_else(|| wx(40013, "invalid appid"))?;
        let secret = q
            .get("secret")
            .ok_or_else(|| wx(41004, "appsecret missing"))?;
        if secret != app.secret {
            return Err(wx(40125, "invalid appsecret"));
        }
        let code = q.get("code").ok_or_else(|| wx(41008, "missing code"))?;
        if q.get("grant_type") != Some("authorization_code") {
            return Err(wx(40002, "invalid grant_type"));
        }
        let minute = now.div_euclid(60 * SEC);
        let limit = self.limits.code_exchanges_per_minute;
        if !within_limit(&mut self.exchanges_per_minute, appid, minute, limit) {
            return Err(wx(
                45011,
                "api minute-quota reach limit  mustslower  retry next minute",
            ));
        }
        let ttl = self.limits.code_ttl_secs.saturating_mul(SEC);
        let rec = self
            .codes
            .get_mut(code)
            .filter(|rec| rec.grant.appid == appid)
            .ok_or_else(|| wx(40029, "invalid code"))?;
        if rec.used {
            return Err(wx(40163, "code been used"));
        }
        if now >= rec.issued.saturating_add(ttl) {
            return Err(wx(42003, "code expired"));
        }
        rec.used = true;
        let grant = rec.grant.clone();
        if let Some(sibling) = rec.sibling.clone() {
            if let Some(other) = self.codes.get_mut(&sibling) {
                other.used = true;
            }
        }
        Ok(self.mint_user_tokens(grant, now))
    }

    /// Drops every user and refresh token of `user_id` for `appid`.
    pub(crate) fn revoke_authorization(&mut self, appid: &str, user_id: &str) -> usize {
        let of_them = |g: &Grant| g.appid == appid && g.user_id == user_id;
        let before = self.refresh.len();
        self.refresh.retain(|_, rec| !of_them(&rec.grant));
        self.access.retain(|_, rec| !of_them(&rec.grant));
        before - self.refresh.len()
    }

    /// `GET /sns/oauth2/refresh_token`.
    pub(crate) fn refresh(&mut self, q: &Params, now: i64) -> Result<Value, WxError> {
        let appid = q.get("appid").ok_or_else(|| wx(41002, "appid missing"))?;
        if self.app(appid).is_none() {
            return Err(wx(40013, "invalid appid"));
        }
        if q.get("grant_type") != Some("refresh_token") {
            return Err(wx(40002, "invalid grant_type"));
        }
        let token = q
            .get("refresh_token")
            .ok_or_else(|| wx(41003, "refresh_token missing"))?;
        let rec = self
            .refresh
            .get_mut(token)
            .filter(|rec| rec.grant.appid == appid)
            .ok_or_else(|| wx(40030, "invalid refresh_token"))?;
        if now >= rec.issued.saturating_add(REFRESH_TTL) {
            return Err(wx(42002, "refresh_token expired"));
        }
        let access = ids::token(86);
        let old = std::mem::replace(&mut rec.access, access.clone());
        let grant = rec.grant.clone();
        self.access.remove(&old);
        self.access.insert(
            access.clone(),
            AccessRec {
                grant: grant.clone(),
                issued: now,
            },
        );
        Ok(self.token_body(&grant, &access, token))
    }

    fn user_access(&self, q: &Params, now: i64) -> Result<&AccessRec, WxError> {
        let token = q
            .get("access_token")
            .ok_or_else(|| wx(41001, "access_token missing"))?;
        let openid = q.get("openid").ok_or_else(|| wx(41009, "missing openid"))?;
        let rec = self
            .access
            .get(token)
            .ok_or_else(|| wx(40014, "invalid access_token"))?;
        if now >= rec.issued.saturating_add(USER_ACCESS_TTL) {
            return Err(wx(42001, "access_token expired"));
        }
        if Self::grant_openid(&rec.grant) != openid {
            return Err(wx(40003, "invalid openid"));
        }
        Ok(rec)
    }

    /// `GET /sns/userinfo`.
    pub(crate) fn userinfo(&self, q: &Params, now: i64) -> Result<Value, WxError> {
        let rec = self.user_access(q, now)?;
        if rec.grant.scope == "snsapi_base" {
            return Err(wx(48001, "api unauthorized"));
        }
        let (nickname, headimgurl) = if rec.grant.snapshot {
            (SNAPSHOT_NICKNAME.to_owned(), SNAPSHOT_HEADIMGURL.to_owned())
        } else {
            let user = self
                .user(&rec.grant.user_id)
                .ok_or_else(|| wx(40003, "invalid openid"))?;
            (user.nickname.clone(), user.headimgurl.clone())
        };
        // Since 2021-10: sex is 0 and the places are empty.
        let mut body = json!({
            "openid": Self::grant_openid(&rec.grant),
            "nickname": nickname,
            "sex": 0,
            "province": "",
            "city": "",
            "country": "",
            "headimgurl": headimgurl,
            "privilege": [],
        });
        if let Some(unionid) = self.grant_unionid(&rec.grant) {
            body["unionid"] = json!(unionid);
        }
        Ok(body)
    }

    /// `GET /sns/auth`.
    pub(crate) fn auth(&self, q: &Params, now: i64) -> Result<Value, WxError> {
        self.user_access(q, now)?;
        Ok(json!({"errcode": 0, "errmsg": "ok"}))
    }

    // ---- app tokens --------------------------------------------------------

    /// An app that has app tokens: an Official Account or a Mini Program.
    fn official_account(&self, appid: Option<&str>) -> Result<&SimApp, WxError> {
        let appid = appid.ok_or_else(|| wx(41002, "appid missing"))?;
        let app = self.app(appid).ok_or_else(|| wx(40013, "invalid appid"))?;
        if !matches!(app.kind, AppKind::OfficialAccount | AppKind::MiniProgram) {
            return Err(wx(
                40013,
                "invalid appid hint: [not an Official Account or Mini Program appid]",
            ));
        }
        Ok(app)
    }

    fn check_ip(&self, appid: &str, peer: Option<IpAddr>) -> Result<(), WxError> {
        let Some(allowed) = self.ip_allowlists.get(appid) else {
            return Ok(());
        };
        let ip = peer.map(|ip| ip.to_canonical());
        if ip.is_some_and(|ip| allowed.iter().any(|a| a.to_canonical() == ip)) {
            return Ok(());
        }
        let shown = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        Err(wx(
            40164,
            &format!("invalid ip {shown} ipv6 ::ffff:{shown}, not in whitelist"),
        ))
    }

    fn mint_app_token(&mut self, appid: &str, slot: Slot, now: i64) -> Result<String, WxError> {
        let day = day_of(now);
        let quota = self.limits.app_token_daily_quota;
        if !within_limit(&mut self.minted_per_day, appid, day, quota) {
            return Err(wx(45009, "reach max api daily quota limit"));
        }
        let token = ids::token(136);
        let key = (appid.to_owned(), slot);
        if let Some(previous) = self.current_app_token.insert(key, token.clone()) {
            if let Some(rec) = self.app_tokens.get_mut(&previous) {
                rec.superseded.get_or_insert(now);
            }
        }
        self.app_tokens.insert(
            token.clone(),
            AppTokenRec {
                appid: appid.to_owned(),
                issued: now,
                superseded: None,
            },
        );
        self.counters.app_token_fetches += 1;
        Ok(token)
    }

    /// `GET /cgi-bin/token`: a new token on every call.
    pub(crate) fn cgi_token(
        &mut self,
        q: &Params,
        peer: Option<IpAddr>,
        now: i64,
    ) -> Result<Value, WxError> {
        if q.get("grant_type") != Some("client_credential") {
            return Err(wx(40002, "invalid grant_type"));
        }
        let app = self.official_account(q.get("appid"))?;
        let secret = q
            .get("secret")
            .ok_or_else(|| wx(41004, "appsecret missing"))?;
        if secret != app.secret {
            // cgi-bin/token answers a wrong secret with 40001, not 40125.
            return Err(wx(
                40001,
                "invalid credential, access_token is invalid or not latest",
            ));
        }
        let appid = app.appid.clone();
        self.check_ip(&appid, peer)?;
        let token = self.mint_app_token(&appid, Slot::Plain, now)?;
        Ok(json!({"access_token": token, "expires_in": 7200}))
    }

    /// `POST /cgi-bin/stable_token`: the same token while valid, unless `force_refresh`.
    pub(crate) fn stable_token(
        &mut self,
        body: &[u8],
        peer: Option<IpAddr>,
        now: i64,
    ) -> Result<Value, WxError> {
        let req = json_body(body)?;
        if req.get("grant_type").and_then(Value::as_str) != Some("client_credential") {
            return Err(wx(40002, "invalid grant_type"));
        }
        let appid = req
            .get("appid")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let app = self.official_account(appid)?;
        let secret = req
            .get("secret")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| wx(41004, "appsecret missing"))?;
        if secret != app.secret {
            return Err(wx(40125, "invalid appsecret"));
        }
        let force = match req.get("force_refresh") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(wx(47001, "data format error")),
        };
        let appid = app.appid.clone();
        self.check_ip(&appid, peer)?;
        if !force {
            let current = self.current_app_token.get(&(appid.clone(), Slot::Stable));
            if let Some((token, rec)) =
                current.and_then(|t| self.app_tokens.get(t).map(|rec| (t, rec)))
            {
                let left = rec.issued.saturating_add(APP_TOKEN_TTL) - now;
                if left > 0 {
                    return Ok(json!({"access_token": token, "expires_in": left / SEC}));
                }
            }
        } else {
            let day = day_of(now);
            let forced = self.limits.force_refresh_daily_quota;
            let minted = self.limits.app_token_daily_quota;
            if !peek_limit(&self.minted_per_day, &appid, day, minted)
                || !within_limit(&mut self.forced_per_day, &appid, day, forced)
            {
                return Err(wx(45009, "reach max api daily quota limit"));
            }
        }
        let token = self.mint_app_token(&appid, Slot::Stable, now)?;
        Ok(json!({"access_token": token, "expires_in": 7200}))
    }

    /// The app an app token belongs to, if it still works.
    pub(crate) fn app_token_owner(&self, token: Option<&str>, now: i64) -> Result<String, WxError> {
        let token = token.ok_or_else(|| wx(41001, "access_token missing"))?;
        let invalid = || {
            wx(
                40001,
                "invalid credential, access_token is invalid or not latest",
            )
        };
        let rec = self.app_tokens.get(token).ok_or_else(invalid)?;
        if rec
            .superseded
            .is_some_and(|at| now >= at.saturating_add(SUPERSEDED_GRACE))
        {
            return Err(invalid());
        }
        if now >= rec.issued.saturating_add(APP_TOKEN_TTL) {
            return Err(wx(42001, "access_token expired"));
        }
        Ok(rec.appid.clone())
    }

    // ---- customer-service messages ----------------------------------------

    /// The user opened the 48 h window by messaging the Official Account.
    pub(crate) fn mark_interaction(&mut self, appid: &str, user_id: &str, now: i64) -> bool {
        if self.app(appid).is_none() || self.user(user_id).is_none() {
            return false;
        }
        self.windows.insert(
            (appid.to_owned(), user_id.to_owned()),
            Window {
                opened: now,
                sent: 0,
            },
        );
        true
    }

    /// `POST /cgi-bin/message/custom/send`.
    pub(crate) fn custom_send(
        &mut self,
        q: &Params,
        body: &[u8],
        now: i64,
    ) -> Result<Value, WxError> {
        let appid = self.app_token_owner(q.get("access_token"), now)?;
        let msg = json_body(body)?;
        let touser = msg
            .get("touser")
            .and_then(Value::as_str)
            .ok_or_else(|| wx(40003, "invalid openid"))?;
        if msg.get("msgtype").and_then(Value::as_str) != Some("text") {
            return Err(wx(40008, "invalid message type"));
        }
        let content = msg
            .get("text")
            .and_then(|t| t.get("content"))
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| wx(44004, "empty content"))?;
        let user_id = self
            .users
            .iter()
            .find(|u| ids::openid(&appid, &u.id) == touser)
            .map(|u| u.id.clone())
            .ok_or_else(|| wx(40003, "invalid openid"))?;
        let limit = self.limits.messages_per_window;
        let window = self
            .windows
            .get_mut(&(appid.clone(), user_id))
            .filter(|w| now < w.opened.saturating_add(MESSAGE_WINDOW))
            .ok_or_else(|| {
                wx(
                    45015,
                    "response out of time limit or subscription is canceled",
                )
            })?;
        if window.sent >= limit {
            return Err(wx(45047, "out of response count limit"));
        }
        window.sent += 1;
        self.messages.push(SentMessage {
            appid,
            touser: touser.to_owned(),
            content: content.to_owned(),
        });
        self.counters.messages_sent += 1;
        Ok(json!({"errcode": 0, "errmsg": "ok"}))
    }
}

fn json_body(body: &[u8]) -> Result<Value, WxError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(wx(44002, "empty post data"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(wx(47001, "data format error")),
    }
}
