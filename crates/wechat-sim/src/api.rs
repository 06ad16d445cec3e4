//! The api.weixin.qq.com endpoints (`/sns/...`, `/cgi-bin/...`) on the wire:
//! parameter parsing, content types, WeChat-shaped errors, and faults.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::conn;
use crate::fault::{Endpoint, FaultKind};
use crate::ids;
use crate::shared::Shared;
use crate::state::{wx, Params, State, WxError};

/// How an endpoint labels its JSON.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wire {
    /// `/sns/*`: JSON labelled `text/plain`, as WeChat does.
    Sns,
    /// `/cgi-bin/*`: `application/json; encoding=utf-8`, as WeChat does.
    CgiBin,
}

impl Wire {
    fn content_type(self) -> &'static str {
        match self {
            Wire::Sns => "text/plain",
            Wire::CgiBin => "application/json; encoding=utf-8",
        }
    }
}

/// WeChat's answer: HTTP 200 either way; errors carry `errcode` and an errmsg ending in a rid.
pub(crate) fn reply(wire: Wire, result: Result<Value, WxError>) -> HttpResponse {
    let body = match result {
        Ok(v) => v,
        Err(e) => json!({"errcode": e.code, "errmsg": format!("{} rid: {}", e.msg, ids::rid())}),
    };
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, wire.content_type()))
        .body(body.to_string())
}

fn busy() -> WxError {
    wx(-1, "system error")
}

/// The gateway-ish answers that are the same on every endpoint and on the pages.
/// `None` for the kinds that the caller handles itself.
pub(crate) fn raw_fault(req: &HttpRequest, kind: &FaultKind) -> Option<HttpResponse> {
    match kind {
        FaultKind::Http5xx(status) => {
            let status = StatusCode::from_u16(*status)
                .ok()
                .filter(StatusCode::is_server_error)
                .unwrap_or(StatusCode::BAD_GATEWAY);
            let text = format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("Server Error")
            );
            Some(
                HttpResponse::build(status)
                    .insert_header((header::CONTENT_TYPE, "text/html"))
                    .body(format!(
                        "<html>\r\n<head><title>{text}</title></head>\r\n<body>\r\n<center><h1>{text}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
                    )),
            )
        }
        FaultKind::Garbage => Some(
            HttpResponse::Ok()
                .insert_header((header::CONTENT_TYPE, "text/plain"))
                .body("upstream connect error or disconnect/reset before headers. reset reason: overflow"),
        ),
        FaultKind::HtmlGbk => {
            // "<html><body>系统错误</body></html>" with the text in GBK.
            let mut body = b"<html><body>".to_vec();
            body.extend_from_slice(&[0xCF, 0xB5, 0xCD, 0xB3, 0xB4, 0xED, 0xCE, 0xF3]);
            body.extend_from_slice(b"</body></html>\r\n");
            Some(
                HttpResponse::Ok()
                    .insert_header((
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/html; charset=GBK"),
                    ))
                    .body(body),
            )
        }
        FaultKind::Drop => {
            if conn::drop_connection(req) {
                tracing::debug!("wechat-sim: dropped the connection");
            }
            // Only reaches the client if the socket could not be shut down.
            Some(HttpResponse::BadGateway().finish())
        }
        FaultKind::Busy
        | FaultKind::BusyAfterApply
        | FaultKind::Errcode(..)
        | FaultKind::Slow(_)
        | FaultKind::DoubleCallback
        | FaultKind::Patch(_) => None,
    }
}

/// Runs one API call: counts it, applies a fault aimed at it, else answers with `f`.
async fn api_call(
    req: &HttpRequest,
    sim: &Shared,
    endpoint: Endpoint,
    wire: Wire,
    f: impl FnOnce(&mut State, i64) -> Result<Value, WxError>,
) -> HttpResponse {
    let fault = sim.with(|st, _| {
        st.count_call(endpoint);
        st.faults.take(endpoint)
    });
    if let Some(kind) = fault {
        tracing::debug!(?endpoint, ?kind, "wechat-sim: injecting fault");
        match kind {
            FaultKind::Slow(delay) => actix_web::rt::time::sleep(delay).await,
            FaultKind::Busy => return reply(wire, Err(busy())),
            FaultKind::BusyAfterApply => {
                let _ = sim.with(f);
                return reply(wire, Err(busy()));
            }
            FaultKind::Errcode(code, msg) => return reply(wire, Err(WxError { code, msg })),
            FaultKind::Patch(fields) => {
                let answer = sim.with(f).map(|mut body| {
                    if let Value::Object(o) = &mut body {
                        o.extend(fields);
                    }
                    body
                });
                return reply(wire, answer);
            }
            other => {
                if let Some(resp) = raw_fault(req, &other) {
                    return resp;
                }
            }
        }
    }
    reply(wire, sim.with(f))
}

