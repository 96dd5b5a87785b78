//! Hot reload: a change under a function's code folder (other than
//! `node_modules` and `__pycache__`) replaces its processes. An invocation
//! in flight finishes on its process, which is then retired; the next runs
//! the new code; WebSocket connections are not touched.

use super::pool::Function;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the code folder is looked at.
const EVERY: Duration = Duration::from_millis(400);

/// Folders whose changes are not the function's code.
const SKIPPED: [&str; 3] = ["node_modules", "__pycache__", ".git"];

/// The newest modification time under `dir`, and how many files it holds
/// (so a deleted file counts as a change too).
fn fingerprint(dir: &Path) -> (Option<SystemTime>, usize) {
    let mut newest = None;
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                let skip = path
                    .file_name()
                    .is_some_and(|n| SKIPPED.iter().any(|s| n == *s));
                if !skip {
                    stack.push(path);
                }
                continue;
            }
            files += 1;
            if let Ok(m) = meta.modified() {
                newest = newest.max(Some(m));
            }
        }
    }
    (newest, files)
}

/// Watches `f`'s code folder until the process ends.
pub async fn reload_on_change(f: Arc<Function>) {
    let dir = f.code_dir().to_path_buf();
    let look = |dir: std::path::PathBuf| tokio::task::spawn_blocking(move || fingerprint(&dir));
    let Ok(mut seen) = look(dir.clone()).await else {
        return;
    };
    loop {
        tokio::time::sleep(EVERY).await;
        let Ok(now) = look(dir.clone()).await else {
            return;
        };
        if now != seen {
            seen = now;
            tracing::info!(function = %f.logical_id(), "code changed under {}: the next invocation runs it", dir.display());
            f.code_changed().await;
        }
    }
}
