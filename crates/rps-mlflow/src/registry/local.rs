//! The embedded registry: a directory with MLflow's semantics, so the quickstart trains and
//! serves without a server.
//!
//! ```text
//! <dir>/runs.jsonl                              append-only log of run events
//! <dir>/runs/<run_id>/run.json                  status, times, tags, params, inputs
//! <dir>/runs/<run_id>/metrics.jsonl             one metric point per line
//! <dir>/runs/<run_id>/artifacts/...
//! <dir>/models/<name>/versions/<n>/             package copy + version.json (immutable)
//! <dir>/models/<name>/aliases/<alias>           the version number, replaced atomically
//! ```
//! Versions are published by renaming a fully written staging directory
//! (`models/<name>/.staging-<pid>-<hex>`; the next registration removes those of dead pids),
//! and aliases by renaming a fully written temp file, so a reader (e.g. rps-serve polling the
//! champion) never sees a half-written version or alias. The files are small, so plain
//! blocking I/O is used inside the async API.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Dataset, ModelVersion, RunHandle};
use crate::client::{
    MAX_DIGEST_LEN, check_key, check_metrics, checked_params, clean_rel_path, now_ms, walk_files,
};
use crate::error::{Error, Result};
use crate::types::{Metric, Param, RunStatus};

const VERSION_FILE: &str = "version.json";
/// A version being published: `<model dir>/.staging-<pid>-<random hex>`.
const STAGING_PREFIX: &str = ".staging-";

/// A run as the local registry stores it (`run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalRun {
    /// The run's id (32 hex characters).
    pub run_id: String,
    /// The experiment's name.
    pub experiment: String,
    /// The run's display name.
    pub run_name: String,
    /// The run's status.
    pub status: RunStatus,
    /// Start, ms since the epoch (UTC).
    pub start_time: i64,
    /// End, ms since the epoch (UTC); `None` while the run has not ended.
    #[serde(default)]
    pub end_time: Option<i64>,
    /// The run's tags, by key.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The run's params, by key.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// The datasets logged as inputs, first record per (name, digest).
    #[serde(default)]
    pub inputs: Vec<Dataset>,
}

#[derive(Debug, Serialize, Deserialize)]
struct VersionFile {
    #[serde(flatten)]
    version: ModelVersion,
    artifact_path: String,
    created_at: i64,
}

/// The embedded registry in one directory (layout in the module docs).
#[derive(Debug, Clone)]
pub struct LocalRegistry {
    dir: PathBuf,
    /// Serialises read-modify-write of run.json within this process.
    lock: Arc<Mutex<()>>,
}

