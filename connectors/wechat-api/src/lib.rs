//! The WeChat HTTP client shared by idbridge's WeChat connectors (website QR, Official
//! Account, mobile app): the sns and cgi-bin calls, the authorize URLs, and a typed
//! error taxonomy that converts into the broker's [`idbridge_core::ConnectorError`].
//!
//! - [`WeChatClient`]: one call per WeChat API, connect and total timeouts, redirects
//!   never followed, bodies parsed by content (WeChat labels JSON `text/plain`) under a
//!   size cap.
//! - [`WeChatError`]: stage, kind, WeChat's errcode and errmsg (with its `rid:`), and a
//!   fix for the operator. Secrets, codes and tokens never appear in it.
//! - [`qrconnect_url`], [`oauth2_authorize_url`]: WeChat's parameter order, single encoding.
//! - [`AppTokens`]: one app token per appid shared by every broker instance (a
//!   lease in the broker's shared cache), for customer-service messages.
//! - [`is_valid_appid`], [`is_valid_secret`], [`is_valid_state`]: checks for `doctor`.
//!
//! The facts behind all of this are in the design note WECHAT.md.

mod app_token;
mod body;
mod client;
mod error;
mod exchange_settings;
pub mod login;
mod types;
mod urls;

pub use app_token::AppTokens;
pub use body::{classify_answer, MAX_BODY_BYTES};
pub use client::{BuildError, ClientOptions, WeChatClient, USER_AGENT};
pub use error::{Api, WeChatError, ERRCODE_BUSY, ERRCODE_CODE_USED};
pub use exchange_settings::ExchangeSettings;
pub use types::{AppToken, MiniProgramSession, PhoneInfo, SnsToken, UserInfo};
pub use urls::{
    encode_component, is_valid_appid, is_valid_secret, is_valid_state, oauth2_authorize_url,
    qrconnect_url, DEFAULT_API_BASE_URL, DEFAULT_OPEN_BASE_URL,
};
