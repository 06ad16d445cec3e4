//! The senders of one-time codes: the configured SMS sender (a signed webhook
//! to the operator's gateway; in development, the log and the dev outbox), built
//! once from `[verification]`.

use crate::config::{Sender, VerificationSettings};
use idbridge_core::Locale;
use idbridge_store::SendLimits;
use idbridge_tokens::hmac_sha256_hex;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// A message the development sender "sent", kept for `/dev/outbox`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OutboxEntry {
    pub at: i64,
    pub channel: &'static str,
    pub to: String,
    pub code: String,
    pub text: String,
}

/// The last messages of the development sender (dev mode only).
#[derive(Default)]
pub struct Outbox(Mutex<VecDeque<OutboxEntry>>);

impl Outbox {
    const KEEP: usize = 50;

    pub(super) fn push(&self, entry: OutboxEntry) {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == Self::KEEP {
            q.pop_front();
        }
        q.push_back(entry);
    }

    /// Newest first.
    pub fn list(&self) -> Vec<OutboxEntry> {
        let q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        q.iter().rev().cloned().collect()
    }
}

/// The code machinery, built once from `[verification]`.
pub struct Verifier {
    pub settings: VerificationSettings,
    /// `verification.sender`, typed by the config's validation pass.
    pub sender: Sender,
    pub outbox: Outbox,
    http: reqwest::Client,
}

impl Verifier {
    pub fn new(settings: VerificationSettings, sender: Sender) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            settings,
            sender,
            outbox: Outbox::default(),
            http,
        })
    }

    /// Whether codes can be sent to phone numbers at all.
    pub fn phone_codes(&self) -> bool {
        self.sender.sends_to_phones()
    }

    pub(super) fn limits(&self) -> SendLimits {
        SendLimits {
            min_interval_secs: self.settings.resend_after_secs,
            per_hour: self.settings.per_hour,
        }
    }

    /// The text a person receives.
    pub(super) fn message(&self, locale: Locale, code: &str) -> String {
        let site = &self.settings.site_name;
        let minutes = (self.settings.code_ttl_secs / 60).max(1);
        // The site's name last: it is the operator's text and may hold braces.
        crate::i18n::t(locale, "sms_code")
            .replace("{code}", code)
            .replace("{minutes}", &minutes.to_string())
            .replace("{site}", site)
    }

    /// POST the code to the operator's webhook (their SMS gateway), signed.
    pub(super) async fn webhook(&self, body: &serde_json::Value, now: i64) -> Result<(), String> {
        let url = self.settings.webhook_url.as_deref().unwrap_or_default();
        let payload = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let timestamp = now.to_string();
        let mut signed = timestamp.clone().into_bytes();
        signed.push(b'.');
        signed.extend_from_slice(&payload);
        let secret = self.settings.webhook_secret.as_deref().unwrap_or_default();
        let signature = format!("sha256={}", hmac_sha256_hex(secret.as_bytes(), &signed));
        let resp = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("x-idbridge-timestamp", timestamp)
            .header("x-idbridge-signature", signature)
            .body(payload)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", resp.status().as_u16()))
        }
    }
}
