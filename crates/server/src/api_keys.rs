//! API keys, for scripts and services calling `/v1` without a Cognito login: made, listed and
//! revoked by their owner (who signs in with a token), shown once, kept as a SHA-256 hash in
//! the job store. A request with `X-API-Key` acts as the key's owner.

use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};
use selfdiffusion_protocol::ApiKeyInfo;
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::store::{failed, seconds, JobStore, StoreError};

/// What every key starts with, so a leaked one is easy to recognise (and to scan for).
pub(crate) const PREFIX: &str = "sdk_";

/// The hash a key is kept as.
pub(crate) fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new key named `name`: as listed, and the key itself.
pub(crate) fn new_key(name: &str) -> (ApiKeyInfo, String) {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("the system's random source works");
    let key = format!("{PREFIX}{}", hex::encode(secret));
    let info = ApiKeyInfo {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        created_at: seconds(SystemTime::now()) as u64,
        revoked: false,
    };
    (info, key)
}

impl JobStore {
    /// Makes a key named `name` for `caller`; returns it as listed and the key itself (the only
    /// time it is shown).
    pub fn create_key(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<(ApiKeyInfo, String), StoreError> {
        let (info, key) = new_key(name);
        self.lock()
            .execute(
                "INSERT INTO api_keys (id, owner, username, name, hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    info.id,
                    caller.sub,
                    caller.username,
                    info.name,
                    hash(&key),
                    info.created_at as i64
                ],
            )
            .map_err(failed("cannot record an API key"))?;
        Ok((info, key))
    }

    /// `owner`'s keys, oldest first.
    pub fn keys(&self, owner: &str) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let conn = self.lock();
        let mut query = conn
            .prepare(
                "SELECT id, name, created_at, revoked_at IS NOT NULL FROM api_keys
                 WHERE owner = ?1 ORDER BY created_at, rowid",
            )
            .map_err(failed("cannot be read"))?;
        let keys = query
            .query_map([owner], |r| {
                Ok(ApiKeyInfo {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    created_at: r.get::<_, i64>(2)?.max(0) as u64,
                    revoked: r.get(3)?,
                })
            })
            .map_err(failed("cannot be read"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed("cannot be read"));
        keys
    }

    /// Revokes `owner`'s key `id`; false when they have no such key.
    pub fn revoke_key(&self, owner: &str, id: &str) -> Result<bool, StoreError> {
        let changed = self
            .lock()
            .execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?3) WHERE id = ?1 AND owner = ?2",
                params![id, owner, seconds(SystemTime::now())],
            )
            .map_err(failed("cannot revoke an API key"))?;
        Ok(changed == 1)
    }

    /// The owner of `key`, if it is a key that was made and not revoked.
    pub fn key_owner(&self, key: &str) -> Result<Option<Caller>, StoreError> {
        if !key.starts_with(PREFIX) {
            return Ok(None);
        }
        self.lock()
            .query_row(
                "SELECT owner, username FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL",
                [hash(key)],
                |r| {
                    Ok(Caller {
                        sub: r.get(0)?,
                        username: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(failed("cannot be read"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_shown_once_kept_hashed_and_revocable_by_their_owner() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(&dir.path().join("jobs.sqlite3")).unwrap();
        let ana = Caller {
            sub: "sub-ana".into(),
            username: "ana".into(),
        };
        let (info, key) = store.create_key(&ana, "script").unwrap();
        assert!(key.starts_with(PREFIX) && key.len() == PREFIX.len() + 64);
        assert_eq!(store.key_owner(&key).unwrap(), Some(ana.clone()));
        let stored: String = store
            .lock()
            .query_row("SELECT hash FROM api_keys", [], |r| r.get(0))
            .unwrap();
        assert_ne!(stored, key, "only the hash is kept");
        assert_eq!(store.keys("sub-ana").unwrap(), std::slice::from_ref(&info));
        assert!(store.keys("sub-bo").unwrap().is_empty());
        assert!(
            !store.revoke_key("sub-bo", &info.id).unwrap(),
            "not bo's key"
        );
        assert!(store.revoke_key("sub-ana", &info.id).unwrap());
        assert_eq!(store.key_owner(&key).unwrap(), None);
        assert!(store.keys("sub-ana").unwrap()[0].revoked);
        assert_eq!(store.key_owner("sdk_0000").unwrap(), None);
        assert_eq!(store.key_owner("not a key").unwrap(), None);
    }
}
