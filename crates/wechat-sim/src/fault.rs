//! Faults: ways to make an endpoint misbehave like WeChat sometimes does, for a
//! number of calls or until cleared. Also their JSON form for `POST /__sim/faults`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One fault to inject.
///
/// JSON form (`POST /__sim/faults`): `{"endpoint": E, "kind": K, "times": N}`
/// with E one of `access_token`, `refresh_token`, `user_info` (or `userinfo`),
/// `auth`, `app_token`, `stable_token`, `custom_send`, `authorize`, `any`; K one
/// of `busy`, `busy_after_apply`, `errcode` (+ `errcode`, `errmsg`), `http5xx`
/// (+ `status`, default 502), `garbage`, `html_gbk`, `slow` (+ `ms`), `drop`,
/// `double_callback`, `patch` (+ `fields`, a JSON object); `times` optional
/// (absent = until cleared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FaultWire", into = "FaultWire")]
pub struct Fault {
    /// Which endpoint misbehaves.
    pub endpoint: Endpoint,
    /// How it misbehaves.
    pub kind: FaultKind,
    /// For how many matching calls; `None` = until [`crate::Simulator::clear_faults`].
    pub times: Option<u32>,
}

/// The endpoints a fault can target. JSON names are the snake_case variant names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `GET /sns/oauth2/access_token` (code exchange).
    AccessToken,
    /// `GET /sns/oauth2/refresh_token`.
    RefreshToken,
    /// `GET /sns/userinfo`.
    #[serde(alias = "userinfo")]
    UserInfo,
    /// `GET /sns/auth`.
    Auth,
    /// `GET /sns/jscode2session` (a Mini Program's `wx.login` code).
    JsCode2Session,
    /// `POST /wxa/business/getuserphonenumber` (a Mini Program's
    /// `getPhoneNumber` code).
    PhoneNumber,
    /// `GET /cgi-bin/token`.
    AppToken,
    /// `POST /cgi-bin/stable_token`.
    StableToken,
    /// `POST /cgi-bin/message/custom/send`.
    CustomSend,
    /// The authorize pages (`/connect/qrconnect`, `/connect/oauth2/authorize`):
    /// an error kind shows WeChat's error page instead of the login page.
    Authorize,
    /// Every API endpoint above (not the authorize pages).
    Any,
}

impl Endpoint {
    /// Whether a fault aimed at `self` hits a call to `called`.
    pub(crate) fn covers(self, called: Endpoint) -> bool {
        self == called || (self == Endpoint::Any && called != Endpoint::Authorize)
    }
}

/// How an endpoint misbehaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// `{"errcode":-1,"errmsg":"system error rid: ..."}`; the call has no effect
    /// (a code is not spent).
    Busy,
    /// The call takes effect (a code is spent, a token minted), then the answer
    /// is `-1` anyway: "a code exchange may be retried once, then 40163 means it
    /// was spent".
    BusyAfterApply,
    /// Any WeChat error, e.g. `Errcode(45011, "api minute-quota reach limit".into())`;
    /// on the authorize pages, an error page with that code (e.g. 10009).
    Errcode(i64, String),
    /// An HTTP 5xx status with a gateway-style HTML body.
    Http5xx(u16),
    /// A non-JSON `text/plain` body.
    Garbage,
    /// An almost empty `text/html; charset=GBK` body, as once seen from WeChat.
    HtmlGbk,
    /// Wait this long, then answer normally.
    Slow(Duration),
    /// Close the connection without any response.
    Drop,
    /// The confirm step of an authorize page calls the redirect_uri twice, with
    /// two different codes and the same state (the endpoint is ignored: it
    /// only ever applies to that step).
    DoubleCallback,
    /// The call works as usual, but its success answer has these fields set to
    /// these values: an answer WeChat should never send (an openid with a NUL,
    /// a `javascript:` headimgurl), to test what the broker accepts. Error
    /// answers are left alone.
    Patch(Map<String, Value>),
}

/// The JSON form: `{"endpoint":"access_token","kind":"errcode","errcode":40001,
/// "errmsg":"...","times":1}`, `{"endpoint":"any","kind":"slow","ms":300}`,
/// `{"endpoint":"userinfo","kind":"http5xx","status":502}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FaultWire {
    endpoint: Endpoint,
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    times: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    errcode: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    errmsg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fields: Option<Map<String, Value>>,
}

