//! Report locations: a local file or an object in a store (`s3://bucket/prefix/name.json`).
//!
//! A report written to an object store can be read by a stage on another host (the Airflow
//! DAG on a CeleryExecutor or KubernetesExecutor shares nothing else between its tasks), so
//! the report flags of rps-validate (`--report`) and rps-transform (`--summary`, `--profile`,
//! `--validation-report`) take either. Both kinds are written atomically: locally through
//! [`rps_core::fs::write`] (temp file, then rename; parent directories created), in a store
//! by one PUT of the whole object ([`Store::put`]). The URL is opened with the same
//! `AWS_*` settings as `--store`.

use std::path::Path;

use bytes::Bytes;
use rps_core::{CoreError, Store};

/// Whether `path` names an object in a store (`s3://…`) rather than a local file.
pub fn is_url(path: &Path) -> bool {
    path.to_str().is_some_and(|s| s.starts_with("s3://"))
}

/// The store holding the object `url` and the object's key in it: `s3://b/p/r.json` ->
/// (`s3://b/p`, `r.json`). A URL without an object name (`s3://b`, `s3://b/dir/`) is refused.
fn split(url: &str) -> Result<(Store, String), CoreError> {
    let bad = |reason: &str| CoreError::BadLocation {
        location: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| bad("not an s3:// URL"))?;
    let (dir, name) = rest
        .rsplit_once('/')
        .ok_or_else(|| bad("no object name after the bucket"))?;
    if name.is_empty() || name == "." || name == ".." || dir.is_empty() {
        return Err(bad("no object name after the bucket"));
    }
    Ok((Store::open(&format!("s3://{dir}"))?, name.to_string()))
}

/// Writes `bytes` to `target` (a local path or an `s3://` URL), atomically.
pub async fn write(target: &Path, bytes: Vec<u8>) -> Result<(), CoreError> {
    match target.to_str() {
        Some(url) if is_url(target) => {
            let (store, key) = split(url)?;
            store.put(&key, Bytes::from(bytes)).await
        }
        _ => rps_core::fs::write(target, &bytes).map_err(|source| CoreError::Io {
            location: target.display().to_string(),
            source,
        }),
    }
}

/// Reads `target` (a local path or an `s3://` URL); `Ok(None)` when it does not exist.
pub async fn read(target: &Path) -> Result<Option<Vec<u8>>, CoreError> {
    match target.to_str() {
        Some(url) if is_url(target) => {
            let (store, key) = split(url)?;
            Ok(store.get(&key).await?.map(|b| b.to_vec()))
        }
        _ => match std::fs::read(target) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CoreError::Io {
                location: target.display().to_string(),
                source,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_s3_urls_are_objects() {
        assert!(is_url(Path::new("s3://b/reports/v.json")));
        assert!(!is_url(Path::new("reports/v.json")));
        assert!(!is_url(Path::new("/tmp/s3://x")));
    }

    #[test]
    fn a_url_splits_into_its_store_and_the_object_name() {
        let (store, key) = split("s3://bucket/a/b/report.json").unwrap();
        assert_eq!(store.location(), "s3://bucket/a/b");
        assert_eq!(key, "report.json");
        let (store, key) = split("s3://bucket/report.json").unwrap();
        assert_eq!(store.location(), "s3://bucket");
        assert_eq!(key, "report.json");
    }

    #[test]
    fn a_url_without_an_object_name_is_bad_input() {
        for url in [
            "s3://bucket",
            "s3://bucket/dir/",
            "s3:///x.json",
            "s3://b/..",
        ] {
            let err = split(url).err().unwrap_or_else(|| panic!("{url} accepted"));
            assert_eq!(
                err.exit_code(),
                rps_core::ExitCode::BadInput,
                "{url}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn a_local_report_is_written_with_its_parents_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reports/validation/BTC.json");
        assert_eq!(read(&path).await.unwrap(), None);
        write(&path, b"{}\n".to_vec()).await.unwrap();
        assert_eq!(read(&path).await.unwrap().as_deref(), Some(&b"{}\n"[..]));
    }
}
