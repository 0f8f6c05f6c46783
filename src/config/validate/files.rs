//! Finding and reading the files a configuration reaches. Directory listings skip dotfiles,
//! which also skips the `..data` and `..2026_…` entries of Kubernetes ConfigMap mounts (the
//! visible names are symlinks into them, followed like files).
//!
//! [`Files`] is where they come from: the disk, or texts held in memory
//! ([`crate::config::load_from_strings`], which the fuzzer drives). Either way it records every
//! path read, for the reload watcher.

use std::collections::BTreeMap;
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

/// The source of a configuration's files, and the paths read from it so far.
#[derive(Debug, Default)]
pub struct Files {
    /// Every file read or referenced, in order (the reload watcher's list).
    pub read: Vec<PathBuf>,
    /// `Some`: the only files there are, by [`memory_key`]; a folder exists when a file is in
    /// it. `None`: the disk.
    memory: Option<BTreeMap<PathBuf, String>>,
}

impl Files {
    /// Files read from the disk.
    pub fn disk() -> Files {
        Files::default()
    }

    /// Files held in memory as (path, text); nothing is read from the disk.
    pub fn memory<'a>(tree: impl IntoIterator<Item = (&'a str, &'a str)>) -> Files {
        let map = tree
            .into_iter()
            .map(|(p, t)| (memory_key(Path::new(p)), t.to_owned()))
            .collect();
        Files {
            read: Vec::new(),
            memory: Some(map),
        }
    }

    pub fn in_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// Whether `path` is a file (following symlinks).
    pub fn is_file(&self, path: &Path) -> bool {
        match &self.memory {
            Some(m) => m.contains_key(&memory_key(path)),
            None => path.is_file(),
        }
    }

    /// [`list_yaml`] of this source.
    pub fn list_yaml(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let Some(m) = &self.memory else {
            return list_yaml(dir);
        };
        let dir = memory_key(dir);
        let mut out: Vec<PathBuf> = m
            .keys()
            .filter(|p| p.parent() == Some(&dir))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or(".");
                let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
                !name.starts_with('.') && is_yaml
            })
            .cloned()
            .collect();
        if out.is_empty() && !m.keys().any(|p| p.starts_with(&dir)) {
            return Err(io::ErrorKind::NotFound.into());
        }
        out.sort();
        Ok(out)
    }

    /// Reads a file the configuration needs, recording it for the reload watcher; a failure is
    /// reported at the top of the file.
    pub fn read(&mut self, report: &mut Report, path: &Path, what: &'static str) -> Option<String> {
        let Some(m) = &self.memory else {
            return read(report, &mut self.read, path, what);
        };
        self.read.push(path.to_path_buf());
        let text = m.get(&memory_key(path));
        if text.is_none() {
            let err = "not among the in-memory files".to_owned();
            report.error_at(path, Pos::START, Problem::Io { what, err });
        }
        text.cloned()
    }
}

/// A path as an in-memory file is known by: without `.` components, so `./policies/a.yaml`,
/// `policies/./a.yaml` and `policies/a.yaml` are one file.
fn memory_key(path: &Path) -> PathBuf {
    (path.components())
        .filter(|c| *c != std::path::Component::CurDir)
        .collect()
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
    fn in_memory_files_list_like_a_folder() {
        let files = Files::memory([
            ("egressd.yaml", ""),
            ("./policies/b.yaml", ""),
            ("policies/a.yml", ""),
            ("policies/.hidden.yaml", ""),
            ("policies/notes.txt", ""),
            ("policies/sub/c.yaml", ""),
        ]);
        let names: Vec<_> = files
            .list_yaml(Path::new("policies"))
            .unwrap()
            .iter()
            .map(|p| stem(p))
            .collect();
        assert_eq!(names, ["a", "b"]);
        let missing = files.list_yaml(Path::new("categories")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(files.is_file(Path::new("./egressd.yaml")));
        assert!(!files.is_file(Path::new("policies")));
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
