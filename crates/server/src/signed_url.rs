//! Signed, expiring image URLs, like presigned object-store URLs: `?expires=<unix s>&signature=
//! <hex HMAC-SHA256 of the path and expiry>`, under a key kept in the data folder.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks image URLs.
pub struct UrlSigner {
    key: [u8; 32],
}

/// Why a signed URL is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature does not match the path and expiry.
    #[error("the link's signature is not valid")]
    Invalid,
    /// The link has expired.
    #[error("the link has expired; ask /result for a fresh one")]
    Expired,
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl UrlSigner {
    /// A signer with `key`.
    pub fn new(key: [u8; 32]) -> Self {
        UrlSigner { key }
    }

    /// The key in `file`, made (random, readable only by the owner) when missing.
    pub fn load_or_create(file: &Path) -> std::io::Result<Self> {
        if let Ok(bytes) = std::fs::read(file) {
            if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
                return Ok(UrlSigner::new(key));
            }
            tracing::warn!(file = %file.display(), "the URL signing key is malformed; making a new one");
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(std::io::Error::other)?;
        selfdiffusion_files::write_atomic(file, &key, selfdiffusion_files::Access::Private)?;
        Ok(UrlSigner::new(key))
    }

    fn mac(&self, path: &str, expires: u64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The query (`expires=…&signature=…`) that grants access to `path` for `ttl_s` seconds.
    pub fn sign(&self, path: &str, ttl_s: u64) -> String {
        let expires = now_s() + ttl_s;
        let signature = hex::encode(self.mac(path, expires).finalize().into_bytes());
        format!("expires={expires}&signature={signature}")
    }

    /// Checks a signature for `path` (constant-time comparison).
    pub fn check(&self, path: &str, expires: u64, signature: &str) -> Result<(), SignatureError> {
        let bytes = hex::decode(signature).map_err(|_| SignatureError::Invalid)?;
        self.mac(path, expires)
            .verify_slice(&bytes)
            .map_err(|_| SignatureError::Invalid)?;
        if expires < now_s() {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(query: &str) -> (u64, String) {
        let mut expires = 0;
        let mut signature = String::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("expires", v)) => expires = v.parse().unwrap(),
                Some(("signature", v)) => signature = v.into(),
                _ => {}
            }
        }
        (expires, signature)
    }

    #[test]
    fn signatures_bind_path_and_expiry_and_expire() {
        let signer = UrlSigner::new([7; 32]);
        let (expires, signature) = parts(&signer.sign("/images/a/0.png", 60));
        assert_eq!(signer.check("/images/a/0.png", expires, &signature), Ok(()));
        assert_eq!(
            signer.check("/images/a/1.png", expires, &signature),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            signer.check("/images/a/0.png", expires + 1, &signature),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            UrlSigner::new([8; 32]).check("/images/a/0.png", expires, &signature),
            Err(SignatureError::Invalid)
        );
        let past = now_s() - 10;
        let old = hex::encode(signer.mac("/images/a/0.png", past).finalize().into_bytes());
        assert_eq!(
            signer.check("/images/a/0.png", past, &old),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            signer.check("/images/a/0.png", expires, "zz"),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn the_key_is_kept_privately_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("signing.key");
        let a = UrlSigner::load_or_create(&file).unwrap();
        let b = UrlSigner::load_or_create(&file).unwrap();
        assert_eq!(a.key, b.key);
        assert_ne!(a.key, [0; 32]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
