use super::*;

const GOOD: &str = r#"syntax = "proto3";
package demo;
import "google/api/annotations.proto";
message Req { string id = 1; Inner inner = 2; }
message Inner { int64 n = 1; }
message Resp { string id = 1; }
service Svc {
  rpc Get(Req) returns (Resp) {
    option (google.api.http) = { get: "/v1/{id}/{inner.n}" additional_bindings { post: "/v1/x" body: "*" } };
  }
}
"#;

fn text(text: &str) -> Result<Api, CompileError> {
    compile(ProtoSource::Text { name: "demo.proto", text })
}

#[test]
fn bindings_with_nested_variables_and_additional_bindings() {
    let api = text(GOOD).unwrap();
    let forms: Vec<_> = api.bindings.iter().map(|b| (b.http_method, b.grpc_path.as_str(), b.variables.len())).collect();
    assert_eq!(forms, [("GET", "/demo.Svc/Get", 2), ("POST", "/demo.Svc/Get", 0)]);
    assert_eq!(api.bindings[1].body, BodyRule::Whole);
}

#[test]
fn a_proto_that_does_not_compile_names_file_and_line() {
    let bad = GOOD.replace("Inner inner = 2;", "Missing inner = 2;");
    match text(&bad).unwrap_err() {
        CompileError::Proto { file, line, message, .. } => {
            assert_eq!((file.as_str(), line), ("demo.proto", 4));
            assert!(message.contains("Missing"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rule_naming_a_missing_field_names_file_line_and_field() {
    let bad = GOOD.replace("{inner.n}", "{inner.m}");
    let e = text(&bad).unwrap_err();
    assert!(matches!(&e, CompileError::Rule { line: 8, .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with("demo.proto:8: rpc demo.Svc.Get: "), "{msg}");
    assert!(msg.contains("field 'inner.m' not found: demo.Inner has no field 'm'"), "{msg}");
    let bad = GOOD.replace("body: \"*\"", "body: \"nope\"");
    let msg = text(&bad).unwrap_err().to_string();
    assert!(msg.contains("additional_bindings: body field 'nope' not found in demo.Req"), "{msg}");
}

#[test]
fn descriptor_sets_and_missing_files() {
    let missing = compile(ProtoSource::Path("/nonexistent/api.proto")).unwrap_err();
    assert!(matches!(missing, CompileError::File { .. }), "{missing:?}");
    assert!(matches!(compile(ProtoSource::DescriptorSet(b"\xff\xff")), Err(CompileError::DescriptorSet(_))));
    let no_rules: String = GOOD.lines().filter(|l| !l.contains("google.api.http")).map(|l| format!("{l}\n")).collect();
    assert_eq!(text(&no_rules).unwrap_err(), CompileError::NoRules);
}
