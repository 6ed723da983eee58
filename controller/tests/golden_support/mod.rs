//! What the golden tests share: finding the cases under `testdata/translate/`, the controller flags
//! of a case (`args.txt`, one per line), loading its `in.yaml` into a snapshot, and comparing (or,
//! with `UPDATE_GOLDEN=1`, rewriting) a golden file.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use clap::Parser;
use controller::files::{parse_documents, Loaded};
use controller::Settings;

/// The case directories whose name passes `keep`, sorted.
pub fn cases(keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/translate");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("in.yaml").exists())
        .filter(|p| keep(p.file_name().and_then(|n| n.to_str()).unwrap_or("")))
        .collect();
    dirs.sort();
    dirs
}

pub fn settings(dir: &Path) -> Settings {
    let mut args = vec!["sluice-controller".to_string()];
    if let Ok(text) = std::fs::read_to_string(dir.join("args.txt")) {
        args.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string));
    }
    Settings::try_parse_from(args).unwrap()
}

pub fn load(dir: &Path) -> Loaded {
    let text = std::fs::read_to_string(dir.join("in.yaml")).unwrap();
    let mut loaded = Loaded::default();
    parse_documents(&text, "in.yaml", &mut loaded);
    assert!(loaded.problems.is_empty(), "{}: in.yaml does not parse: {:#?}", dir.display(), loaded.problems);
    loaded.snapshot.sort();
    loaded
}

/// Compares (or rewrites) one golden file; returns a failure description.
pub fn check(path: &Path, actual: &str, update: bool) -> Option<String> {
    if update {
        std::fs::write(path, actual).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    (expected != actual).then(|| format!("{} differs:\n--- expected\n{expected}\n--- actual\n{actual}", path.display()))
}
