//! A fresh directory under the system temp dir, removed on drop (data dirs of test relays).

use std::path::PathBuf;

/// `<tmp>/llm-relay-<name>-<pid>-<random>`, created empty; removed with its contents on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Create the directory (any leftover of the same name is removed first).
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "llm-relay-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
