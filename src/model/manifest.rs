//! `manifest.json` written by `models/export.py`: provenance and file hashes.

use std::path::Path;

use serde::Deserialize;

use super::ModelError;
use super::contract::IMAGE_SIZE;

#[derive(Debug, Clone, Deserialize)]
pub struct Provenance {
    /// "official_checkpoint" or "random_init".
    pub kind: String,
    pub meaningful_masks: bool,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub checkpoint_sha256: Option<String>,
    /// Where the checkpoint was downloaded from, when it was.
    #[serde(default)]
    pub checkpoint_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ModelFileInfo {
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub model: String,
    pub provenance: Provenance,
    pub image_size: usize,
    pub opset: u32,
    pub files: std::collections::BTreeMap<String, ModelFileInfo>,
}

impl Manifest {
    pub fn load(model_dir: &Path) -> Result<Self, ModelError> {
        let path = model_dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|io| ModelError::Io { path: path.display().to_string(), io })?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| ModelError::Manifest { path: path.display().to_string(), reason: e.to_string() })?;
        if manifest.image_size != IMAGE_SIZE {
            return Err(ModelError::Manifest {
                path: path.display().to_string(),
                reason: format!("image_size {} is not {IMAGE_SIZE}", manifest.image_size),
            });
        }
        Ok(manifest)
    }

    /// Random-init seed or checkpoint hash, for GetModelInfo and the startup log.
    pub fn provenance_detail(&self) -> String {
        match (&self.provenance.checkpoint_sha256, self.provenance.seed) {
            (Some(sha), _) => format!("checkpoint sha256 {sha}"),
            (None, Some(seed)) => format!("random init, seed {seed}"),
            (None, None) => String::new(),
        }
    }

    /// Verifies the files this server will read (`needed`) against their recorded sha256, so a
    /// half-written or swapped export is refused at startup rather than served. Other listed
    /// files (an int8 or fp16 encoder the chosen precision never reads) may be missing.
    pub fn verify(&self, model_dir: &Path, needed: &[&str]) -> Result<(), ModelError> {
        use sha2::{Digest, Sha256};
        for &name in needed {
            let path = model_dir.join(name);
            if !path.is_file() {
                return Err(ModelError::missing_file(&path));
            }
            let info = self.files.get(name).ok_or_else(|| ModelError::Manifest {
                path: model_dir.join("manifest.json").display().to_string(),
                reason: format!("{name} is not listed; export it with models/export.py so that its hash is recorded"),
            })?;
            let bytes = std::fs::read(&path).map_err(|io| ModelError::Io { path: path.display().to_string(), io })?;
            let actual = format!("{:x}", Sha256::digest(&bytes));
            if actual != info.sha256 {
                return Err(ModelError::Manifest {
                    path: path.display().to_string(),
                    reason: format!("sha256 {actual} does not match the manifest's {}", info.sha256),
                });
            }
        }
        Ok(())
    }

    /// Files the manifest lists that are not in `model_dir`.
    pub fn missing(&self, model_dir: &Path) -> Vec<&str> {
        self.files.keys().filter(|name| !model_dir.join(name.as_str()).is_file()).map(String::as_str).collect()
    }
}
