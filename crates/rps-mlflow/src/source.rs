//! Where a model package comes from: a package directory (`--model-dir`) or a registry alias
//! (`models:/<name>@<alias>`, the local registry directory or MLflow). A [`ModelSource`] is
//! probed cheaply for what it points at ([`Candidate`]) and fetched only when that is new; a
//! fetch hands back a directory ([`FetchedPackage`]) for the caller's own loader (the server
//! and the drift check both read it with `rps_model`). This module deals in directories and
//! versions only: it knows nothing of the files inside a package.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rps_mlflow::source::SourceError> {
//! use rps_mlflow::source::{ModelSpec, default_cache_dir};
//! let spec = ModelSpec::Registry {
//!     registry: "./registry".into(),
//!     name: "rps-forecaster".into(),
//!     alias: "champion".into(),
//! };
//! let source = spec.open(&default_cache_dir())?;
//! let package = source.fetch(&source.probe().await?).await?;
//! println!("{} version {:?} in {}", package.source, package.version, package.dir().display());
//! // Dropping `package` deletes the downloaded copy: load it first.
//! # Ok(()) }
//! ```

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rps_core::ExitCode;

use crate::client::walk_files;
use crate::error::Error;
use crate::registry::{ModelVersion, Registry};

/// Files up to this size are fingerprinted by content, larger ones by size and modification
/// time: a metadata rewrite of the same length within the clock's resolution still counts
/// as a change, and the poll never reads large weights.
pub const CONTENT_HASH_LIMIT: u64 = 1 << 20;

/// Which model to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    /// A package directory.
    Dir(PathBuf),
    /// A registry alias: `registry` is the local registry directory, used unless
    /// `MLFLOW_TRACKING_URI` is set (then MLflow is the registry).
    Registry {
        /// Local registry directory.
        registry: PathBuf,
        /// Registered model name.
        name: String,
        /// Alias to use and follow.
        alias: String,
    },
}

impl ModelSpec {
    /// Opens the source (the registry client for an alias); registry downloads are staged
    /// under `cache_dir`.
    ///
    /// # Errors
    /// [`SourceError::Registry`] when the registry cannot be opened (bad MLflow
    /// configuration, an unwritable local directory).
    pub fn open(&self, cache_dir: &Path) -> Result<ModelSource, SourceError> {
        Ok(match self {
            ModelSpec::Dir(d) => ModelSource::Dir(d.clone()),
            ModelSpec::Registry {
                registry,
                name,
                alias,
            } => {
                let reg = Registry::from_env(registry).map_err(|e| SourceError::Registry {
                    registry: registry.display().to_string(),
                    reason: e.to_string(),
                    // Opening fails on configuration, never on a model: bad input unless
                    // MLflow itself failed.
                    code: match e.exit_code() {
                        ExitCode::External => ExitCode::External,
                        _ => ExitCode::BadInput,
                    },
                })?;
                ModelSource::Registry {
                    registry: Box::new(reg),
                    name: name.clone(),
                    alias: alias.clone(),
                    cache_dir: cache_dir.to_path_buf(),
                }
            }
        })
    }
}

/// The default directory for downloaded packages (each download is deleted once loaded).
pub fn default_cache_dir() -> PathBuf {
    std::env::temp_dir().join("rps-models")
}

/// What can go wrong finding or fetching a model package.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The registry has no version under the alias.
    #[error(
        "registry {registry}: model '{name}' has no version with alias '{alias}' (train and promote one first)"
    )]
    NoAlias {
        /// The registry (`MLflow at <url>` or `local registry at <dir>`).
        registry: String,
        /// The registered model's name.
        name: String,
        /// The alias looked up.
        alias: String,
    },

    /// The registry (local directory or MLflow) failed; `code` is the registry client's
    /// classification (4 when MLflow failed after retries, 2 for a bad name or version).
    #[error("registry {registry}: {reason}")]
    Registry {
        /// The registry (its description, or the directory given when it could not be opened).
        registry: String,
        /// The registry client's error message.
        reason: String,
        /// The exit code the registry client's error maps to.
        code: ExitCode,
    },

    /// A registry source was handed a candidate without a version (one probed from another
    /// source).
    #[error("registry candidate {key} has no version")]
    NoVersion {
        /// The candidate's key.
        key: String,
    },

    /// The package directory could not be read.
    #[error(transparent)]
    Files(Error),

    /// A blocking file task died (a panic inside it).
    #[error("reading the package directory failed: {0}")]
    Task(String),
}

