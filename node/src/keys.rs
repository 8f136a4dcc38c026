//! The node's ed25519 identity and the operator API token, both created once by
//! `entente init` with mode 0600 and never overwritten.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    Ok(b)
}

/// Writes `contents` to a new file with mode 0600; fails if the file exists.
pub fn write_secret(path: &Path, contents: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

pub fn generate_node_key() -> Result<(SigningKey, String)> {
    let key = SigningKey::from_bytes(&random::<32>()?);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .context("cannot encode the node key")?;
    Ok((key, pem.to_string()))
}

pub fn generate_token() -> Result<String> {
    Ok(hex::encode(random::<32>()?))
}

/// A secret others can read is no longer one: refused, so the operator notices.
pub(crate) fn refuse_if_readable_by_others(path: &Path) -> Result<()> {
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        bail!(
            "{} can be read by other users (mode {:o}); run chmod 600 on it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    Ok(())
}

/// Creates the data directory readable by the node's user only, or tightens an existing
/// one: it holds every device's keys.
pub fn private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private (chmod 700)", path.display()))?;
        tracing::info!(dir = %path.display(), "data directory made private (mode 700)");
    }
    Ok(())
}

pub fn load_node_key(path: &Path) -> Result<SigningKey> {
    refuse_if_readable_by_others(path)?;
    let pem = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the node key {} (run `entente init` first)",
            path.display()
        )
    })?;
    SigningKey::from_pkcs8_pem(&pem)
        .map_err(|e| anyhow::anyhow!("{}: not an ed25519 PKCS#8 PEM key: {e}", path.display()))
}

pub fn load_token(path: &Path) -> Result<String> {
    refuse_if_readable_by_others(path)?;
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the operator token {}", path.display()))?;
    let token = token.trim().to_string();
    if token.len() < 32 {
        bail!(
            "{}: the operator token must be at least 32 characters",
            path.display()
        );
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips_and_files_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let (key, pem) = generate_node_key().unwrap();
        write_secret(&path, pem.as_bytes()).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_node_key(&path).unwrap().verifying_key(), key.verifying_key());
        assert!(write_secret(&path, b"other").is_err());
        assert_eq!(load_node_key(&path).unwrap().verifying_key(), key.verifying_key());
        let t1 = generate_token().unwrap();
        assert_eq!(t1.len(), 64);
        assert_ne!(t1, generate_token().unwrap());
    }

    #[test]
    fn a_key_or_token_others_can_read_is_refused() {
        use std::fs::Permissions;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("node.key");
        write_secret(&key, generate_node_key().unwrap().1.as_bytes()).unwrap();
        let token = dir.path().join("operator.token");
        write_secret(&token, generate_token().unwrap().as_bytes()).unwrap();
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&key, Permissions::from_mode(mode)).unwrap();
            std::fs::set_permissions(&token, Permissions::from_mode(mode)).unwrap();
            let e = load_node_key(&key).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{e}");
            assert!(load_token(&token).is_err());
        }
        std::fs::set_permissions(&key, Permissions::from_mode(0o400)).unwrap();
        assert!(load_node_key(&key).is_ok());
    }

    #[test]
    fn the_data_dir_is_created_private_and_an_open_one_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/data");
        private_dir(&data).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
    }

    #[test]
    fn garbage_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        write_secret(&path, b"not a key").unwrap();
        assert!(load_node_key(&path).unwrap_err().to_string().contains("PKCS#8"));
    }
}
