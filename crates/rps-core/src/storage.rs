//! The storage layer: one API over a local directory (the embedded default) and
//! `s3://bucket/prefix` (MinIO/S3), built on `object_store`.
//!
//! Writes are atomic for readers: the local backend writes a staging file and renames it
//! into place, S3 replaces an object with a single PUT. A reader therefore sees either the
//! previous complete file or the new complete file, never a half-written one.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{CoreError, Result};

/// A data location: a local directory or an S3 bucket with a key prefix.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: ObjPath,
    location: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .finish()
    }
}

/// S3 connection settings beyond what `AWS_*` environment variables give.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Endpoint URL (e.g. `http://127.0.0.1:9000` for MinIO); defaults to AWS_ENDPOINT_URL.
    pub endpoint: Option<String>,
}

impl Store {
    /// Opens a location: `s3://bucket[/prefix]` or a local directory (created if missing).
    pub fn open(location: &str) -> Result<Store> {
        Store::open_with(location, &S3Options::default())
    }

    /// Opens a location with explicit S3 options.
    pub fn open_with(location: &str, s3: &S3Options) -> Result<Store> {
        let bad = |reason: &str| CoreError::BadLocation {
            location: location.to_string(),
            reason: reason.to_string(),
        };
        if location.trim().is_empty() {
            return Err(bad("empty"));
        }
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket name after s3://"));
            }
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false);
            if std::env::var_os("AWS_REGION").is_none()
                && std::env::var_os("AWS_DEFAULT_REGION").is_none()
            {
                b = b.with_region("us-east-1");
            }
            let endpoint = s3
                .endpoint
                .clone()
                .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
            if let Some(ep) = endpoint {
                b = b.with_endpoint(ep);
            }
            let store = b.build().map_err(|e| bad(&e.to_string()))?;
            return Ok(Store {
                inner: Arc::new(store),
                prefix: ObjPath::from(prefix.trim_matches('/')),
                location: location.trim_end_matches('/').to_string(),
            });
        }
        if location.contains("://") {
            return Err(bad("only local paths and s3:// are supported"));
        }
        std::fs::create_dir_all(location).map_err(|source| CoreError::Io {
            location: location.to_string(),
            source,
        })?;
        let fs = LocalFileSystem::new_with_prefix(location).map_err(|e| bad(&e.to_string()))?;
        Ok(Store {
            inner: Arc::new(fs),
            prefix: ObjPath::from(""),
            location: location.to_string(),
        })
    }

    /// The location as given (for messages).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Whether this store is an S3 bucket.
    pub fn is_s3(&self) -> bool {
        self.location.starts_with("s3://")
    }

    fn path(&self, key: &str) -> ObjPath {
        let key = key.trim_start_matches('/');
        if self.prefix.as_ref().is_empty() {
            ObjPath::from(key)
        } else {
            ObjPath::from(format!("{}/{}", self.prefix, key))
        }
    }

    /// Reads a whole object; `Ok(None)` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        match self.inner.get(&self.path(key)).await {
            Ok(r) => r
                .bytes()
                .await
                .map(Some)
                .map_err(|source| self.read_err(key, source)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(self.read_err(key, source)),
        }
    }

    /// Whether an object exists.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        match self.inner.head(&self.path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(self.read_err(key, source)),
        }
    }

    /// Writes a whole object atomically (readers see the old or the new bytes, never a mix).
    /// Locally through [`crate::fs::write`], whose temp files a killed run's successor
    /// removes and `.dvcignore` hides; on S3 one PUT.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        if !self.is_s3() {
            let rel = key.trim_start_matches('/');
            if rel.is_empty()
                || rel
                    .split('/')
                    .any(|seg| seg.is_empty() || seg == "." || seg == "..")
            {
                return Err(CoreError::BadLocation {
                    location: format!("{}/{key}", self.location),
                    reason: "not a key inside the store".into(),
                });
            }
            let path = std::path::Path::new(&self.location).join(rel);
            return crate::fs::write(&path, &bytes).map_err(|source| CoreError::Io {
                location: format!("{}/{key}", self.location),
                source,
            });
        }
        self.inner
            .put(&self.path(key), PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|source| CoreError::Write {
                location: self.location.clone(),
                key: key.to_string(),
                source: Box::new(source),
            })
    }

    /// Deletes an object (missing objects are not an error).
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(CoreError::Write {
                location: self.location.clone(),
                key: key.to_string(),
                source: Box::new(source),
            }),
        }
    }

    /// Lists the keys under a prefix (relative to the store root), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let base = self.path(prefix);
        let root = self.prefix.as_ref().to_string();
        let metas: Vec<_> = self
            .inner
            .list(Some(&base))
            .try_collect()
            .await
            .map_err(|source| self.read_err(prefix, source))?;
        let mut keys: Vec<String> = metas
            .into_iter()
            .map(|m| {
                let full = m.location.to_string();
                if root.is_empty() {
                    full
                } else {
                    full.strip_prefix(&format!("{root}/"))
                        .unwrap_or(&full)
                        .to_string()
                }
            })
            .collect();
        keys.sort();
        Ok(keys)
    }

    fn read_err(&self, key: &str, source: object_store::Error) -> CoreError {
        CoreError::Read {
            location: self.location.clone(),
            key: key.to_string(),
            source: Box::new(source),
        }
    }
}

/// Where each stage keeps its outputs inside a store. One place so stages agree.
pub mod layout {
    /// Raw bars of one coin.
    pub fn raw(coin: &str) -> String {
        format!("raw/{coin}.parquet")
    }
    /// The folder of raw bars.
    pub const RAW_DIR: &str = "raw";
    /// Features of one coin.
    pub fn features(coin: &str) -> String {
        format!("features/{coin}.parquet")
    }
    /// The folder of features.
    pub const FEATURES_DIR: &str = "features";

    /// The coin code of a `raw/<COIN>.parquet` or `features/<COIN>.parquet` key.
    pub fn coin_of(key: &str) -> Option<&str> {
        let name = key.rsplit('/').next()?;
        name.strip_suffix(".parquet")
    }
}