impl SourceError {
    /// The process exit code for this error (crates/rps-core/src/exit.rs): 2 for a missing alias or a
    /// bad registry argument, 4 when MLflow failed after retries, 1 for unreadable files.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            SourceError::NoAlias { .. } | SourceError::NoVersion { .. } => ExitCode::BadInput,
            SourceError::Registry { code, .. } => *code,
            SourceError::Files(_) | SourceError::Task(_) => ExitCode::Internal,
        }
    }
}

/// Where models come from.
#[derive(Debug)]
pub enum ModelSource {
    /// A package directory; a change of its files is picked up as a new model.
    Dir(PathBuf),
    /// A registry alias.
    Registry {
        /// The registry (local directory or MLflow).
        registry: Box<Registry>,
        /// Registered model name.
        name: String,
        /// Alias to follow (e.g. `champion`).
        alias: String,
        /// Where registry downloads are staged while loading (each deleted once loaded).
        cache_dir: PathBuf,
    },
}

/// What a source points at right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Identity: the registry version, or the directory's fingerprint.
    pub key: String,
    /// The registry version, when there is one.
    pub version: Option<ModelVersion>,
}

/// A package directory ready to load: the source's own directory, or a private download of a
/// registry version that is deleted when this value is dropped (so load it before that: the
/// loaders read the files into memory).
#[derive(Debug)]
pub struct FetchedPackage {
    dir: PathBuf,
    /// The registry version, when it came from a registry.
    pub version: Option<String>,
    /// Where it came from: `dir:<path>` or `models:/<name>@<alias>`.
    pub source: String,
    /// The candidate's key (registry version or directory fingerprint).
    pub key: String,
    /// A download to delete on drop.
    scratch: Option<PathBuf>,
}

impl FetchedPackage {
    /// The directory holding the package files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The version to show for the model: the registry's; for a plain directory the
    /// package's own (`package_version`, from its metadata) or, when that is blank,
    /// `local-<first 8 characters of the fingerprint>`.
    pub fn version_label(&self, package_version: &str) -> String {
        match &self.version {
            Some(v) => v.clone(),
            None if !package_version.trim().is_empty() => package_version.to_string(),
            None => format!("local-{}", &self.key[..self.key.len().min(8)]),
        }
    }
}

impl Drop for FetchedPackage {
    fn drop(&mut self) {
        if let Some(scratch) = &self.scratch
            && let Err(e) = std::fs::remove_dir_all(scratch)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %scratch.display(), error = %e, "could not delete a downloaded package");
        }
    }
}

static DOWNLOADS: AtomicU64 = AtomicU64::new(0);

impl ModelSource {
    /// For logs, reports and `GET /model`: `dir:<path>` or `models:/<name>@<alias>`.
    pub fn describe(&self) -> String {
        match self {
            ModelSource::Dir(p) => format!("dir:{}", p.display()),
            ModelSource::Registry { name, alias, .. } => format!("models:/{name}@{alias}"),
        }
    }

    fn registry_err(&self, e: Error) -> SourceError {
        let code = e.exit_code();
        let registry = match self {
            ModelSource::Registry { registry, .. } => registry.describe(),
            ModelSource::Dir(_) => String::new(),
        };
        SourceError::Registry {
            registry,
            reason: e.to_string(),
            code,
        }
    }

