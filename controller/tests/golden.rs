//! Golden tests of `translate`: every `testdata/translate/<case>/in.yaml` (Kubernetes manifests,
//! optional `args.txt` with controller flags, one per line) is translated and compared with
//! `out.yaml` (the Kong config) and `problems.yaml` (the problems). `UPDATE_GOLDEN=1` rewrites them.
//! Every expected config must also pass `proxy_config::validate`, and translation must not depend
//! on the order in which objects arrive.

use std::path::{Path, PathBuf};

use clap::Parser;
use controller::files::{parse_documents, Loaded};
use controller::{translate, Settings};

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/translate");
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.join("in.yaml").exists()).collect();
    dirs.sort();
    dirs
}

fn settings(dir: &Path) -> Settings {
    let mut args = vec!["sluice-controller".to_string()];
    if let Ok(text) = std::fs::read_to_string(dir.join("args.txt")) {
        args.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string));
    }
    Settings::try_parse_from(args).unwrap()
}

fn load(dir: &Path) -> Loaded {
    let text = std::fs::read_to_string(dir.join("in.yaml")).unwrap();
    let mut loaded = Loaded::default();
    parse_documents(&text, "in.yaml", &mut loaded);
    assert!(loaded.problems.is_empty(), "{}: in.yaml does not parse: {:#?}", dir.display(), loaded.problems);
    loaded.snapshot.sort();
    loaded
}

/// Compares (or rewrites) one golden file; returns a failure description.
fn check(path: &Path, actual: &str, update: bool) -> Option<String> {
    if update {
        std::fs::write(path, actual).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    (expected != actual).then(|| format!("{} differs:\n--- expected\n{expected}\n--- actual\n{actual}", path.display()))
}

#[test]
fn golden() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let cases = cases();
    assert!(cases.len() >= 25, "expected at least 25 golden cases, found {}", cases.len());
    let mut failures = Vec::new();
    for dir in &cases {
        let loaded = load(dir);
        let settings = settings(dir);
        let t = translate(&loaded.snapshot, &settings);
        if let Err(e) = proxy_config::validate(&t.config) {
            failures.push(format!("{}: translated config does not validate: {e}", dir.display()));
        }
        let out = serde_yaml_ng::to_string(&t.config).unwrap();
        let problems = serde_yaml_ng::to_string(&t.problems).unwrap();
        failures.extend(check(&dir.join("out.yaml"), &out, update));
        failures.extend(check(&dir.join("problems.yaml"), &problems, update));

        // The expected file itself must be a config the proxy accepts.
        let expected = std::fs::read_to_string(dir.join("out.yaml")).unwrap();
        if let Err(e) = proxy_config::parse_and_validate(&expected) {
            failures.push(format!("{}: out.yaml is not a valid config: {e}", dir.display()));
        }

        // Arrival order must not matter.
        let mut reversed = loaded.snapshot.clone();
        reversed.ingresses.reverse();
        reversed.services.reverse();
        reversed.endpoint_slices.reverse();
        reversed.secrets.reverse();
        if translate(&reversed, &settings) != t {
            failures.push(format!("{}: translation depends on object order", dir.display()));
        }
    }
    assert!(failures.is_empty(), "{} golden failure(s):\n{}", failures.len(), failures.join("\n\n"));
}
