//! Writing a file so that a crash leaves either the old contents or the new,
//! never half of either, with its mode set before any byte is written (key
//! files must never exist, even briefly, with a looser mode than 0600).

use std::io::{BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Writes `contents` to `path` with `mode`: a temp file beside it (created
/// fresh with that mode), fsync, rename over `path`, fsync of the directory.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    write_atomic_with(path, mode, |w| w.write_all(contents))
}

/// Like [`write_atomic`], with the contents streamed by `fill` into a
/// buffered writer: a large file never has to be held in memory whole.
pub fn write_atomic_with(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    // The umask may have narrowed the mode on creation; state it exactly.
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    let mut w = BufWriter::new(f);
    let written = fill(&mut w)
        .and_then(|()| w.into_inner().map_err(std::io::IntoInnerError::into_error))
        .and_then(|f| f.sync_all());
    if let Err(e) = written {
        // The file in place is untouched; the partial one is of no use.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_contents_and_sets_the_mode() {
        let (dir, p) = crate::testing::temp_path("k.key");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!dir.path().join("k.key.tmp").exists());
    }

    #[test]
    fn a_failed_fill_leaves_the_old_contents() {
        let (dir, p) = crate::testing::temp_path("f");
        write_atomic(&p, b"old", 0o600).unwrap();
        let err = write_atomic_with(&p, 0o600, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("stop"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "stop");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert!(!dir.path().join("f.tmp").exists());
    }
}
