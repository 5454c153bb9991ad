//! The files `herald helper` keeps: every X.509 update goes into a new
//! generation directory, and one `rename` of a symlink makes it current.
//!
//! Why generations rather than renaming each file into place: renaming the
//! certificate and then the key leaves a moment in which a reader opening
//! both gets a new certificate with the old key (or the reverse), and the
//! program then refuses to start or reload. Here `<dir>/svid.pem` is a
//! symlink to `.herald/current/svid.pem`, and `.herald/current` is a
//! symlink to the generation; the switch from one complete, fsynced set to
//! the next is a single `rename(2)`. A reader that opens both files after
//! the reload signal (which is sent only after the switch) always gets a
//! matching pair. The previous generation is kept, so a reader that
//! resolved the old link a moment before the switch can still open it.

use std::io;
use std::os::unix::fs::{symlink, DirBuilderExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::helper::HelperConfig;

/// The directory under `dir` holding the generations and `current`.
const STORE: &str = ".herald";

/// One X509-SVID as PEM text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X509Files {
    /// The leaf and its intermediates.
    pub chain: String,
    /// The PKCS#8 private key.
    pub key: String,
    /// The trust bundle (own, and federated when configured).
    pub bundle: String,
}

/// Writes files into the output directory with the configured names,
/// modes and owner.
#[derive(Debug)]
pub struct Writer {
    config: HelperConfig,
    /// Makes generation names unique within this process's life.
    counter: AtomicU64,
}

/// Why files could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}", path.display())]
pub struct WriteError {
    /// The file or directory being written.
    pub path: PathBuf,
    /// What the operating system (or, for PKCS#12, the encoder) said.
    #[source]
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> WriteError + '_ {
    move |source| WriteError {
        path: path.to_path_buf(),
        source,
    }
}

impl Writer {
    /// A writer for `config`'s directory (created when first written).
    pub fn new(config: HelperConfig) -> Writer {
        Writer {
            config,
            counter: AtomicU64::new(0),
        }
    }

    fn chown(&self, path: &Path) -> Result<(), WriteError> {
        if self.config.file_uid.is_none() && self.config.file_gid.is_none() {
            return Ok(());
        }
        rustix::fs::chown(
            path,
            self.config.file_uid.map(rustix::process::Uid::from_raw),
            self.config.file_gid.map(rustix::process::Gid::from_raw),
        )
        .map_err(io::Error::from)
        .map_err(at(path))
    }

    /// Writes one file atomically with `mode` and the configured owner.
    fn write(&self, path: &Path, contents: &[u8], mode: u32) -> Result<(), WriteError> {
        // chown before the rename would be better still, but write_atomic
        // owns its temp name; the mode is already right from creation.
        crate::fsutil::write_atomic(path, contents, mode).map_err(at(path))?;
        self.chown(path)
    }

    /// Installs a new generation of the X.509 files and makes it current.
    pub fn install_x509(&self, files: &X509Files) -> Result<(), WriteError> {
        let c = &self.config;
        let store = c.dir.join(STORE);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&store)
            .map_err(at(&store))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let name = format!("gen-{now:x}-{n}");
        let generation = store.join(&name);
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&generation)
            .map_err(at(&generation))?;
        self.chown(&generation)?;
        self.write(
            &generation.join(&c.svid_file_name),
            files.chain.as_bytes(),
            c.cert_file_mode,
        )?;
        self.write(
            &generation.join(&c.key_file_name),
            files.key.as_bytes(),
            c.key_file_mode,
        )?;
        self.write(
            &generation.join(&c.bundle_file_name),
            files.bundle.as_bytes(),
            c.cert_file_mode,
        )?;
        if let Some(p12) = &c.pkcs12 {
            let path = generation.join(&p12.file_name);
            let der = super::pkcs12::encode(&files.chain, &files.key, &p12.password)
                .map_err(|e| at(&path)(io::Error::new(io::ErrorKind::InvalidData, e)))?;
            // It holds the key: the key's mode, not the certificates'.
            self.write(&path, &der, c.key_file_mode)?;
        }
        let current = store.join("current");
        let previous = std::fs::read_link(&current).ok();
        replace_symlink(Path::new(&name), &current)?;
        let p12 = c.pkcs12.as_ref().map(|p| &p.file_name);
        for file in [&c.svid_file_name, &c.key_file_name, &c.bundle_file_name]
            .into_iter()
            .chain(p12)
        {
            let target = Path::new(STORE).join("current").join(file);
            let link = c.dir.join(file);
            if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
                replace_symlink(&target, &link)?;
            }
        }
        prune(&store, &name, previous.as_deref());
        Ok(())
    }

    /// Writes a JWT-SVID (a lone file: it has no partner to match).
    pub fn write_jwt(&self, file_name: &str, token: &str) -> Result<(), WriteError> {
        std::fs::create_dir_all(&self.config.dir).map_err(at(&self.config.dir))?;
        let path = self.config.dir.join(file_name);
        self.write(&path, token.as_bytes(), self.config.cert_file_mode)
    }
}