    /// Finds what the source points at, without downloading it.
    ///
    /// # Errors
    /// [`SourceError::NoAlias`] when the alias points nowhere yet, [`SourceError::Registry`]
    /// when the registry failed, [`SourceError::Files`] for an unreadable directory.
    pub async fn probe(&self) -> Result<Candidate, SourceError> {
        match self {
            ModelSource::Dir(dir) => {
                let dir = dir.clone();
                let key = tokio::task::spawn_blocking(move || fingerprint(&dir))
                    .await
                    .map_err(|e| SourceError::Task(e.to_string()))??;
                Ok(Candidate { key, version: None })
            }
            ModelSource::Registry {
                registry,
                name,
                alias,
                ..
            } => match registry.get_alias(name, alias).await {
                Ok(Some(mv)) => Ok(Candidate {
                    key: mv.version.clone(),
                    version: Some(mv),
                }),
                Ok(None) => Err(SourceError::NoAlias {
                    registry: registry.describe(),
                    name: name.clone(),
                    alias: alias.clone(),
                }),
                Err(e) => Err(self.registry_err(e)),
            },
        }
    }

    /// Makes what [`ModelSource::probe`] found available as a directory: the directory itself,
    /// or a fresh download of the registry version under the cache directory.
    ///
    /// # Errors
    /// [`SourceError::Registry`] when the download failed (nothing is left behind), and
    /// [`SourceError::NoVersion`] for a candidate another kind of source probed.
    pub async fn fetch(&self, cand: &Candidate) -> Result<FetchedPackage, SourceError> {
        let source = self.describe();
        let key = cand.key.clone();
        match (self, &cand.version) {
            (ModelSource::Dir(dir), _) => Ok(FetchedPackage {
                dir: dir.clone(),
                version: None,
                source,
                key,
                scratch: None,
            }),
            (
                ModelSource::Registry {
                    registry,
                    cache_dir,
                    name,
                    ..
                },
                Some(mv),
            ) => {
                // A fresh directory per download, so concurrent processes sharing the cache
                // directory never see each other's half-written files.
                let n = DOWNLOADS.fetch_add(1, Ordering::Relaxed);
                let safe: String = name
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                let dest =
                    cache_dir.join(format!("{safe}-v{}-{}-{n}", mv.version, std::process::id()));
                // Owned from here on: dropped, and so deleted, on any error below.
                let mut package = FetchedPackage {
                    dir: dest.clone(),
                    version: Some(mv.version.clone()),
                    source,
                    key,
                    scratch: Some(dest.clone()),
                };
                package.dir = registry
                    .download(mv, &dest)
                    .await
                    .map_err(|e| self.registry_err(e))?;
                Ok(package)
            }
            (ModelSource::Registry { .. }, None) => Err(SourceError::NoVersion { key }),
        }
    }
}

