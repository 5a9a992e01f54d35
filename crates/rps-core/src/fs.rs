//! The one atomic local file write of the workspace: data goes to a hidden temp file in the
//! target's directory (`.<name>.tmp<random>`), which is renamed over the target only once
//! the writer succeeded, so a reader (or a later stage, or DVC) sees the old file or the new
//! one, never half of one. On error the temp file is removed and the old file kept.

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
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp"))
        .tempfile_in(dir)
        .map_err(&io_err)?;
    // On any failure below `tmp` (or the NamedTempFile inside the persist error) is dropped,
    // which deletes the temp file.
    write(tmp.as_file_mut())?;
    io::Write::flush(tmp.as_file_mut()).map_err(&io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
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
