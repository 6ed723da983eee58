//! Golden tests of `translate`: every `testdata/translate/<case>/in.yaml` (Kubernetes manifests,
//! optional `args.txt` with controller flags, one per line) is translated and compared with
//! `out.yaml` (the Kong config) and `problems.yaml` (the problems). `UPDATE_GOLDEN=1` rewrites them.
//! Every expected config must also pass `proxy_config::validate`, and translation must not depend
//! on the order in which objects arrive.

mod golden_support;

use controller::translate;
use golden_support::{cases, check, load, settings};

#[test]
fn golden() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let cases = cases(|_| true);
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
