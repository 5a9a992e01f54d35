//! The one atomic local file write of the workspace: data goes to a hidden temp file in the
//! target's directory (`.<name>.tmp<pid>.<random>`), which is renamed over the target only
//! once the writer succeeded, so a reader (or a later stage, or DVC) sees the old file or the
//! new one, never half of one. On error the temp file is removed and the old file kept.
//!
//! A process killed mid-write cannot remove its temp file; the next write of the same target
//! removes the temp files of processes that no longer run ([`remove_stale`]), and the
//! project's `.dvcignore` keeps DVC from ever tracking one. Writers of whole directories
//! (a model package, a registry version) stage them under a name carrying their pid, and
//! their next write sweeps the ones of dead writers ([`remove_dead_writers`]).

use std::fs::File;
use std::io;
use std::path::Path;

/// Writes the file at `path` atomically by handing `write` the temp file; creates missing
/// parent directories; `io_err` turns an I/O error of the temp file into the caller's error. Call `File::sync_all` inside `write` where durability across a power
/// loss matters more than latency (the registry does; stage outputs are re-creatable).
///
/// # Errors
/// What `write` returned, or the I/O error of creating, flushing or renaming the file.
pub fn write_with<E>(
    path: &Path,
    write: impl FnOnce(&mut File) -> Result<(), E>,
    io_err: impl Fn(io::Error) -> E,
) -> Result<(), E> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(&io_err)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    remove_stale(dir, &name);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp{}.", std::process::id()))
        .tempfile_in(dir)
        .map_err(&io_err)?;
    // On any failure below `tmp` (or the NamedTempFile inside the persist error) is dropped,
    // which deletes the temp file.
    write(tmp.as_file_mut())?;
    io::Write::flush(tmp.as_file_mut()).map_err(&io_err)?;
    // The temp file is created 0600; the target keeps the mode it had, and a new file gets
    // 0644 like a plain `File::create` under the usual umask, so a store written by one user
    // (Airflow's) stays readable by another (the server's).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            std::fs::metadata(path).map_or(NEW_FILE_MODE, |m| m.permissions().mode() & 0o7777);
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(&io_err)?;
    }
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}

/// The mode of a file [`write_with`] creates (Unix).
#[cfg(unix)]
pub const NEW_FILE_MODE: u32 = 0o644;

/// Removes what killed writers of `name` left in `dir`: `.<name>.tmp<pid>.*` files of
/// processes that are gone (on Linux, where `/proc` tells), and `<name>#<n>` files, the
/// staging files of object_store's local backend that earlier versions wrote through.
/// Best effort: a file that cannot be removed is left (and logged).
pub fn remove_stale(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let tmp_prefix = format!(".{name}.tmp");
    let staging_prefix = format!("{name}#");
    for e in entries.flatten() {
        let file = e.file_name();
        let file = file.to_string_lossy();
        let stale = if let Some(rest) = file.strip_prefix(&tmp_prefix) {
            rest.split('.')
                .next()
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| pid != std::process::id() && !process_alive(pid))
        } else if let Some(n) = file.strip_prefix(&staging_prefix) {
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
        } else {
            false
        };
        if stale {
            match std::fs::remove_file(e.path()) {
                Ok(()) => {
                    tracing::info!(file = %e.path().display(), "removed a temp file a killed run left")
                }
                Err(err) => {
                    tracing::warn!(file = %e.path().display(), error = %err, "cannot remove a stale temp file")
                }
            }
        }
    }
}

/// Removes what killed writers left in `dir` under names that carry their pid:
/// `<prefix><pid>` or `<prefix><pid>-<anything>` (a staging or backup directory, or a file),
/// where `<pid>` is not ours and no longer runs ([`process_alive`]). Directories go with
/// everything in them. Best effort: what cannot be removed is left and logged at warn;
/// each removal is logged at info. Returns the paths removed.
///
/// The writers that use it: a model package's `.<name>.staging-<pid>` / `.<name>.old-<pid>`
/// (rps-model), the local registry's `.staging-<pid>-<hex>` (rps-mlflow) and rps-train's
/// scratch directory `rps-train-<pid>-<random>`.
pub fn remove_dead_writers(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(prefix)) else {
            continue;
        };
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (pid, tail) = rest.split_at(digits);
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if !(tail.is_empty() || tail.starts_with('-'))
            || pid == std::process::id()
            || process_alive(pid)
        {
            continue;
        }
        let path = e.path();
        // `file_type` does not follow symlinks: a link is removed, never what it points at.
        let result = match e.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        match result {
            Ok(()) => {
                tracing::info!(path = %path.display(), pid, "removed what a killed writer left");
                removed.push(path);
            }
            Err(err) => {
                tracing::warn!(path = %path.display(), pid, error = %err, "cannot remove what a killed writer left")
            }
        }
    }
    removed
}