fn query(req: &HttpRequest) -> Params {
    Params::parse(req.query_string().as_bytes())
}

fn peer_ip(req: &HttpRequest) -> Option<std::net::IpAddr> {
    req.peer_addr().map(|a| a.ip())
}

pub(crate) async fn access_token(req: HttpRequest, sim: web::Data<Shared>) -> HttpResponse {
    let q = query(&req);
    api_call(&req, &sim, Endpoint::AccessToken, Wire::Sns, |st, now| {
        st.exchange_code(&q, now)
    })
    .await
}

pub(crate) async fn refresh_token(req: HttpRequest, sim: web::Data<Shared>) -> HttpResponse {
    let q = query(&req);
    api_call(&req, &sim, Endpoint::RefreshToken, Wire::Sns, |st, now| {
        st.refresh(&q, now)
    })
    .await
}

pub(crate) async fn userinfo(req: HttpRequest, sim: web::Data<Shared>) -> HttpResponse {
    let q = query(&req);
    api_call(&req, &sim, Endpoint::UserInfo, Wire::Sns, |st, now| {
        st.userinfo(&q, now)
    })
    .await
}

pub(crate) async fn auth(req: HttpRequest, sim: web::Data<Shared>) -> HttpResponse {
    let q = query(&req);
    api_call(&req, &sim, Endpoint::Auth, Wire::Sns, |st, now| {
        st.auth(&q, now)
    })
    .await
}

pub(crate) async fn jscode2session(req: HttpRequest, sim: web::Data<Shared>) -> HttpResponse {
    let q = query(&req);
    api_call(
        &req,
        &sim,
        Endpoint::JsCode2Session,
        Wire::Sns,
        |st, now| st.jscode2session(&q, now),
    )
    .await
}

pub(crate) async fn cgi_token(req: HttpRequest, sim: web::Data<Shared>) -> HttpResponse {
    let q = query(&req);
    let peer = peer_ip(&req);
    api_call(&req, &sim, Endpoint::AppToken, Wire::CgiBin, |st, now| {
        st.cgi_token(&q, peer, now)
    })
    .await
}

pub(crate) async fn stable_token(
    req: HttpRequest,
    sim: web::Data<Shared>,
    body: web::Bytes,
) -> HttpResponse {
    let peer = peer_ip(&req);
    api_call(
        &req,
        &sim,
        Endpoint::StableToken,
        Wire::CgiBin,
        |st, now| st.stable_token(&body, peer, now),
    )
    .await
}

pub(crate) async fn custom_send(
    req: HttpRequest,
    sim: web::Data<Shared>,
    body: web::Bytes,
) -> HttpResponse {
    let q = query(&req);
    api_call(&req, &sim, Endpoint::CustomSend, Wire::CgiBin, |st, now| {
        st.custom_send(&q, &body, now)
    })
    .await
}

pub(crate) async fn user_phone_number(
    req: HttpRequest,
    sim: web::Data<Shared>,
    body: web::Bytes,
) -> HttpResponse {
    let q = query(&req);
    api_call(
        &req,
        &sim,
        Endpoint::PhoneNumber,
        Wire::CgiBin,
        |st, now| st.user_phone_number(&q, &body, now),
    )
    .await
}

/// Anything else: a WeChat-shaped error that names the path.
pub(crate) async fn not_found(req: HttpRequest) -> HttpResponse {
    let mut resp = reply(
        Wire::Sns,
        Err(wx(
            40066,
            &format!(
                "invalid url hint: [wechat-sim has no {} {}]",
                req.method(),
                req.path()
            ),
        )),
    );
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp
}