impl LocalRegistry {
    /// Opens (creating if needed) the registry directory.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        let dir = fs::canonicalize(dir).map_err(|e| Error::io("resolving", dir, e))?;
        Ok(LocalRegistry {
            dir,
            lock: Arc::new(Mutex::new(())),
        })
    }

    /// The registry directory (canonicalised).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `local registry at <dir>`, for messages and reports.
    pub fn describe(&self) -> String {
        format!("local registry at {}", self.dir.display())
    }

    fn run_dir(&self, run_id: &str) -> Result<PathBuf> {
        if run_id.is_empty() || !run_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::invalid(
                "run id",
                format!("'{run_id}' is not a run id"),
            ));
        }
        Ok(self.dir.join("runs").join(run_id))
    }

    fn model_dir(&self, model: &str) -> PathBuf {
        self.dir.join("models").join(model)
    }

    fn version_dir(&self, model: &str, version: &str) -> Option<PathBuf> {
        // Only canonical decimal numbers name versions ("01" would alias "1").
        let n: u64 = version.parse().ok()?;
        (n.to_string() == version).then(|| self.model_dir(model).join("versions").join(version))
    }

    /// The stored run.
    pub fn get_run(&self, run_id: &str) -> Result<LocalRun> {
        let path = self.run_dir(run_id)?.join("run.json");
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| Error::LocalJson { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound {
                what: format!("run {run_id} in {}", self.dir.display()),
            }),
            Err(e) => Err(Error::io("reading", path, e)),
        }
    }

    /// Every logged point of metric `key`, in logging order.
    pub fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>> {
        let path = self.run_dir(run_id)?.join("metrics.jsonl");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("reading", path, e)),
        };
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let m: Metric = serde_json::from_str(line).map_err(|source| Error::LocalJson {
                path: path.clone(),
                source,
            })?;
            if m.key == key {
                out.push(m);
            }
        }
        Ok(out)
    }

    fn update_run(
        &self,
        run_id: &str,
        f: impl FnOnce(&mut LocalRun) -> Result<()>,
    ) -> Result<LocalRun> {
        // A poisoned lock only means another thread panicked mid-update; the file itself is
        // always replaced atomically, so continuing is safe.
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut run = self.get_run(run_id)?;
        f(&mut run)?;
        let path = self.run_dir(run_id)?.join("run.json");
        write_json_atomic(&path, &run)?;
        Ok(run)
    }

    fn append_log(&self, event: serde_json::Value) -> Result<()> {
        let path = self.dir.join("runs.jsonl");
        let mut line = serde_json::to_vec(&event).map_err(|source| Error::LocalJson {
            path: path.clone(),
            source,
        })?;
        line.push(b'\n');
        // One write of a whole line to an O_APPEND file: concurrent writers do not interleave.
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("opening", &path, e))?;
        f.write_all(&line)
            .map_err(|e| Error::io("appending to", &path, e))
    }

    pub(crate) fn start_run(
        &self,
        experiment: &str,
        run_name: &str,
        tags: &[(String, String)],
    ) -> Result<RunHandle> {
        for (k, _) in tags {
            check_key("tag", k)?;
        }
        let run_id = format!("{:032x}", rand::random::<u128>());
        let dir = self.run_dir(&run_id)?;
        let artifacts = dir.join("artifacts");
        fs::create_dir_all(&artifacts).map_err(|e| Error::io("creating", &artifacts, e))?;
        let run = LocalRun {
            run_id: run_id.clone(),
            experiment: experiment.to_string(),
            run_name: run_name.to_string(),
            status: RunStatus::Running,
            start_time: now_ms(),
            end_time: None,
            tags: tags.iter().cloned().collect(),
            params: BTreeMap::new(),
            inputs: Vec::new(),
        };
        write_json_atomic(&dir.join("run.json"), &run)?;
        self.append_log(json!({
            "event": "start", "run_id": run_id, "experiment": experiment, "run_name": run_name,
            "time": run.start_time, "tags": run.tags,
        }))?;
        tracing::info!(run_id = %run_id, experiment, dir = %dir.display(), "local run started");
        Ok(RunHandle {
            run_id,
            experiment_id: experiment.to_string(),
            run_name: run_name.to_string(),
            artifact_uri: artifacts.to_string_lossy().into_owned(),
        })
    }

    pub(crate) fn log_params(&self, run: &RunHandle, params: &[(String, String)]) -> Result<()> {
        // Same key, length and in-batch duplicate rules as the MLflow client.
        let params = checked_params(
            &params
                .iter()
                .map(|(k, v)| Param::new(k, v))
                .collect::<Vec<_>>(),
        )?;
        self.update_run(&run.run_id, |r| {
            // Check everything first so a conflict stores nothing (as MLflow's batch does).
            let mut merged = r.params.clone();
            for Param { key: k, value: v } in &params {
                match merged.get(k) {
                    Some(old) if old != v => {
                        return Err(Error::invalid(
                            format!("param '{k}' of run {}", r.run_id),
                            format!(
                                "already '{old}'; changing param values is not allowed (new '{v}')"
                            ),
                        ));
                    }
                    _ => {
                        merged.insert(k.clone(), v.clone());
                    }
                }
            }
            r.params = merged;
            Ok(())
        })?;
        Ok(())
    }

    pub(crate) fn log_metrics(&self, run: &RunHandle, metrics: &[Metric]) -> Result<()> {
        check_metrics(metrics)?;
        let dir = self.run_dir(&run.run_id)?;
        if !dir.join("run.json").exists() {
            return Err(Error::NotFound {
                what: format!("run {}", run.run_id),
            });
        }
        let path = dir.join("metrics.jsonl");
        let mut buf = Vec::new();
        for m in metrics {
            serde_json::to_writer(&mut buf, m).map_err(|source| Error::LocalJson {
                path: path.clone(),
                source,
            })?;
            buf.push(b'\n');
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("opening", &path, e))?;
        f.write_all(&buf)
            .map_err(|e| Error::io("appending to", &path, e))
    }

    pub(crate) fn set_tags(&self, run: &RunHandle, tags: &[(String, String)]) -> Result<()> {
        for (k, _) in tags {
            check_key("tag", k)?;
        }
        self.update_run(&run.run_id, |r| {
            r.tags.extend(tags.iter().cloned());
            Ok(())
        })?;
        Ok(())
    }

    pub(crate) fn log_input(&self, run: &RunHandle, ds: &Dataset) -> Result<()> {
        let n = ds.digest.chars().count();
        if ds.name.is_empty() || n == 0 || n > MAX_DIGEST_LEN {
            return Err(Error::invalid(
                format!("dataset '{}'", ds.name),
                format!("needs a name and a digest of 1..={MAX_DIGEST_LEN} characters (got {n})"),
            ));
        }
        self.update_run(&run.run_id, |r| {
            // MLflow keeps the first record of a (name, digest) pair.
            if !r
                .inputs
                .iter()
                .any(|d| d.name == ds.name && d.digest == ds.digest)
            {
                r.inputs.push(ds.clone());
            }
            Ok(())
        })?;
        Ok(())
    }

    pub(crate) fn log_artifact(
        &self,
        run: &RunHandle,
        local: &Path,
        artifact_path: &str,
    ) -> Result<()> {
        let root = self.run_dir(&run.run_id)?.join("artifacts");
        if !root.is_dir() {
            return Err(Error::NotFound {
                what: format!("run {}", run.run_id),
            });
        }
        let dest = root.join(rel_path(&clean_rel_path(artifact_path)?));
        let meta = fs::metadata(local).map_err(|e| Error::io("reading", local, e))?;
        if meta.is_dir() {
            copy_tree(local, &dest, None)?;
        } else {
            let name = local.file_name().ok_or_else(|| {
                Error::invalid(
                    "artifact file",
                    format!("{} has no file name", local.display()),
                )
            })?;
            copy_file(local, &dest.join(name))?;
        }
        Ok(())
    }

    pub(crate) fn end_run(&self, run: &RunHandle, status: RunStatus) -> Result<()> {
        let end = now_ms();
        let r = self.update_run(&run.run_id, |r| {
            r.status = status;
            r.end_time = Some(end);
            Ok(())
        })?;
        self.log_end(&r)
    }

    /// The `end` event of a run that has just ended (`runs.jsonl`).
    fn log_end(&self, r: &LocalRun) -> Result<()> {
        let latest = self.latest_metrics(&r.run_id)?;
        self.append_log(json!({
            "event": "end", "run_id": r.run_id, "experiment": r.experiment, "run_name": r.run_name,
            "status": r.status, "time": r.end_time, "params": r.params, "metrics": latest,
        }))
    }

    /// See [`super::Registry::close_orphaned_runs`]: scans `runs/*/run.json`.
    pub(crate) fn close_orphaned_runs(&self, experiment: &str, host: &str) -> Result<Vec<String>> {
        let runs = self.dir.join("runs");
        let entries = match fs::read_dir(&runs) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("listing", &runs, e)),
        };
        let mut closed = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing", &runs, e))?;
            let Some(run_id) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let run = match self.get_run(&run_id) {
                Ok(r) => r,
                // A run directory without run.json: a start killed before its first write.
                Err(Error::NotFound { .. } | Error::Invalid { .. }) => continue,
                Err(e) => return Err(e),
            };
            if run.experiment != experiment || run.status != RunStatus::Running {
                continue;
            }
            let Some(pid) = super::dead_trainer(|k| run.tags.get(k).map(String::as_str), host)
            else {
                continue;
            };
            let end = now_ms();
            let mut ended = false;
            let r = self.update_run(&run_id, |r| {
                // Re-checked under the lock: another closer in this process may have won.
                if r.status == RunStatus::Running {
                    r.status = RunStatus::Failed;
                    r.end_time = Some(end);
                    r.tags
                        .insert(super::ERROR_TAG.into(), super::orphan_message(pid, host));
                    ended = true;
                }
                Ok(())
            })?;
            if ended {
                self.log_end(&r)?;
                closed.push(run_id);
            }
        }
        closed.sort();
        Ok(closed)
    }

    /// Latest value per key (highest step, then latest timestamp), like MLflow's run data.
    fn latest_metrics(&self, run_id: &str) -> Result<BTreeMap<String, f64>> {
        let path = self.run_dir(run_id)?.join("metrics.jsonl");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(Error::io("reading", path, e)),
        };
        let mut best: BTreeMap<String, (i64, i64, f64)> = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let m: Metric = serde_json::from_str(line).map_err(|source| Error::LocalJson {
                path: path.clone(),
                source,
            })?;
            let e = best.entry(m.key).or_insert((i64::MIN, i64::MIN, m.value));
            if (m.step, m.timestamp_ms) >= (e.0, e.1) {
                *e = (m.step, m.timestamp_ms, m.value);
            }
        }
        Ok(best.into_iter().map(|(k, (_, _, v))| (k, v)).collect())
    }

    pub(crate) fn register(
        &self,
        run: &RunHandle,
        model: &str,
        artifact_path: &str,
    ) -> Result<ModelVersion> {
        let rel = clean_rel_path(artifact_path)?;
        let src = self
            .run_dir(&run.run_id)?
            .join("artifacts")
            .join(rel_path(&rel));
        let has_files = src.is_dir() && !walk_files(&src)?.is_empty();
        if !has_files {
            return Err(Error::NotFound {
                what: format!("artifact directory '{rel}' of run {}", run.run_id),
            });
        }
        let versions = self.model_dir(model).join("versions");
        fs::create_dir_all(&versions).map_err(|e| Error::io("creating", &versions, e))?;
        // The staging name carries our pid, so a registrar killed mid-copy leaves a
        // directory the next one recognises as dead and removes.
        rps_core::fs::remove_dead_writers(&self.model_dir(model), STAGING_PREFIX);
        let staging = self.model_dir(model).join(format!(
            "{STAGING_PREFIX}{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        copy_tree(&src, &staging, None)?;
        // Publish by renaming the complete directory to the next free number. This stays a
        // directory rename rather than rps_core::fs (which replaces one file): a version is
        // a whole tree that must appear at once, and rename(2) fails on an existing
        // non-empty directory, so a concurrent registrar that took the number first makes
        // us try the next one instead of being overwritten.
        let mut n = max_version(&versions)? + 1;
        loop {
            let mv = ModelVersion {
                name: model.to_string(),
                version: n.to_string(),
                run_id: run.run_id.clone(),
                source: versions.join(n.to_string()).to_string_lossy().into_owned(),
            };
            write_json_atomic(
                &staging.join(VERSION_FILE),
                &VersionFile {
                    version: mv.clone(),
                    artifact_path: rel.clone(),
                    created_at: now_ms(),
                },
            )?;
            let target = versions.join(n.to_string());
            match fs::rename(&staging, &target) {
                Ok(()) => {
                    self.append_log(json!({
                        "event": "register", "run_id": run.run_id, "model": model,
                        "version": mv.version, "artifact_path": rel, "time": now_ms(),
                    }))?;
                    tracing::info!(model, version = %mv.version, "model version registered locally");
                    return Ok(mv);
                }
                Err(_) if target.exists() && n < u64::MAX => n = n.max(max_version(&versions)?) + 1,
                Err(e) => {
                    let _ = fs::remove_dir_all(&staging);
                    return Err(Error::io("publishing", target, e));
                }
            }
        }
    }

    pub(crate) fn get_version(&self, model: &str, version: &str) -> Result<Option<ModelVersion>> {
        let Some(dir) = self.version_dir(model, version) else {
            return Ok(None);
        };
        let path = dir.join(VERSION_FILE);
        match fs::read(&path) {
            Ok(b) => {
                let vf: VersionFile = serde_json::from_slice(&b)
                    .map_err(|source| Error::LocalJson { path, source })?;
                Ok(Some(vf.version))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("reading", path, e)),
        }
    }

    pub(crate) fn set_alias(&self, model: &str, alias: &str, version: &str) -> Result<()> {
        if self.get_version(model, version)?.is_none() {
            return Err(Error::NotFound {
                what: format!("version {version} of model '{model}'"),
            });
        }
        let dir = self.model_dir(model).join("aliases");
        fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        write_atomic(&dir.join(alias), version.as_bytes())?;
        self.append_log(json!({
            "event": "alias", "model": model, "alias": alias, "version": version, "time": now_ms(),
        }))?;
        tracing::info!(model, alias, version, "alias set");
        Ok(())
    }

    pub(crate) fn get_alias(&self, model: &str, alias: &str) -> Result<Option<ModelVersion>> {
        let path = self.model_dir(model).join("aliases").join(alias);
        let version = match fs::read_to_string(&path) {
            Ok(v) => v.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("reading", path, e)),
        };
        match self.get_version(model, &version)? {
            Some(v) => Ok(Some(v)),
            None => Err(Error::NotFound {
                what: format!(
                    "version {version} of model '{model}' (alias '{alias}' points at it)"
                ),
            }),
        }
    }

    pub(crate) fn delete_alias(&self, model: &str, alias: &str) -> Result<()> {
        let path = self.model_dir(model).join("aliases").join(alias);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("removing", path, e)),
        }
    }

    pub(crate) fn download(&self, mv: &ModelVersion, dest: &Path) -> Result<PathBuf> {
        let dir = self
            .version_dir(&mv.name, &mv.version)
            .filter(|d| d.join(VERSION_FILE).is_file())
            .ok_or_else(|| Error::NotFound {
                what: format!("version {} of model '{}'", mv.version, mv.name),
            })?;
        fs::create_dir_all(dest).map_err(|e| Error::io("creating", dest, e))?;
        copy_tree(&dir, dest, Some(VERSION_FILE))?;
        Ok(dest.to_path_buf())
    }
}

