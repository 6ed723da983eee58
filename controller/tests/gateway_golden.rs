//! Golden tests of the Gateway API translation and statuses: every
//! `testdata/translate/{gateway,grpcroute,httproute}-*/in.yaml` is translated and compared with
//! `out.yaml` (Kong config), `problems.yaml` and `status.yaml` (the statuses the controller would
//! write, before addresses and timestamps). `UPDATE_GOLDEN=1` rewrites the files of these cases
//! only. `tests/golden.rs` also runs these directories (config and problems).

use std::path::{Path, PathBuf};

use clap::Parser;
use controller::files::{parse_documents, Loaded};
use controller::translate::gateway::analyze;
use controller::{translate, Settings};

const PREFIXES: [&str; 3] = ["gateway-", "grpcroute-", "httproute-"];

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/translate");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("in.yaml").exists())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            PREFIXES.iter().any(|x| name.starts_with(x))
        })
        .collect();
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

fn check(path: &Path, actual: &str, update: bool) -> Option<String> {
    if update {
        std::fs::write(path, actual).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    (expected != actual).then(|| format!("{} differs:\n--- expected\n{expected}\n--- actual\n{actual}", path.display()))
}

#[test]
fn gateway_golden() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let cases = cases();
    assert!(cases.len() >= 18, "expected at least 18 Gateway API golden cases, found {}", cases.len());
    let mut failures = Vec::new();
    for dir in &cases {
        let loaded = load(dir);
        let settings = settings(dir);
        let t = translate(&loaded.snapshot, &settings);
        let analysis = analyze(&loaded.snapshot, &settings);
        if let Err(e) = proxy_config::validate(&t.config) {
            failures.push(format!("{}: translated config does not validate: {e}", dir.display()));
        }
        failures.extend(check(&dir.join("out.yaml"), &serde_yaml_ng::to_string(&t.config).unwrap(), update));
        failures.extend(check(&dir.join("problems.yaml"), &serde_yaml_ng::to_string(&t.problems).unwrap(), update));
        failures.extend(check(&dir.join("status.yaml"), &serde_yaml_ng::to_string(&analysis).unwrap(), update));

        // Arrival order must not matter.
        let mut reversed = loaded.snapshot.clone();
        reversed.services.reverse();
        reversed.endpoint_slices.reverse();
        reversed.gateway_classes.reverse();
        reversed.gateways.reverse();
        reversed.grpc_routes.reverse();
        reversed.http_routes.reverse();
        reversed.reference_grants.reverse();
        if translate(&reversed, &settings) != t || analyze(&reversed, &settings) != analysis {
            failures.push(format!("{}: translation depends on object order", dir.display()));
        }
    }
    assert!(failures.is_empty(), "{} golden failure(s):\n{}", failures.len(), failures.join("\n\n"));
}