impl TryFrom<FaultWire> for Fault {
    type Error = String;

    fn try_from(w: FaultWire) -> Result<Self, Self::Error> {
        let kind = match w.kind.as_str() {
            "busy" => FaultKind::Busy,
            "busy_after_apply" => FaultKind::BusyAfterApply,
            "errcode" => FaultKind::Errcode(
                w.errcode.ok_or("kind errcode needs \"errcode\"")?,
                w.errmsg.unwrap_or_else(|| "simulated error".to_owned()),
            ),
            "http5xx" => {
                let status = w.status.unwrap_or(502);
                if !(500..=599).contains(&status) {
                    return Err(format!("status {status} is not 5xx"));
                }
                FaultKind::Http5xx(status)
            }
            "garbage" => FaultKind::Garbage,
            "html_gbk" => FaultKind::HtmlGbk,
            "slow" => FaultKind::Slow(Duration::from_millis(w.ms.ok_or("kind slow needs \"ms\"")?)),
            "drop" => FaultKind::Drop,
            "double_callback" => FaultKind::DoubleCallback,
            "patch" => FaultKind::Patch(w.fields.ok_or("kind patch needs \"fields\"")?),
            other => {
                return Err(format!(
                    "unknown kind {other:?}; one of busy, busy_after_apply, errcode, http5xx, \
                     garbage, html_gbk, slow, drop, double_callback, patch"
                ))
            }
        };
        Ok(Fault {
            endpoint: w.endpoint,
            kind,
            times: w.times,
        })
    }
}

impl From<Fault> for FaultWire {
    fn from(f: Fault) -> Self {
        let mut w = FaultWire {
            endpoint: f.endpoint,
            kind: String::new(),
            times: f.times,
            errcode: None,
            errmsg: None,
            status: None,
            ms: None,
            fields: None,
        };
        w.kind = match f.kind {
            FaultKind::Busy => "busy",
            FaultKind::BusyAfterApply => "busy_after_apply",
            FaultKind::Errcode(code, msg) => {
                w.errcode = Some(code);
                w.errmsg = Some(msg);
                "errcode"
            }
            FaultKind::Http5xx(status) => {
                w.status = Some(status);
                "http5xx"
            }
            FaultKind::Garbage => "garbage",
            FaultKind::HtmlGbk => "html_gbk",
            FaultKind::Slow(d) => {
                w.ms = Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                "slow"
            }
            FaultKind::Drop => "drop",
            FaultKind::DoubleCallback => "double_callback",
            FaultKind::Patch(fields) => {
                w.fields = Some(fields);
                "patch"
            }
        }
        .to_owned();
        w
    }
}

/// The active faults, in the order they were set.
#[derive(Debug, Default)]
pub(crate) struct FaultList {
    faults: Vec<Fault>,
}

impl FaultList {
    pub(crate) fn push(&mut self, fault: Fault) {
        if fault.times != Some(0) {
            self.faults.push(fault);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.faults.clear();
    }

    pub(crate) fn list(&self) -> Vec<Fault> {
        self.faults.clone()
    }

    /// The first fault that hits a call to `called` (DoubleCallback faults
    /// excluded), counting the call against its `times`.
    pub(crate) fn take(&mut self, called: Endpoint) -> Option<FaultKind> {
        self.take_where(|f| f.kind != FaultKind::DoubleCallback && f.endpoint.covers(called))
    }

    /// The first DoubleCallback fault, counting one confirm against its `times`.
    pub(crate) fn take_double_callback(&mut self) -> bool {
        self.take_where(|f| f.kind == FaultKind::DoubleCallback)
            .is_some()
    }

    fn take_where(&mut self, pred: impl Fn(&Fault) -> bool) -> Option<FaultKind> {
        let idx = self.faults.iter().position(pred)?;
        let fault = self.faults.get_mut(idx)?;
        let kind = fault.kind.clone();
        if let Some(n) = fault.times.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.faults.remove(idx);
            }
        }
        Some(kind)
    }
}