fn rel_path(rel: &str) -> PathBuf {
    rel.split('/').filter(|s| !s.is_empty()).collect()
}

fn max_version(versions: &Path) -> Result<u64> {
    let mut max = 0;
    let rd = fs::read_dir(versions).map_err(|e| Error::io("listing", versions, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("listing", versions, e))?;
        if let Some(n) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u64>().ok())
        {
            max = max.max(n);
        }
    }
    Ok(max)
}

/// Copies every file under `src` into `dest` (recursively), optionally skipping one
/// top-level file name.
fn copy_tree(src: &Path, dest: &Path, skip_top: Option<&str>) -> Result<()> {
    fs::create_dir_all(dest).map_err(|e| Error::io("creating", dest, e))?;
    for (path, rel) in walk_files(src)? {
        if skip_top.is_some_and(|s| s == rel) {
            continue;
        }
        copy_file(&path, &dest.join(rel_path(&rel)))?;
    }
    Ok(())
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
    }
    fs::copy(from, to).map_err(|e| Error::io("copying", from, e))?;
    Ok(())
}

/// Writes `bytes` over `path` atomically and durably ([`rps_core::fs::write_with`], synced
/// before the rename: an alias or version file must survive a power loss): readers see the
/// old content or the new, never a mix.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    rps_core::fs::write_with(
        path,
        |f| {
            f.write_all(bytes)?;
            f.sync_all()
        },
        |e| e,
    )
    .map_err(|e| Error::io("writing", path, e))
}

fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::LocalJson {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temp_behind() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("champion");
        write_atomic(&p, b"1").unwrap();
        write_atomic(&p, b"2").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "2");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn non_canonical_version_strings_do_not_name_a_version() {
        let d = tempfile::tempdir().unwrap();
        let r = LocalRegistry::open(d.path()).unwrap();
        assert!(r.version_dir("m", "01").is_none());
        assert!(r.version_dir("m", "x").is_none());
        assert!(r.version_dir("m", "3").is_some());
    }
}
