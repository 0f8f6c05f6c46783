//! Collecting diagnostics while validating: [`Src`] knows where a value came from (file, text,
//! path) and turns a path into a position only when something is reported, and [`Report`]
//! gathers every error and warning of the run, capped per file so a broken 10,000-line list
//! cannot flood the terminal (or cost one re-parse per line).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::config::error::{Diagnostic, Problem, Severity};
use crate::config::yaml::{self, Doc, Pos, Seg, YamlError};

/// Diagnostics of one severity shown per file; the rest are counted.
const MAX_PER_FILE: usize = 100;

/// A node of a file: the file as displayed, the YAML it sits in (the whole file or one rule's
/// lines of it) and its path in that YAML.
#[derive(Clone, Debug)]
pub(crate) struct Src<'a> {
    pub file: &'a Path,
    pub doc: Doc<'a>,
    pub base: Vec<Seg>,
}

impl<'a> Src<'a> {
    pub fn whole(file: &'a Path, text: &'a str) -> Src<'a> {
        Src {
            file,
            doc: Doc::whole(text),
            base: Vec::new(),
        }
    }

    /// The node at `rel` below this one.
    pub fn child(&self, rel: &[Seg]) -> Src<'a> {
        let mut base = self.base.clone();
        base.extend_from_slice(rel);
        Src {
            file: self.file,
            doc: self.doc,
            base,
        }
    }

    /// Position of the node at `rel`, or of its nearest ancestor that exists (a missing key is
    /// reported where it should have been written).
    pub fn pos(&self, rel: &[Seg]) -> Pos {
        let mut path = self.base.clone();
        path.extend_from_slice(rel);
        loop {
            if let Some(pos) = yaml::locate(self.doc, &path) {
                return pos;
            }
            if path.pop().is_none() {
                return Pos {
                    line: self.doc.line_offset + 1,
                    column: 1,
                };
            }
        }
    }
}

#[derive(Default)]
struct Shown {
    shown: usize,
    hidden: usize,
}

/// Every diagnostic of one load.
#[derive(Default)]
pub(crate) struct Report {
    diagnostics: Vec<Diagnostic>,
    per_file: HashMap<(PathBuf, Severity), Shown>,
}

impl Report {
    pub fn error(&mut self, src: &Src<'_>, rel: &[Seg], problem: Problem) {
        self.push(src.file, Severity::Error, || src.pos(rel), problem);
    }

    pub fn warn(&mut self, src: &Src<'_>, rel: &[Seg], problem: Problem) {
        self.push(src.file, Severity::Warning, || src.pos(rel), problem);
    }

    /// An error whose position is already known (file-level problems use [`Pos::START`]).
    pub fn error_at(&mut self, file: &Path, pos: Pos, problem: Problem) {
        self.push(file, Severity::Error, || pos, problem);
    }

    pub fn warn_at(&mut self, file: &Path, pos: Pos, problem: Problem) {
        self.push(file, Severity::Warning, || pos, problem);
    }

    /// Structural errors from [`yaml::collect`] or a parse, positioned by serde_yaml.
    pub fn yaml(&mut self, src: &Src<'_>, errors: Vec<YamlError>) {
        for e in errors {
            let pos = e.pos;
            self.push(
                src.file,
                Severity::Error,
                || pos.unwrap_or_else(|| src.pos(&[])),
                Problem::from_yaml(e.message),
            );
        }
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    fn push(
        &mut self,
        file: &Path,
        severity: Severity,
        pos: impl FnOnce() -> Pos,
        problem: Problem,
    ) {
        let count = self
            .per_file
            .entry((file.to_path_buf(), severity))
            .or_default();
        if count.shown >= MAX_PER_FILE {
            count.hidden += 1;
            return;
        }
        count.shown += 1;
        let pos = pos();
        self.diagnostics.push(Diagnostic {
            file: file.to_path_buf(),
            line: pos.line,
            column: pos.column,
            message: problem.to_string(),
            severity,
        });
    }

    /// Errors, then warnings, each sorted by file and position, with a "more not shown" line
    /// for every file that hit the cap.
    pub fn finish(mut self) -> Vec<Diagnostic> {
        for ((file, severity), count) in &self.per_file {
            if count.hidden > 0 {
                self.diagnostics.push(Diagnostic {
                    file: file.clone(),
                    line: u32::MAX,
                    column: 1,
                    message: Problem::TooMany {
                        what: match severity {
                            Severity::Error => "errors",
                            Severity::Warning => "warnings",
                        },
                        hidden: count.hidden,
                    }
                    .to_string(),
                    severity: *severity,
                });
            }
        }
        self.diagnostics.sort_by(|a, b| {
            (a.severity, &a.file, a.line, a.column).cmp(&(b.severity, &b.file, b.line, b.column))
        });
        for d in &mut self.diagnostics {
            if d.line == u32::MAX {
                d.line = 1;
            }
        }
        self.diagnostics
    }
}
