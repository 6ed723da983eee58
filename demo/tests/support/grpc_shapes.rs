//! What `demo/python/grpc_shapes.py` prints when all four call shapes work, shared by the demo's
//! own grpcio test and the proxy's grpcio test (each includes this file with `#[path]`).

use std::process::Output;

/// Asserts the script exited successfully and printed one ok line per call shape.
pub fn assert_all_shapes(output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "grpc_shapes.py failed ({:?})\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "unary: ok (hello python)",
            "server-streaming: ok (1000 replies)",
            "client-streaming: ok (1000 messages)",
            "bidi-streaming: ok (1000 messages)",
            "all shapes ok",
        ]
    );
}
