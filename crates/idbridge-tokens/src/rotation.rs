//! The key-rotation schedule as pure functions of the stored key metadata,
//! the configured algorithms, the policy and the time. The server runs
//! [`plan_rotation`] periodically (and at start), applies the actions to the
//! store, then rebuilds its `KeySet` from [`published`] and [`signing_kid`].
//!
//! Life of a key: created with `activates_at` in the future (published, not
//! signing) → signs from `activates_at` → superseded when a newer key of the
//! same alg activates, at which point it gets `retires_at` = that activation
//! and `expires_at` = `retires_at + max_token_lifetime` (still published, so
//! tokens it signed keep verifying) → deleted once `expires_at` is past.
//!
//! Two assumptions the server must honour: `publish_ahead` must exceed how
//! long relying parties cache the JWKS, and `max_token_lifetime` must cover
//! the longest-lived token plus how late an instance may notice a key change
//! (its `KeySet` refresh interval and clock skew between instances).
//! "Newer" means a higher `generation`; `(alg, generation)` makes a natural
//! unique constraint, so two instances planning at once cannot both create
//! the same key.

use crate::Algorithm;

/// Stored metadata of one signing key (times in seconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMeta {
    pub kid: String,
    pub alg: Algorithm,
    /// 1 for the first key of an algorithm, +1 for each successor.
    pub generation: i64,
    pub created_at: i64,
    /// From when the key signs (it is published from creation).
    pub activates_at: i64,
    /// When it stopped signing; set once a newer key has taken over.
    pub retires_at: Option<i64>,
    /// When it leaves the JWKS and may be deleted.
    pub expires_at: Option<i64>,
}

/// How keys rotate; all durations in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// How long a key signs before a successor is created.
    pub rotate_every: i64,
    /// How long a new key is published before it signs.
    pub publish_ahead: i64,
    /// Lifetime of the longest-lived token signed by these keys (plus margin,
    /// see the module docs): how long a retired key stays published.
    pub max_token_lifetime: i64,
}

/// A change to the stored keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAction {
    /// Generate a key of `alg` and store it with this generation and activation.
    Create {
        alg: Algorithm,
        generation: i64,
        activates_at: i64,
    },
    /// Record that the key stopped (or stops) signing and when it may go.
    Schedule {
        kid: String,
        retires_at: i64,
        expires_at: i64,
    },
    /// Remove the key: every token it signed has expired.
    Delete { kid: String },
}

fn is_expired(key: &KeyMeta, now: i64) -> bool {
    key.expires_at.is_some_and(|at| at <= now)
}

fn is_retired(key: &KeyMeta, now: i64) -> bool {
    key.retires_at.is_some_and(|at| at <= now)
}

fn next_generation(keys: &[KeyMeta], alg: Algorithm) -> i64 {
    keys.iter()
        .filter(|k| k.alg == alg)
        .map(|k| k.generation)
        .max()
        .unwrap_or(0)
        .saturating_add(1)
}

fn signing_key(keys: &[KeyMeta], alg: Algorithm, now: i64) -> Option<&KeyMeta> {
    keys.iter()
        .filter(|k| {
            k.alg == alg && k.activates_at <= now && !is_expired(k, now) && !is_retired(k, now)
        })
        .max_by_key(|k| (k.generation, k.activates_at))
}

/// The key that signs for `alg` at `now`: the newest (highest generation) key
/// of that alg that has activated and is neither retired nor expired.
pub fn signing_kid(keys: &[KeyMeta], alg: Algorithm, now: i64) -> Option<String> {
    signing_key(keys, alg, now).map(|k| k.kid.clone())
}

/// How far ahead of an instance's clock a first key may activate and still sign
/// there at once. Instances that start together on an empty store each plan
/// the first key at their own `now`; one wins the insert, and its `activates_at`
/// can be a moment after the others' clocks.
pub const START_SKEW_SECS: i64 = 60;

