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

/// WeChat: a `getPhoneNumber` code works once and for 5 minutes.
const PHONE_CODE_TTL_SECS: i64 = 300;

/// A code the Mini Program's `getPhoneNumber` button handed out.
#[derive(Debug, Clone)]
pub(crate) struct PhoneCode {
    appid: String,
    country_code: String,
    pure_number: String,
    issued: i64,
    used: bool,
}

impl State {
    /// The person tapped the Mini Program's `getPhoneNumber` button and allowed
    /// it: a code for their number (`country_code` without `+`, the number
    /// without it).
    pub(crate) fn issue_phone_code(
        &mut self,
        appid: &str,
        country_code: &str,
        pure_number: &str,
        now: i64,
    ) -> Option<String> {
        self.app(appid).filter(|a| a.kind == AppKind::MiniProgram)?;
        let code = ids::token(32);
        self.phone_codes.insert(
            code.clone(),
            PhoneCode {
                appid: appid.to_owned(),
                country_code: country_code.to_owned(),
                pure_number: pure_number.to_owned(),
                issued: now,
                used: false,
            },
        );
        self.counters.codes_issued += 1;
        Some(code)
    }

    /// `POST /wxa/business/getuserphonenumber?access_token=APP_TOKEN` with
    /// `{"code": …}`: the number behind a `getPhoneNumber` code, with the
    /// watermark naming the Mini Program. 40029 for a code that is unknown,
    /// used, expired or another Mini Program's (WeChat does not tell them
    /// apart here); the app token as for every cgi-bin call.
    pub(crate) fn user_phone_number(
        &mut self,
        q: &Params,
        body: &[u8],
        now: i64,
    ) -> Result<Value, WxError> {
        let appid = self.app_token_owner(q.get("access_token"), now)?;
        let request = super::json_body(body)?;
        let code = request
            .get("code")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| wx(41008, "missing code"))?;
        let ttl = PHONE_CODE_TTL_SECS.saturating_mul(SEC);
        let rec = self
            .phone_codes
            .get_mut(code)
            .filter(|rec| rec.appid == appid && !rec.used && now < rec.issued.saturating_add(ttl))
            .ok_or_else(|| wx(40029, "invalid code"))?;
        rec.used = true;
        let national = if rec.country_code == "86" {
            rec.pure_number.clone()
        } else {
            format!("+{} {}", rec.country_code, rec.pure_number)
        };
        Ok(json!({
            "errcode": 0,
            "errmsg": "ok",
            "phone_info": {
                "phoneNumber": national,
                "purePhoneNumber": rec.pure_number,
                "countryCode": rec.country_code,
                "watermark": { "timestamp": now.div_euclid(SEC), "appid": appid },
            },
        }))
    }
}
