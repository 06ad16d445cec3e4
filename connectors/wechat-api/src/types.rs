//! Owns the success answers ([`SnsToken`], [`UserInfo`], [`AppToken`]) and how each is
//! read from WeChat's JSON: required fields are checked by name (a missing one is a
//! BadResponse naming it), optional ones tolerate absence, `null` and `""`. Tokens are
//! redacted from `Debug`.

use crate::body::as_i64;
use serde_json::{Map, Value};
use std::fmt;

/// A user token from `sns/oauth2/access_token` or `sns/oauth2/refresh_token`.
#[derive(Clone, PartialEq, Eq)]
pub struct SnsToken {
    pub access_token: String,
    /// Seconds (7200 on WeChat).
    pub expires_in: i64,
    pub refresh_token: String,
    /// Per app: the same person has another openid in another app.
    pub openid: String,
    /// The scope(s) granted, comma-separated as WeChat sends them.
    pub scope: String,
    /// Present when the app is bound to an Open Platform account.
    pub unionid: Option<String>,
    /// A snapshot-mode (朋友圈快照) user: the openid and unionid are virtual. Never
    /// create or link an account from it.
    pub is_snapshotuser: bool,
}

impl fmt::Debug for SnsToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnsToken")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &"[redacted]")
            .field("openid", &self.openid)
            .field("scope", &self.scope)
            .field("unionid", &self.unionid)
            .field("is_snapshotuser", &self.is_snapshotuser)
            .finish()
    }
}

/// A Mini Program session from `sns/jscode2session`: who signed in with
/// `wx.login`, and the session key WeChat uses to encrypt and sign that
/// person's data for the Mini Program. The key must stay on servers: never
/// send it to the Mini Program or an app.
#[derive(Clone, PartialEq, Eq)]
pub struct MiniProgramSession {
    /// Per Mini Program.
    pub openid: String,
    pub session_key: String,
    /// Present when the Mini Program is bound to an Open Platform account.
    pub unionid: Option<String>,
}

impl fmt::Debug for MiniProgramSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MiniProgramSession")
            .field("openid", &self.openid)
            .field("session_key", &"[redacted]")
            .field("unionid", &self.unionid)
            .finish()
    }
}

impl MiniProgramSession {
    pub(crate) fn from_json(o: &Map<String, Value>) -> Result<Self, FieldProblem> {
        Ok(Self {
            openid: required_str(o, "openid")?,
            session_key: required_str(o, "session_key")?,
            unionid: optional_str(o, "unionid"),
        })
    }
}

/// The number behind a Mini Program's `getPhoneNumber` code
/// (`wxa/business/getuserphonenumber`'s `phone_info`): WeChat verified it with
/// the person's mobile carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneInfo {
    /// Without `+` (`86`).
    pub country_code: String,
    /// Without the country code (`13800138000`).
    pub pure_number: String,
    /// The Mini Program the watermark names.
    pub watermark_appid: String,
}

impl PhoneInfo {
    /// `+8613800138000`, when both parts are digits and the whole is a plausible
    /// E.164 number (at most 15 digits).
    pub fn e164(&self) -> Option<String> {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        (digits(&self.country_code)
            && digits(&self.pure_number)
            && self.country_code.len() + self.pure_number.len() <= 15)
            .then(|| format!("+{}{}", self.country_code, self.pure_number))
    }

    pub(crate) fn from_json(o: &Map<String, Value>) -> Result<Self, FieldProblem> {
        let info = match o.get("phone_info") {
            Some(Value::Object(info)) => info,
            _ => {
                return Err(FieldProblem {
                    field: "phone_info",
                    problem: "is missing or not an object",
                })
            }
        };
        let watermark_appid = match info.get("watermark") {
            Some(Value::Object(w)) => required_str(w, "appid")?,
            _ => {
                return Err(FieldProblem {
                    field: "watermark",
                    problem: "is missing or not an object",
                })
            }
        };
        Ok(Self {
            country_code: required_str(info, "countryCode")?,
            pure_number: required_str(info, "purePhoneNumber")?,
            watermark_appid,
        })
    }
}

/// The profile from `sns/userinfo`. Since 2021-10 `sex` is 0 and the places are empty;
/// `headimgurl` may be empty; nicknames are not unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub openid: String,
    pub nickname: String,
    pub sex: i64,
    pub province: String,
    pub city: String,
    pub country: String,
    pub headimgurl: String,
    pub privilege: Vec<String>,
    pub unionid: Option<String>,
}

/// An app-level token from `cgi-bin/token` or `cgi-bin/stable_token`.
#[derive(Clone, PartialEq, Eq)]
pub struct AppToken {
    pub access_token: String,
    /// Seconds (7200 on WeChat).
    pub expires_in: i64,
}

impl fmt::Debug for AppToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppToken")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Why a success answer could not be read. Names a field, never a value.
#[derive(Debug)]
pub(crate) struct FieldProblem {
    pub field: &'static str,
    pub problem: &'static str,
}

impl FieldProblem {
    /// "lacks `openid` (fields present: access_token, expires_in)"
    pub(crate) fn describe(&self, object: &Map<String, Value>) -> String {
        let mut present: Vec<&str> = object
            .keys()
            .map(String::as_str)
            .filter(|k| k.len() <= 32)
            .take(12)
            .collect();
        present.sort_unstable();
        let present = if present.is_empty() {
            "none".to_owned()
        } else {
            present.join(", ")
        };
        format!(
            "a JSON answer whose `{}` {} (fields present: {present})",
            self.field, self.problem
        )
    }
}