/// [`signing_kid`]; or, when no key of `alg` can sign at `now` at all, the key
/// that activates first within [`START_SKEW_SECS`] (a first key another
/// instance has just created). Nothing of `alg` could sign before it, so no one
/// holds a cached key it would take over from too early.
pub fn signing_kid_at_start(keys: &[KeyMeta], alg: Algorithm, now: i64) -> Option<String> {
    signing_kid(keys, alg, now).or_else(|| {
        keys.iter()
            .filter(|k| {
                k.alg == alg
                    && k.activates_at > now
                    && k.activates_at <= now.saturating_add(START_SKEW_SECS)
                    && !is_expired(k, now)
                    && k.retires_at.is_none()
            })
            .min_by_key(|k| (k.activates_at, k.generation))
            .map(|k| k.kid.clone())
    })
}

/// The kids to publish at `now`: every key not yet expired, including keys
/// that do not sign yet and retired keys whose tokens may still be live.
pub fn published(keys: &[KeyMeta], now: i64) -> Vec<String> {
    keys.iter()
        .filter(|k| !is_expired(k, now))
        .map(|k| k.kid.clone())
        .collect()
}

/// What to change so that every algorithm in `algs` has a signing key, keys
/// rotate every `rotate_every`, successors are published `publish_ahead`
/// before they sign, and old keys stay published until their last token
/// expires. Actions come as: deletes, then schedules, then creates.
///
/// Beyond the basic rules: keys of an algorithm no longer in `algs` are
/// retired now (and so leave the JWKS after `max_token_lifetime`), and an
/// algorithm whose keys all cannot sign now (say, the current one was removed
/// by hand) gets a key activating at once rather than waiting for a pending one.
pub fn plan_rotation(
    keys: &[KeyMeta],
    algs: &[Algorithm],
    policy: &RotationPolicy,
    now: i64,
) -> Vec<KeyAction> {
    let mut actions = Vec::new();

    for key in keys.iter().filter(|k| is_expired(k, now)) {
        actions.push(KeyAction::Delete {
            kid: key.kid.clone(),
        });
    }

    for key in keys
        .iter()
        .filter(|k| !is_expired(k, now) && k.retires_at.is_none())
    {
        let retires_at = if algs.contains(&key.alg) {
            // The first newer key to activate ended this key's signing.
            keys.iter()
                .filter(|n| {
                    n.alg == key.alg
                        && n.generation > key.generation
                        && n.activates_at <= now
                        && !is_expired(n, now)
                })
                .map(|n| n.activates_at)
                .min()
        } else {
            Some(now)
        };
        if let Some(retires_at) = retires_at {
            actions.push(KeyAction::Schedule {
                kid: key.kid.clone(),
                retires_at,
                expires_at: retires_at.saturating_add(policy.max_token_lifetime),
            });
        }
    }

    let mut planned: Vec<Algorithm> = Vec::new();
    for &alg in algs {
        if planned.contains(&alg) {
            continue;
        }
        planned.push(alg);
        let activates_at = match signing_key(keys, alg, now) {
            // First start, or nothing can sign: nobody can have cached a key
            // that does not exist, so there is nothing to publish ahead for.
            None => Some(now),
            Some(current) => {
                let due = now.saturating_sub(current.activates_at) >= policy.rotate_every;
                let pending = keys.iter().any(|k| {
                    k.alg == alg
                        && k.generation > current.generation
                        && k.activates_at > now
                        && !is_expired(k, now)
                        && k.retires_at.is_none()
                });
                (due && !pending).then(|| now.saturating_add(policy.publish_ahead))
            }
        };
        if let Some(activates_at) = activates_at {
            actions.push(KeyAction::Create {
                alg,
                generation: next_generation(keys, alg),
                activates_at,
            });
        }
    }

    actions
}

/// `idbridge keys rotate`: a successor for `alg`, published now and signing
/// after `publish_ahead` (at once if nothing of that alg can sign now).
pub fn manual_rotation(
    keys: &[KeyMeta],
    alg: Algorithm,
    policy: &RotationPolicy,
    now: i64,
) -> KeyAction {
    let activates_at = if signing_key(keys, alg, now).is_some() {
        now.saturating_add(policy.publish_ahead)
    } else {
        now
    };
    KeyAction::Create {
        alg,
        generation: next_generation(keys, alg),
        activates_at,
    }
}