/// A fingerprint of a package directory: the relative path of every file in it (hidden files
/// and directories, such as a writer's temp files, left out) with its size and modification
/// time, and the content of files up to [`CONTENT_HASH_LIMIT`].
///
/// # Errors
/// [`SourceError::Files`] when the directory or a file in it cannot be read.
pub fn fingerprint(dir: &Path) -> Result<String, SourceError> {
    let files = walk_files(dir).map_err(SourceError::Files)?;
    let mut h = DefaultHasher::new();
    for (path, rel) in files {
        if rel.split('/').any(|part| part.starts_with('.')) {
            continue;
        }
        let io = |e| SourceError::Files(Error::io("reading", &path, e));
        let meta = std::fs::metadata(&path).map_err(io)?;
        rel.hash(&mut h);
        meta.len().hash(&mut h);
        if let Ok(t) = meta.modified() {
            t.hash(&mut h);
        }
        if meta.len() <= CONTENT_HASH_LIMIT {
            let mut bytes = Vec::with_capacity(meta.len() as usize);
            std::fs::File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io)?;
            bytes.hash(&mut h);
        }
    }
    Ok(format!("{:016x}", h.finish()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn package(root: &Path) -> PathBuf {
        let dir = root.join("pkg");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("metadata.json"), br#"{"version":"1"}"#).unwrap();
        std::fs::write(dir.join("weights.bin"), vec![7u8; 4096]).unwrap();
        dir
    }

    #[test]
    fn a_directory_fingerprint_follows_its_files_but_not_hidden_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = package(tmp.path());
        let a = fingerprint(&dir).unwrap();
        assert_eq!(
            fingerprint(&dir).unwrap(),
            a,
            "stable while nothing changes"
        );
        std::fs::write(dir.join(".metadata.json.tmp123"), b"half").unwrap();
        assert_eq!(
            fingerprint(&dir).unwrap(),
            a,
            "a writer's temp file is no change"
        );
        // Same length, new content.
        std::fs::write(dir.join("metadata.json"), br#"{"version":"2"}"#).unwrap();
        let b = fingerprint(&dir).unwrap();
        assert_ne!(b, a);
        std::fs::write(dir.join("extra.txt"), b"x").unwrap();
        assert_ne!(fingerprint(&dir).unwrap(), b, "a new file is a change");
        let err = fingerprint(&tmp.path().join("missing")).unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::Internal);
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn a_version_label_prefers_the_registry_then_the_package_then_the_fingerprint() {
        let p = |version: Option<&str>| FetchedPackage {
            dir: PathBuf::from("/nowhere"),
            version: version.map(str::to_string),
            source: "dir:/nowhere".into(),
            key: "0123456789abcdef".into(),
            scratch: None,
        };
        assert_eq!(p(Some("3")).version_label("7"), "3");
        assert_eq!(p(None).version_label("7"), "7");
        assert_eq!(p(None).version_label(" "), "local-01234567");
    }

    #[tokio::test]
    async fn a_registry_alias_is_probed_fetched_to_a_private_copy_and_deleted_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let pkg = package(tmp.path());
        let reg_dir = tmp.path().join("registry");
        let reg = Registry::local(&reg_dir).unwrap();
        let cache = tmp.path().join("cache");
        // Built by hand: `ModelSpec::open` would pick MLflow if MLFLOW_TRACKING_URI were set.
        let source = ModelSource::Registry {
            registry: Box::new(reg.clone()),
            name: "m".into(),
            alias: "champion".into(),
            cache_dir: cache.clone(),
        };
        assert_eq!(source.describe(), "models:/m@champion");
        let err = source.probe().await.unwrap_err();
        assert!(matches!(err, SourceError::NoAlias { .. }), "{err}");
        assert_eq!(err.exit_code(), ExitCode::BadInput);

        let run = reg.start_run("e", "r", &[]).await.unwrap();
        reg.log_artifact(&run, &pkg, "model").await.unwrap();
        let v = reg.register(&run, "m", "model").await.unwrap();
        reg.set_alias("m", "champion", &v.version).await.unwrap();
        let cand = source.probe().await.unwrap();
        assert_eq!(cand.key, v.version);
        let fetched = source.fetch(&cand).await.unwrap();
        assert!(fetched.dir().starts_with(&cache), "{:?}", fetched.dir());
        assert_eq!(
            std::fs::read(fetched.dir().join("metadata.json")).unwrap(),
            std::fs::read(pkg.join("metadata.json")).unwrap()
        );
        assert_eq!(fetched.version_label("ignored"), v.version);
        let dir = fetched.dir().to_path_buf();
        drop(fetched);
        assert!(!dir.exists(), "the download is deleted on drop");

        let err = source
            .fetch(&Candidate {
                key: "x".into(),
                version: None,
            })
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::NoVersion { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_directory_source_hands_back_the_directory_itself_and_never_deletes_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = package(tmp.path());
        let source = ModelSpec::Dir(dir.clone()).open(tmp.path()).unwrap();
        assert_eq!(source.describe(), format!("dir:{}", dir.display()));
        let cand = source.probe().await.unwrap();
        assert_eq!(cand.key, fingerprint(&dir).unwrap());
        let fetched = source.fetch(&cand).await.unwrap();
        assert_eq!(fetched.dir(), dir);
        assert_eq!(
            fetched.version_label(""),
            format!("local-{}", &cand.key[..8])
        );
        drop(fetched);
        assert!(dir.join("metadata.json").exists());
    }
}
