//! Watches the config files on disk and asks for a reload when one of them changes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{RecursiveMode, Watcher};
use parking_lot::RwLock;
use tokio::sync::mpsc;

/// A running watcher; dropping it stops watching.
pub struct FileWatcher {
    watcher: notify::RecommendedWatcher,
    files: Arc<RwLock<HashSet<PathBuf>>>,
    dirs: HashSet<PathBuf>,
}

impl FileWatcher {
    /// Watches the directories of `files` (editors replace files by rename, so the file itself is not
    /// enough) and sends `"file"` on `tx` when one of `files` changes. `None` when watching is impossible.
    pub fn start(files: Vec<PathBuf>, tx: mpsc::Sender<&'static str>) -> Option<Self> {
        let set = Arc::new(RwLock::new(HashSet::new()));
        let watched = set.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if matches!(event.kind, notify::EventKind::Access(_)) {
                return;
            }
            let hit = {
                let files = watched.read();
                event.paths.iter().any(|p| files.contains(&absolute(p)))
            };
            if hit {
                let _ = tx.try_send("file");
            }
        };
        let watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch config files; reload with SIGHUP or the admin API");
                return None;
            }
        };
        let mut fw = FileWatcher {
            watcher,
            files: set,
            dirs: HashSet::new(),
        };
        fw.rewatch(files);
        Some(fw)
    }

    /// Follows a new set of files (after a reload changed the includes).
    pub fn rewatch(&mut self, files: Vec<PathBuf>) {
        let files: HashSet<PathBuf> = files.iter().map(|f| absolute(f)).collect();
        let dirs: HashSet<PathBuf> = files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        for gone in self.dirs.difference(&dirs) {
            let _ = self.watcher.unwatch(gone);
        }
        for new in dirs.difference(&self.dirs) {
            if let Err(e) = self.watcher.watch(new, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %new.display(), error = %e, "cannot watch directory");
            }
        }
        self.dirs = dirs;
        *self.files.write() = files;
    }
}

fn absolute(p: &Path) -> PathBuf {
    let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match (p.parent().and_then(|d| d.canonicalize().ok()), p.file_name()) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => p,
    }
}
