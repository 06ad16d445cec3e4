//! Apple's client secret: an ES256 JWT signed with the `.p8` key, made at
//! request time with the time passed in, kept, and made again once half its
//! lifetime has passed (so a secret in use always has weeks left, and a clock
//! or key change heals by itself).

use idbridge_connector_kit::options::Secret;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::sync::Mutex;

/// Apple accepts secrets valid for at most six months (15777000 s).
pub const MAX_LIFETIME: i64 = 15_777_000;
/// The `aud` Apple requires.
pub const AUDIENCE: &str = "https://appleid.apple.com";

struct Made {
    jwt: Secret,
    iat: i64,
}

pub struct ClientSecretMaker {
    team_id: String,
    key_id: String,
    client_id: String,
    key: EncodingKey,
    lifetime: i64,
    cached: Mutex<Option<Made>>,
}

impl std::fmt::Debug for ClientSecretMaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecretMaker")
            .field("team_id", &self.team_id)
            .field("key_id", &self.key_id)
            .field("client_id", &self.client_id)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl ClientSecretMaker {
    /// `Err`: why `pem` is not a usable `.p8` key.
    pub fn new(
        team_id: &str,
        key_id: &str,
        client_id: &str,
        pem: &str,
        lifetime: i64,
    ) -> Result<Self, String> {
        let key = EncodingKey::from_ec_pem(pem.trim().as_bytes()).map_err(|_| {
            "is not a P-256 private key in PEM (the .p8 file Apple lets you download once: -----BEGIN PRIVATE KEY-----)".to_owned()
        })?;
        let maker = Self {
            team_id: team_id.into(),
            key_id: key_id.into(),
            client_id: client_id.into(),
            key,
            lifetime: lifetime.clamp(60, MAX_LIFETIME),
            cached: Mutex::new(None),
        };
        // Sign once now, so a key that cannot sign is a config error.
        maker.sign(0)?;
        Ok(maker)
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    fn sign(&self, now: i64) -> Result<Secret, String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let claims = serde_json::json!({
            "iss": self.team_id,
            "iat": now,
            "exp": now + self.lifetime,
            "aud": AUDIENCE,
            "sub": self.client_id,
        });
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(Secret::new)
            .map_err(|e| e.to_string())
    }

    /// The secret to send at `now`: the kept one while less than half its
    /// lifetime has passed (and it was not made "in the future"), else a new one.
    pub fn get(&self, now: i64) -> Result<Secret, String> {
        let mut cached = match self.cached.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(made) = cached.as_ref() {
            let age = now - made.iat;
            if (0..self.lifetime / 2).contains(&age) {
                return Ok(made.jwt.clone());
            }
        }
        let jwt = self.sign(now)?;
        tracing::info!(client_id = %self.client_id, key_id = %self.key_id, iat = now, exp = now + self.lifetime, "made a new Sign in with Apple client secret");
        *cached = Some(Made {
            jwt: jwt.clone(),
            iat: now,
        });
        Ok(jwt)
    }
}
