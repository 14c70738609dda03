//! The scale-out image store: any S3-compatible service, through `object_store`. Images are
//! kept as `<user>/<job>/<n>.png` and handed out as presigned GET links that expire. A PUT
//! is whole or absent: a half-written object is never listed.

use std::time::Duration;

use axum::http::Method;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{Attribute, Attributes, ObjectStore, PutOptions, PutPayload, RetryConfig};

use crate::config::{ClusterConfig, ConfigError};

/// The bucket the images go to.
#[derive(Debug)]
pub struct Objects {
    s3: AmazonS3,
    /// Signs links for the endpoint clients reach, where that differs from `s3`'s.
    public: Option<AmazonS3>,
}

/// A storage request that failed.
#[derive(Debug, thiserror::Error)]
#[error("the image store {what}: {source}")]
pub struct ObjectsError {
    what: &'static str,
    #[source]
    source: object_store::Error,
}

/// The key of image `index` of `owner`'s job `job`.
fn key(owner: &str, job: &str, index: usize) -> Path {
    Path::from(format!("{owner}/{job}/{index}.png"))
}

/// A client of `config`'s bucket at `endpoint` (AWS when `None`).
fn client(config: &ClusterConfig, endpoint: Option<&str>) -> Result<AmazonS3, ConfigError> {
    let bucket = config.s3_bucket.as_deref().unwrap_or_default();
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_region(&config.s3_region)
        // A store that is down fails an attempt in seconds, not minutes: the job's own
        // retries (a later attempt) take over from there.
        .with_retry(RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
            ..RetryConfig::default()
        });
    if let Some(endpoint) = endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    builder.build().map_err(|e| {
        ConfigError(format!(
            "the S3 settings cannot be used ({endpoint:?}): {e}"
        ))
    })
}

impl Objects {
    /// The bucket `config` names, with the credentials of the `AWS_*` environment.
    pub fn new(config: &ClusterConfig) -> Result<Self, ConfigError> {
        let s3 = client(config, config.s3_endpoint.as_deref())?;
        let public = match &config.s3_public_endpoint {
            Some(endpoint) => Some(client(config, Some(endpoint))?),
            None => None,
        };
        Ok(Objects { s3, public })
    }

    /// Stores image `index` of `owner`'s job `job`.
    pub async fn put(
        &self,
        owner: &str,
        job: &str,
        index: usize,
        png: Vec<u8>,
    ) -> Result<(), ObjectsError> {
        // Served as a PNG (presigned GETs answer with the stored type), private to its link.
        let attributes = Attributes::from_iter([
            (Attribute::ContentType, "image/png"),
            (Attribute::CacheControl, "private, max-age=3600"),
        ]);
        let options = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        self.s3
            .put_opts(&key(owner, job, index), PutPayload::from(png), options)
            .await
            .map_err(|source| ObjectsError {
                what: "cannot store an image",
                source,
            })?;
        Ok(())
    }

    /// The bytes of image `index` of `owner`'s job `job`.
    pub async fn get(&self, owner: &str, job: &str, index: usize) -> Result<Vec<u8>, ObjectsError> {
        let failed = |source| ObjectsError {
            what: "cannot read an image",
            source,
        };
        let object = self.s3.get(&key(owner, job, index)).await.map_err(failed)?;
        Ok(object.bytes().await.map_err(failed)?.to_vec())
    }

    /// A link that GETs image `index` of `owner`'s job `job` for `ttl`.
    pub async fn link(
        &self,
        owner: &str,
        job: &str,
        index: usize,
        ttl: Duration,
    ) -> Result<String, ObjectsError> {
        let url = self
            .public
            .as_ref()
            .unwrap_or(&self.s3)
            .signed_url(Method::GET, &key(owner, job, index), ttl)
            .await
            .map_err(|source| ObjectsError {
                what: "cannot sign a link",
                source,
            })?;
        Ok(url.to_string())
    }

    /// Removes the `images` images of `owner`'s job `job` (missing ones are fine).
    pub async fn remove(&self, owner: &str, job: &str, images: usize) -> Result<(), ObjectsError> {
        for index in 0..images {
            match self.s3.delete(&key(owner, job, index)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(ObjectsError {
                        what: "cannot remove an image",
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}
