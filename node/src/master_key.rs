//! The node master key: it seals the devices' root keys and the session keys in RocksDB
//! (`entente_store::Sealer`), so a copy of the data dir without it holds no key.
//!
//! It comes from `ENTENTE_MASTER_KEY` (64 hex digits) or from `node.master_key_file`
//! (mode 0600, outside the data dir): one key per line, the first seals, the others are
//! retired keys still accepted for reading while `entente keys rotate` re-seals.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use entente_store::{MasterKey, Sealer, Store};

use crate::config::NodeConfig;
use crate::keys;

pub const ENV: &str = "ENTENTE_MASTER_KEY";

/// The current key and the retired ones a rotation has not finished with.
#[derive(Debug)]
pub struct MasterKeys {
    pub current: MasterKey,
    pub retired: Vec<MasterKey>,
}

impl MasterKeys {
    pub fn sealer(&self) -> Result<Sealer> {
        Sealer::new(&self.current, &self.retired).context("cannot prepare the master key")
    }
}

/// The node's master keys, from the environment or the key file.
pub fn load(cfg: &NodeConfig) -> Result<MasterKeys> {
    if let Ok(text) = std::env::var(ENV) {
        let current = MasterKey::from_hex(&text).context(ENV)?;
        return Ok(MasterKeys {
            current,
            retired: vec![],
        });
    }
    let path = cfg.master_key_file();
    refuse_inside(&path, &cfg.data_dir())?;
    read_file(&path)
}

/// A key inside the data dir would travel with every copy of it.
fn refuse_inside(key: &Path, data_dir: &Path) -> Result<()> {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if canonical(key).starts_with(canonical(data_dir)) {
        bail!(
            "the master key {} is inside the data dir {}: keep it elsewhere (node.master_key_file), or a copy of the data dir carries it",
            key.display(),
            data_dir.display()
        );
    }
    Ok(())
}

pub fn read_file(path: &Path) -> Result<MasterKeys> {
    keys::refuse_if_readable_by_others(path)?;
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the master key {} (`entente init` creates it; or set {ENV})",
            path.display()
        )
    })?;
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        found.push(MasterKey::from_hex(line).with_context(|| format!("{} line {}", path.display(), n + 1))?);
    }
    let mut keys = found.into_iter();
    let Some(current) = keys.next() else {
        bail!("{} holds no master key", path.display());
    };
    Ok(MasterKeys {
        current,
        retired: keys.collect(),
    })
}

/// Replaces the key file in one rename, so a crash leaves the old file or the new one.
fn write_file(path: &Path, keys: &MasterKeys) -> Result<()> {
    let mut text = String::from(
        "# Entente node master key: it seals the device and session keys in the data dir.\n\
         # Keep it outside the data dir and back it up apart from it. First line: current key;\n\
         # later lines: retired keys a rotation still reads.\n",
    );
    for key in std::iter::once(&keys.current).chain(&keys.retired) {
        text.push_str(&key.to_hex());
        text.push('\n');
    }
    let tmp = path.with_extension("key.new");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes a new master key file for `entente init`; fails if one exists.
pub fn create(path: &Path) -> Result<()> {
    if path.exists() {
        bail!("refusing to overwrite the master key {}", path.display());
    }
    write_file(
        path,
        &MasterKeys {
            current: MasterKey::generate()?,
            retired: vec![],
        },
    )
}

#[derive(Debug)]
pub struct Rotated {
    pub from: String,
    pub to: String,
    pub resealed: u64,
}

/// `entente keys rotate`: a new master key, every sealed row re-sealed under it, the old
/// key dropped. The node must be stopped (the database lock says so). Each step is safe
/// to interrupt: the file holds both keys until every row is under the new one.
pub fn rotate(cfg: &NodeConfig) -> Result<Rotated> {
    if std::env::var_os(ENV).is_some() {
        bail!(
            "the master key comes from {ENV}: rotation writes node.master_key_file, so unset {ENV} and use the file"
        );
    }
    let path: PathBuf = cfg.master_key_file();
    refuse_inside(&path, &cfg.data_dir())?;
    let old = read_file(&path)?;
    let from = old.current.id().to_string();
    let mut retired = vec![old.current];
    retired.extend(old.retired);
    let both = MasterKeys {
        current: MasterKey::generate()?,
        retired,
    };
    let to = both.current.id().to_string();
    write_file(&path, &both)?;
    let store = Store::open_sealed(&cfg.data_dir(), entente_lns::tables::SEALED, both.sealer()?)
        .with_context(|| format!("cannot open the database in {}", cfg.data_dir().display()))?;
    let resealed = store
        .reseal(entente_lns::tables::SEALED)
        .context("cannot re-seal the stored keys")?;
    store.close()?;
    write_file(
        &path,
        &MasterKeys {
            current: both.current,
            retired: vec![],
        },
    )?;
    Ok(Rotated { from, to, resealed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_file_is_private_checked_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        create(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let first = read_file(&path).unwrap().current.id();
        assert!(create(&path).is_err());
        assert_eq!(read_file(&path).unwrap().current.id(), first);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_file(&path).unwrap_err().to_string().contains("chmod 600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "# nothing\n").unwrap();
        assert!(
            read_file(&path)
                .unwrap_err()
                .to_string()
                .contains("holds no master key")
        );
        std::fs::write(&path, "abcd\n").unwrap();
        let e = format!("{:#}", read_file(&path).err().unwrap());
        assert!(e.contains("line 1") && e.contains("64 hexadecimal"), "{e}");
    }

    #[test]
    fn a_key_inside_the_data_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let e = refuse_inside(&data.join("master.key"), &data)
            .unwrap_err()
            .to_string();
        assert!(e.contains("inside the data dir"), "{e}");
        refuse_inside(&dir.path().join("master.key"), &data).unwrap();
    }
}