/// Points `link` at `target`, replacing whatever is at `link` in one
/// rename, then fsyncs the directory.
fn replace_symlink(target: &Path, link: &Path) -> Result<(), WriteError> {
    let mut tmp = link.as_os_str().to_os_string();
    tmp.push(".tmp-link");
    let tmp = PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(at(&tmp)(e)),
    }
    symlink(target, &tmp).map_err(at(&tmp))?;
    std::fs::rename(&tmp, link).map_err(at(link))?;
    let parent = link.parent().unwrap_or(Path::new("."));
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(at(parent))
}

/// Removes every generation but `keep` and `previous` (failures are only
/// logged: a stale directory is untidy, not wrong).
fn prune(store: &Path, keep: &str, previous: Option<&Path>) {
    let Ok(entries) = std::fs::read_dir(store) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(s) = name.to_str() else { continue };
        if !s.starts_with("gen-") || s == keep || previous == Some(Path::new(s)) {
            continue;
        }
        if let Err(err) = std::fs::remove_dir_all(e.path()) {
            tracing::warn!(dir = %e.path().display(), error = %err, "cannot remove an old generation");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::helper::RawHelper;
    use std::os::unix::fs::PermissionsExt as _;

    fn writer(dir: &Path) -> Writer {
        let raw = RawHelper {
            agent_socket: Some("/s".into()),
            dir: Some(dir.to_path_buf()),
            ..RawHelper::default()
        };
        Writer::new(HelperConfig::check(Path::new("t"), raw).unwrap())
    }

    fn files(tag: &str) -> X509Files {
        X509Files {
            chain: format!("chain {tag}"),
            key: format!("key {tag}"),
            bundle: format!("bundle {tag}"),
        }
    }

    #[test]
    fn each_update_swaps_a_whole_set_and_keeps_one_previous() {
        let tmp = tempfile::tempdir().unwrap();
        let w = writer(tmp.path());
        for i in 0..4 {
            w.install_x509(&files(&i.to_string())).unwrap();
            let read = |n: &str| std::fs::read_to_string(tmp.path().join(n)).unwrap();
            assert_eq!(read("svid.pem"), format!("chain {i}"));
            assert_eq!(read("svid_key.pem"), format!("key {i}"));
            assert_eq!(read("bundle.pem"), format!("bundle {i}"));
        }
        let key = std::fs::metadata(tmp.path().join("svid_key.pem")).unwrap();
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
        let gens = std::fs::read_dir(tmp.path().join(STORE))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("gen-")
            })
            .count();
        assert_eq!(gens, 2, "the current generation and the one before");
    }

    #[test]
    fn pkcs12_joins_the_generation_with_the_key_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let raw = RawHelper {
            agent_socket: Some("/s".into()),
            dir: Some(tmp.path().to_path_buf()),
            pkcs12_file_name: Some("svid.p12".into()),
            ..RawHelper::default()
        };
        let w = Writer::new(HelperConfig::check(Path::new("t"), raw).unwrap());
        let (chain, key) = crate::helper::pkcs12::tests::svid();
        let bundle = String::new();
        w.install_x509(&X509Files { chain, key, bundle }).unwrap();
        let link = tmp.path().join("svid.p12");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new(STORE).join("current/svid.p12")
        );
        let meta = std::fs::metadata(&link).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(meta.len() > 0);
    }

    #[test]
    fn a_regular_file_in_the_way_is_replaced_by_the_link() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("svid.pem"), "old").unwrap();
        writer(tmp.path()).install_x509(&files("new")).unwrap();
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("svid.pem")).unwrap(),
            "chain new"
        );
    }
}
