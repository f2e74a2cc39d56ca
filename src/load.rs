//! The pure pipeline's front half: files → raw objects → validated model.

use std::path::{Path, PathBuf};

use crate::diag::Diagnostic;
use crate::manifest::{self, SourceFile};
use crate::model::Model;

#[derive(Debug)]
pub struct Loaded {
    pub model: Model,
    pub problems: Vec<Diagnostic>,
    pub files: usize,
    pub objects: usize,
}

/// How a file under `dir` is named in messages: the directory as the user gave it,
/// joined with the path below it.
pub fn display_under(dir: &Path, rel: &str) -> String {
    let joined = if rel == "." {
        dir.display().to_string()
    } else {
        dir.join(rel).display().to_string()
    };
    joined
        .strip_prefix("./")
        .map(str::to_owned)
        .unwrap_or(joined)
}

/// Loads every manifest below `dir`. Only a missing or unreadable directory is an `Err`;
/// everything else wrong is in `problems`.
pub fn load_dir(dir: &Path) -> std::io::Result<Loaded> {
    let (mut files, problems) = manifest::scan_dir(dir)?;
    for f in &mut files {
        f.display = display_under(dir, &f.display);
    }
    let problems = problems
        .into_iter()
        .map(|mut d| {
            d.file = display_under(dir, &d.file);
            d
        })
        .collect();
    Ok(load_files(&files, problems))
}

/// Loads the given files, as `netpold check FILE…` does.
pub fn load_paths(paths: &[PathBuf]) -> Loaded {
    let files: Vec<SourceFile> = paths
        .iter()
        .map(|p| SourceFile {
            display: p.display().to_string(),
            path: p.clone(),
        })
        .collect();
    load_files(&files, Vec::new())
}

fn load_files(files: &[SourceFile], mut problems: Vec<Diagnostic>) -> Loaded {
    let mut raw = Vec::new();
    for file in files {
        raw.extend(manifest::read_file(file, &mut problems));
    }
    let (model, model_problems) = Model::build(&raw);
    problems.extend(model_problems);
    // By file, then position: the order a user reads and fixes them in.
    problems.sort_by(|a, b| (&a.file, a.pos).cmp(&(&b.file, b.pos)));
    Loaded {
        model,
        problems,
        files: files.len(),
        objects: raw.len(),
    }
}
