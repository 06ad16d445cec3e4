//! Hosted pages: server-rendered HTML in English and Simplified Chinese, with a
//! strict Content-Security-Policy per page. No JavaScript except what a connector's
//! embedded login needs (and then only from the origins it names).

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use idbridge_core::Locale;

pub const STYLESHEET: &str = r#"
:root { color-scheme: light; --fg:#1b1f24; --muted:#57606a; --accent:#07c160; --bg:#f6f8fa; --card:#fff; --warn:#9a6700; }
* { box-sizing: border-box; }
body { margin:0; font: 16px/1.5 system-ui, -apple-system, "PingFang SC", "Microsoft YaHei", sans-serif; color:var(--fg); background:var(--bg); }
main { max-width: 28rem; margin: 3rem auto; background: var(--card); padding: 2rem; border-radius: 12px; box-shadow: 0 1px 3px rgba(0,0,0,.12); }
h1 { font-size: 1.4rem; margin-top: 0; }
p.detail, .muted { color: var(--muted); }
.warning { color: var(--warn); border-left: 4px solid var(--warn); padding-left: .75rem; }
ul.choices { list-style: none; padding: 0; }
ul.choices li { margin: .5rem 0; }
a.button, button { display:block; width:100%; text-align:center; padding:.75rem 1rem; border-radius:8px; border:1px solid #d0d7de; background:#fff; color:var(--fg); font-size:1rem; text-decoration:none; cursor:pointer; }
a.button:focus, button:focus, input:focus, select:focus { outline: 3px solid #0969da; outline-offset: 2px; }
a.button.primary, button.primary, form button[type=submit] { background: var(--accent); color:#fff; border-color: var(--accent); }
label { display:block; margin-top:1rem; font-weight:600; }
input, select { width:100%; padding:.6rem; font-size:1rem; border:1px solid #8c959f; border-radius:6px; margin:.25rem 0 1rem; }
code, pre { font: 13px/1.4 ui-monospace, monospace; }
pre { white-space: pre-wrap; word-break: break-all; background: var(--bg); padding: .75rem; border-radius: 6px; }
main.wide { max-width: 60rem; }
iframe { border: 0; display: block; margin: 0 auto; }
"#;

pub use idbridge_core::escape_html as escape;

/// A page with its own CSP. `script_sources`/`frame_sources` widen it for an
/// embedded upstream login; everything else stays `'none'`.
pub struct Page<'a> {
    pub locale: Locale,
    pub title: &'a str,
    pub body_html: &'a str,
    pub status: StatusCode,
    pub script_sources: &'a [String],
    pub frame_sources: &'a [String],
    pub wide: bool,
}

impl<'a> Page<'a> {
    pub fn new(locale: Locale, title: &'a str, body_html: &'a str) -> Self {
        Self {
            locale,
            title,
            body_html,
            status: StatusCode::OK,
            script_sources: &[],
            frame_sources: &[],
            wide: false,
        }
    }

    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn render(&self) -> HttpResponse {
        let scripts = if self.script_sources.is_empty() {
            "'none'".to_owned()
        } else {
            self.script_sources.join(" ")
        };
        let frames = if self.frame_sources.is_empty() {
            "'none'".to_owned()
        } else {
            self.frame_sources.join(" ")
        };
        let csp = format!(
            "default-src 'none'; style-src 'self'; img-src 'self' https: data:; script-src {scripts}; frame-src {frames}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        );
        let html = format!(
            "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta name=\"referrer\" content=\"no-referrer\">\
             <title>{title} · idbridge</title><link rel=\"stylesheet\" href=\"/assets/idbridge.css\"></head>\
             <body><main{class}><h1>{title}</h1>{body}</main></body></html>",
            lang = self.locale.tag(),
            title = escape(self.title),
            class = if self.wide { " class=\"wide\"" } else { "" },
            body = self.body_html,
        );
        HttpResponse::build(self.status)
            .insert_header((header::CONTENT_SECURITY_POLICY, csp))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type("text/html; charset=utf-8")
            .body(html)
    }
}

/// An error page: what happened, and what to do about it.
pub fn error_page(locale: Locale, status: StatusCode, what: &str, todo: &str) -> HttpResponse {
    let title = match locale {
        Locale::ZhCn => "无法登录",
        Locale::En => "Sign-in failed",
    };
    let body = format!(
        "<p role=\"alert\">{}</p><p class=\"detail\">{}</p>",
        escape(what),
        escape(todo)
    );
    Page::new(locale, title, &body).status(status).render()
}

/// Two-language strings for the hosted pages.
pub fn text(locale: Locale, key: &str) -> &'static str {
    let zh = locale == Locale::ZhCn;
    match key {
        "choose_title" => {
            if zh {
                "选择登录方式"
            } else {
                "Choose how to sign in"
            }
        }
        "choose_for" => {
            if zh {
                "登录到"
            } else {
                "to continue to"
            }
        }
        "no_connectors" => {
            if zh {
                "此应用没有可用的登录方式。"
            } else {
                "No sign-in method is available for this application here."
            }
        }
        "signed_out_title" => {
            if zh {
                "已退出登录"
            } else {
                "Signed out"
            }
        }
        "signed_out" => {
            if zh {
                "你已退出登录。"
            } else {
                "You have been signed out."
            }
        }
        "logout_title" => {
            if zh {
                "退出登录？"
            } else {
                "Sign out?"
            }
        }
        "logout_confirm" => {
            if zh {
                "退出登录"
            } else {
                "Sign out"
            }
        }
        "unknown_client" => {
            if zh {
                "请求来自一个未注册的应用。"
            } else {
                "The sign-in request came from an application this broker does not know."
            }
        }
        "unknown_client_todo" => {
            if zh {
                "请联系该应用的开发者：client_id 未在 idbridge 中注册。"
            } else {
                "Contact the application's developer: its client_id is not registered with idbridge."
            }
        }
        "bad_redirect" => {
            if zh {
                "请求中的回调地址（redirect_uri）与应用注册的地址不一致。"
            } else {
                "The request's redirect_uri does not exactly match one registered for this application."
            }
        }
        "bad_redirect_todo" => {
            if zh {
                "为安全起见不会跳转。请应用开发者检查 redirect_uri 配置（必须完全一致）。"
            } else {
                "For your safety you were not sent back. The application's developer must register the exact redirect_uri."
            }
        }
        "expired" => {
            if zh {
                "这个登录请求已过期或已被使用。"
            } else {
                "This sign-in request has expired or was already used."
            }
        }
        "expired_todo" => {
            if zh {
                "请回到应用重新开始登录。"
            } else {
                "Go back to the application and start signing in again."
            }
        }
        "return_to_app" => {
            if zh {
                "返回应用"
            } else {
                "Return to the application"
            }
        }
        "try_again" => {
            if zh {
                "重试"
            } else {
                "Try again"
            }
        }
        _ => "",
    }
}

pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(STYLESHEET)
}