fn required_str(o: &Map<String, Value>, field: &'static str) -> Result<String, FieldProblem> {
    match o.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(FieldProblem {
            field,
            problem: "is empty",
        }),
        None | Some(Value::Null) => Err(FieldProblem {
            field,
            problem: "is missing",
        }),
        Some(_) => Err(FieldProblem {
            field,
            problem: "is not a string",
        }),
    }
}

fn required_i64(o: &Map<String, Value>, field: &'static str) -> Result<i64, FieldProblem> {
    match o.get(field) {
        None | Some(Value::Null) => Err(FieldProblem {
            field,
            problem: "is missing",
        }),
        Some(v) => as_i64(v).ok_or(FieldProblem {
            field,
            problem: "is not an integer",
        }),
    }
}

/// A string that may be missing, `null`, empty or (leniently) a number.
fn optional_str(o: &Map<String, Value>, field: &str) -> Option<String> {
    match o.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn string_or_empty(o: &Map<String, Value>, field: &str) -> String {
    optional_str(o, field).unwrap_or_default()
}

/// `1`, `true`, `"1"`, `"true"` → true; anything else (including absent) → false.
fn flag(o: &Map<String, Value>, field: &str) -> bool {
    match o.get(field) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.trim(), "1" | "true"),
        Some(v) => as_i64(v).is_some_and(|n| n != 0),
        None => false,
    }
}

impl SnsToken {
    pub(crate) fn from_json(o: &Map<String, Value>) -> Result<Self, FieldProblem> {
        Ok(Self {
            access_token: required_str(o, "access_token")?,
            expires_in: required_i64(o, "expires_in")?,
            refresh_token: required_str(o, "refresh_token")?,
            openid: required_str(o, "openid")?,
            scope: required_str(o, "scope")?,
            unionid: optional_str(o, "unionid"),
            is_snapshotuser: flag(o, "is_snapshotuser"),
        })
    }
}

impl UserInfo {
    pub(crate) fn from_json(o: &Map<String, Value>) -> Result<Self, FieldProblem> {
        let privilege = match o.get("privilege") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        Ok(Self {
            openid: required_str(o, "openid")?,
            nickname: string_or_empty(o, "nickname"),
            sex: o.get("sex").and_then(as_i64).unwrap_or(0),
            province: string_or_empty(o, "province"),
            city: string_or_empty(o, "city"),
            country: string_or_empty(o, "country"),
            headimgurl: string_or_empty(o, "headimgurl"),
            privilege,
            unionid: optional_str(o, "unionid"),
        })
    }
}

impl AppToken {
    pub(crate) fn from_json(o: &Map<String, Value>) -> Result<Self, FieldProblem> {
        Ok(Self {
            access_token: required_str(o, "access_token")?,
            expires_in: required_i64(o, "expires_in")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(o) => o,
            _ => Map::new(),
        }
    }

    #[test]
    fn sns_token_optional_fields() {
        let t = SnsToken::from_json(&obj(json!({
            "access_token": "AT", "expires_in": 7200, "refresh_token": "RT",
            "openid": "o1", "scope": "snsapi_login"
        })))
        .ok();
        let t = t.as_ref();
        assert_eq!(t.map(|t| t.unionid.clone()), Some(None));
        assert_eq!(t.map(|t| t.is_snapshotuser), Some(false));

        let t = SnsToken::from_json(&obj(json!({
            "access_token": "AT", "expires_in": "7200", "refresh_token": "RT",
            "openid": "o1", "scope": "snsapi_userinfo", "unionid": "", "is_snapshotuser": 1
        })))
        .ok();
        assert_eq!(t.as_ref().map(|t| t.unionid.clone()), Some(None));
        assert_eq!(t.as_ref().map(|t| t.is_snapshotuser), Some(true));
        assert_eq!(t.map(|t| t.expires_in), Some(7200));
    }

    #[test]
    fn sns_token_debug_redacts() {
        let t = SnsToken {
            access_token: "ACCESS-SECRET-1".into(),
            expires_in: 7200,
            refresh_token: "REFRESH-SECRET-2".into(),
            openid: "o1".into(),
            scope: "snsapi_login".into(),
            unionid: None,
            is_snapshotuser: false,
        };
        let d = format!("{t:?}");
        assert!(
            !d.contains("ACCESS-SECRET-1") && !d.contains("REFRESH-SECRET-2"),
            "{d}"
        );
        assert!(d.contains("o1"));
        let a = AppToken {
            access_token: "APP-SECRET-3".into(),
            expires_in: 7200,
        };
        assert!(!format!("{a:?}").contains("APP-SECRET-3"));
    }

    #[test]
    fn missing_field_is_named_without_values() {
        let o = obj(json!({"access_token": "AT-VALUE", "expires_in": 7200}));
        let p = SnsToken::from_json(&o).err();
        let text = p.map(|p| p.describe(&o)).unwrap_or_default();
        assert!(text.contains("`refresh_token` is missing"), "{text}");
        assert!(text.contains("access_token, expires_in"), "{text}");
        assert!(!text.contains("AT-VALUE"), "{text}");
    }

    #[test]
    fn userinfo_tolerates_the_post_2021_profile() {
        let u = UserInfo::from_json(&obj(json!({
            "openid": "o1", "nickname": "🐼 微信用户", "sex": 0, "province": "", "city": null,
            "headimgurl": "", "privilege": []
        })))
        .ok();
        assert_eq!(
            u,
            Some(UserInfo {
                openid: "o1".into(),
                nickname: "🐼 微信用户".into(),
                ..UserInfo::default()
            })
        );
    }
}