/// Whether a process runs (Linux: `/proc/<pid>` exists; elsewhere assumed alive, so
/// nothing is removed that might still be written).
pub fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

/// Writes `bytes` to `path` atomically (see [`write_with`]).
///
/// # Errors
/// The I/O error of creating, writing or renaming the file.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with(path, |f| io::Write::write_all(f, bytes), |e| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_write_replaces_the_file_whole_and_creates_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("reports/a.json");
        write(&p, b"old").unwrap();
        write(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(names(&dir.path().join("reports")), ["a.json"]);
    }

    #[test]
    fn temp_files_of_killed_writers_are_removed_by_the_next_write_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("BTC.parquet");
        // A pid far above any pid_max (2^22) is not running; ours is.
        let dead = dir.path().join(".BTC.parquet.tmp99999999.abc123");
        let live = dir
            .path()
            .join(format!(".BTC.parquet.tmp{}.xyz", std::process::id()));
        let staging = dir.path().join("BTC.parquet#3");
        let other = dir.path().join(".ETH.parquet.tmp99999999.abc");
        for f in [&dead, &live, &staging, &other] {
            std::fs::write(f, b"half").unwrap();
        }
        write(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let left = names(dir.path());
        assert!(
            !left.contains(&".BTC.parquet.tmp99999999.abc123".to_string()),
            "{left:?}"
        );
        assert!(!left.contains(&"BTC.parquet#3".to_string()), "{left:?}");
        assert!(
            live.exists(),
            "a running writer's temp file is kept: {left:?}"
        );
        assert!(
            other.exists(),
            "another target's temp file is not touched: {left:?}"
        );
    }

    #[test]
    fn directories_of_killed_writers_are_removed_and_live_or_unrelated_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        // 99999999 is above any pid_max (2^22), so never a running process.
        let dead = [".pkg.staging-99999999", ".staging-99999999-00ff"];
        let kept = [
            format!(".pkg.staging-{me}"),
            format!(".staging-{me}-abcd"),
            ".pkg.staging-99999999x".to_string(),
            ".pkg.staging-".to_string(),
            ".other.staging-99999999".to_string(),
        ];
        for d in dead
            .iter()
            .map(|s| s.to_string())
            .chain(kept.iter().cloned())
        {
            std::fs::create_dir_all(dir.path().join(&d).join("sub")).unwrap();
            std::fs::write(dir.path().join(&d).join("sub/f"), b"half").unwrap();
        }
        // A dead writer's file (not a directory) goes too.
        std::fs::write(dir.path().join(".pkg.old-99999999"), b"half").unwrap();

        let mut removed = remove_dead_writers(dir.path(), ".pkg.staging-");
        removed.extend(remove_dead_writers(dir.path(), ".staging-"));
        removed.extend(remove_dead_writers(dir.path(), ".pkg.old-"));
        assert_eq!(removed.len(), 3, "{removed:?}");
        let left = names(dir.path());
        for d in dead {
            assert!(!left.contains(&d.to_string()), "{d} left: {left:?}");
        }
        assert!(!left.contains(&".pkg.old-99999999".to_string()), "{left:?}");
        for k in &kept {
            assert!(left.contains(k), "{k} was removed: {left:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_new_file_is_readable_by_others_and_a_replaced_one_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let p = dir.path().join("BTC.parquet");
        write(&p, b"new").unwrap();
        assert_eq!(mode(&p), 0o644, "not the temp file's 0600");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write(&p, b"newer").unwrap();
        assert_eq!(mode(&p), 0o640);
    }

    #[test]
    fn a_failing_writer_keeps_the_old_file_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write(&p, b"old").unwrap();
        let err = write_with(
            &p,
            |f| {
                io::Write::write_all(f, b"half")?;
                Err(io::Error::other("disk full"))
            },
            |e| e,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["a.json"]);
    }
}
