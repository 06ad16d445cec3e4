//! `GET /sns/jscode2session`: a Mini Program's `wx.login` code for the
//! person's openid, a session key and (when the Mini Program is bound to an
//! Open Platform account) the unionid, as WeChat documents it: the code works
//! once and for 5 minutes, 40029 for a code that is unknown, another app's or
//! expired, 40163 for a used one, 40125 for a wrong secret, 45011 past 100
//! calls per person per minute. 40226 (a high-risk user) and -1 (busy) are
//! what a test scripts with a fault.

use serde_json::{json, Value};

use super::{ids, within_limit, wx, Params, State, WxError, SEC};
use crate::config::AppKind;

/// WeChat: 100 calls a minute for one person.
const CALLS_PER_PERSON_PER_MINUTE: u32 = 100;

impl State {
    pub(crate) fn jscode2session(&mut self, q: &Params, now: i64) -> Result<Value, WxError> {
        let appid = q.get("appid").ok_or_else(|| wx(41002, "appid missing"))?;
        let app = self
            .app(appid)
            .filter(|a| a.kind == AppKind::MiniProgram)
            .ok_or_else(|| wx(40013, "invalid appid"))?;
        let secret = q
            .get("secret")
            .ok_or_else(|| wx(41004, "appsecret missing"))?;
        if secret != app.secret {
            return Err(wx(40125, "invalid appsecret"));
        }
        let bound = app.open_platform_id.clone();
        let code = q.get("js_code").ok_or_else(|| wx(41008, "missing code"))?;
        if q.get("grant_type") != Some("authorization_code") {
            return Err(wx(40002, "invalid grant_type"));
        }
        let ttl = self.limits.code_ttl_secs.saturating_mul(SEC);
        let rec = self
            .codes
            .get_mut(code)
            .filter(|rec| rec.grant.appid == appid && now < rec.issued.saturating_add(ttl))
            .ok_or_else(|| wx(40029, "invalid code"))?;
        if rec.used {
            return Err(wx(40163, "code been used"));
        }
        let person = format!("{appid}/{}", rec.grant.user_id);
        let minute = now.div_euclid(60 * SEC);
        if !within_limit(
            &mut self.exchanges_per_minute,
            &person,
            minute,
            CALLS_PER_PERSON_PER_MINUTE,
        ) {
            return Err(wx(
                45011,
                "api minute-quota reach limit  mustslower  retry next minute",
            ));
        }
        rec.used = true;
        let user_id = rec.grant.user_id.clone();
        let mut body = json!({
            "session_key": ids::token(24),
            "openid": ids::openid(appid, &user_id),
        });
        if let Some(platform) = bound {
            body["unionid"] = json!(ids::unionid(&platform, &user_id));
        }
        Ok(body)
    }
}
