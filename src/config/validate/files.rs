//! Finding and reading the files a configuration reaches. Directory listings skip dotfiles,
//! which also skips the `..data` and `..2026_…` entries of Kubernetes ConfigMap mounts (the
//! visible names are symlinks into them, followed like files).

use std::io;
use std::path::{Path, PathBuf};

use super::report::Report;
use crate::config::error::Problem;
use crate::config::yaml::Pos;

/// `*.yaml` and `*.yml` files of `dir` (following symlinks), sorted by name, without dotfiles.
pub fn list_yaml(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if !name.starts_with('.') && is_yaml && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// A file name without its `.yaml`/`.yml` extension.
pub fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads a file the configuration needs, recording it for the reload watcher; a failure is
/// reported at the top of the file.
pub fn read(
    report: &mut Report,
    files: &mut Vec<PathBuf>,
    path: &Path,
    what: &'static str,
) -> Option<String> {
    files.push(path.to_path_buf());
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(err) => {
            report.error_at(
                path,
                Pos::START,
                Problem::Io {
                    what,
                    err: err.to_string(),
                },
            );
            None
        }
    }
}

/// `base.join(raw)` with `.` components dropped, so paths print as the user would type them.
pub fn resolve(base: &Path, raw: &str) -> PathBuf {
    base.join(raw).components().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_yaml_files_without_dotfiles() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.yaml", "a.yml", ".hidden.yaml", "notes.txt", "c.yaml~"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        std::fs::create_dir(dir.path().join("..2026_01_01")).unwrap();
        std::fs::create_dir(dir.path().join("d.yaml")).unwrap();
        let names: Vec<_> = list_yaml(dir.path())
            .unwrap()
            .iter()
            .map(|p| stem(p))
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn resolves_relative_to_the_config() {
        assert_eq!(
            resolve(Path::new("config"), "./policies/"),
            PathBuf::from("config/policies")
        );
        assert_eq!(
            resolve(Path::new("config"), "/etc/x"),
            PathBuf::from("/etc/x")
        );
    }
}
