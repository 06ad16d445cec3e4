//! Signing keys at run time: loaded from the store, decrypted with the master key,
//! rotated on schedule (publish before use, keep until the last token expires).
//! Every instance runs the same plan; the store's unique (alg, generation) makes
//! exactly one of them create each new key.

use idbridge_store::{KeyRow, Store};
use idbridge_tokens::{
    generate_key, plan_rotation, published, signing_kid, signing_kid_at_start, Algorithm,
    KeyAction, KeyMeta, KeySet, MasterKey, RotationPolicy, SigningKey,
};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("storage: {0}")]
    Store(#[from] idbridge_store::StoreError),
    #[error("keys: {0}")]
    Token(#[from] idbridge_tokens::TokenError),
    #[error("key {kid} cannot be decrypted: wrong signing.master_key? ({source})")]
    Decrypt {
        kid: String,
        source: idbridge_tokens::TokenError,
    },
    #[error("no usable signing key for {0}")]
    NoKey(&'static str),
}

pub struct Keys {
    current: RwLock<Arc<KeySet>>,
    decrypted: RwLock<HashMap<String, SigningKey>>,
    pub algorithms: Vec<Algorithm>,
    pub policy: RotationPolicy,
}

/// The schedule fields of a stored key (`None` for an algorithm this build does
/// not know).
pub fn meta(row: &KeyRow) -> Option<KeyMeta> {
    Some(KeyMeta {
        kid: row.kid.clone(),
        alg: row.alg.parse().ok()?,
        generation: row.generation,
        created_at: row.created_at,
        activates_at: row.activates_at,
        retires_at: row.retires_at,
        expires_at: row.expires_at,
    })
}

/// The rotation policy the settings describe. Keys stay published until the
/// longest-lived token they signed has expired, clock skew included.
pub fn policy(settings: &crate::Settings) -> RotationPolicy {
    RotationPolicy {
        rotate_every: settings.signing.rotate_every_days * 86400,
        publish_ahead: settings.signing.publish_ahead_hours * 3600,
        max_token_lifetime: settings
            .tokens
            .id_token_ttl_secs
            .max(settings.tokens.access_token_ttl_secs)
            + settings.tokens.leeway_secs,
    }
}

impl Keys {
    /// Empty until the first `sync`.
    pub fn new(algorithms: Vec<Algorithm>, policy: RotationPolicy) -> Result<Self, KeyError> {
        Ok(Self {
            current: RwLock::new(Arc::new(KeySet::new(Vec::new(), Vec::new())?)),
            decrypted: RwLock::new(HashMap::new()),
            algorithms,
            policy,
        })
    }

    /// The keys to sign and verify with right now.
    pub fn set(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Apply the rotation plan, then load what is published. Safe to run on every
    /// instance at once.
    pub async fn sync(&self, store: &Store, master: &MasterKey, now: i64) -> Result<(), KeyError> {
        let mut rows = store.list_keys().await?;
        let metas: Vec<KeyMeta> = rows.iter().filter_map(meta).collect();
        let actions = plan_rotation(&metas, &self.algorithms, &self.policy, now);
        if !actions.is_empty() {
            for action in actions {
                self.apply(store, master, action, now).await?;
            }
            rows = store.list_keys().await?;
        }
        self.load(&rows, master, now)
    }

    pub async fn apply(
        &self,
        store: &Store,
        master: &MasterKey,
        action: KeyAction,
        now: i64,
    ) -> Result<(), KeyError> {
        match action {
            KeyAction::Create {
                alg,
                generation,
                activates_at,
            } => {
                let material = tokio::task::spawn_blocking(move || generate_key(alg))
                    .await
                    .map_err(|_| KeyError::NoKey("key generation task failed"))??;
                let sealed = master.seal(&material.private_der, material.kid.as_bytes())?;
                let inserted = store
                    .insert_key(KeyRow {
                        kid: material.kid.clone(),
                        alg: alg.as_str().to_owned(),
                        generation,
                        private_key: sealed,
                        public_jwk: material.public_jwk.to_string(),
                        created_at: now,
                        activates_at,
                        retires_at: None,
                        expires_at: None,
                    })
                    .await?;
                if inserted {
                    tracing::info!(kid = %material.kid, alg = alg.as_str(), generation, activates_at, "created signing key");
                }
            }
            KeyAction::Schedule {
                kid,
                retires_at,
                expires_at,
            } => {
                store
                    .set_key_schedule(&kid, Some(retires_at), Some(expires_at))
                    .await?;
                tracing::info!(%kid, retires_at, expires_at, "signing key superseded; stays published until its tokens expire");
            }
            KeyAction::Delete { kid } => {
                store.delete_key(&kid).await?;
                tracing::info!(%kid, "signing key expired and removed");
            }
        }
        Ok(())
    }

    /// The signing key gauges: age of the key in use and when the next one takes over
    /// (a published successor's activation, else this key's plus `rotate_every`).
    fn report(&self, metas: &[KeyMeta], now: i64) {
        for alg in &self.algorithms {
            let Some(kid) = signing_kid(metas, *alg, now) else {
                continue;
            };
            let Some(current) = metas.iter().find(|m| m.kid == kid) else {
                continue;
            };
            let next = metas
                .iter()
                .filter(|m| m.alg == *alg && m.activates_at > now)
                .map(|m| m.activates_at)
                .min()
                .unwrap_or(current.activates_at + self.policy.rotate_every);
            let alg = alg.as_str();
            metrics::gauge!(crate::telemetry::SIGNING_KEY_AGE, "alg" => alg)
                .set((now - current.activates_at).max(0) as f64);
            metrics::gauge!(crate::telemetry::SIGNING_KEY_NEXT_ROTATION, "alg" => alg)
                .set(next as f64);
        }
    }

    fn load(&self, rows: &[KeyRow], master: &MasterKey, now: i64) -> Result<(), KeyError> {
        let metas: Vec<KeyMeta> = rows.iter().filter_map(meta).collect();
        let publish = published(&metas, now);
        let mut keys = Vec::new();
        {
            let mut cache = match self.decrypted.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            for row in rows.iter().filter(|r| publish.contains(&r.kid)) {
                if let Some(k) = cache.get(&row.kid) {
                    keys.push(k.clone());
                    continue;
                }
                let alg: Algorithm = row.alg.parse()?;
                let der = master
                    .open(&row.private_key, row.kid.as_bytes())
                    .map_err(|source| KeyError::Decrypt {
                        kid: row.kid.clone(),
                        source,
                    })?;
                let jwk: serde_json::Value = serde_json::from_str(&row.public_jwk)
                    .map_err(|_| KeyError::NoKey("stored public JWK is not JSON"))?;
                let key = SigningKey::from_material(&row.kid, alg, &der, &jwk)?;
                cache.insert(row.kid.clone(), key.clone());
                keys.push(key);
            }
            cache.retain(|kid, _| publish.contains(kid));
        }
        let signing = self
            .algorithms
            .iter()
            .map(|alg| signing_kid_at_start(&metas, *alg, now).ok_or(KeyError::NoKey(alg.as_str())))
            .collect::<Result<Vec<String>, KeyError>>()?;
        self.report(&metas, now);
        let set = KeySet::new(keys, signing)?;
        match self.current.write() {
            Ok(mut g) => *g = Arc::new(set),
            Err(p) => *p.into_inner() = Arc::new(set),
        }
        Ok(())
    }
}
