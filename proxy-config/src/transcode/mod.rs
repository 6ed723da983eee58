//! The grpc-gateway plugin's API description, compiled at config time: a `.proto` (a file, or
//! text the controller read from a ConfigMap or Secret) compiled in pure Rust by protox, or a
//! serialized `FileDescriptorSet`, then every method's `google.api.http` rule (and its
//! `additional_bindings`) resolved into [`Binding`]s whose fields are descriptors. Both the
//! controller (to put an Event on the KongPlugin) and the proxy (to build the plugin) compile
//! with this module, so they agree on what is an error; each error names the file, the line
//! and the field.

pub mod template;

use std::path::Path;

use miette::Diagnostic;
use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor, Value};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver, IncludeFileResolver};
use thiserror::Error;

pub use template::{PathTemplate, Segment, TemplateError};

/// googleapis' `google/api/{annotations,http}.proto`, shipped with sluice (protox bundles only
/// `google/protobuf/*`).
const GOOGLE_API: [(&str, &str); 2] = [
    ("google/api/annotations.proto", include_str!("../../proto/google/api/annotations.proto")),
    ("google/api/http.proto", include_str!("../../proto/google/api/http.proto")),
];

/// Where the API description comes from.
#[derive(Debug, Clone, Copy)]
pub enum ProtoSource<'a> {
    /// A `.proto` file on the proxy's disk (Kong's `proto`); imports resolve from its directory.
    Path(&'a str),
    /// `.proto` text named `name` (what the controller ships from a ConfigMap or Secret).
    Text { name: &'a str, text: &'a str },
    /// A serialized `FileDescriptorSet` with its imports (`protoc --include_imports`).
    DescriptorSet(&'a [u8]),
}

/// Why an API description cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CompileError {
    #[error("{file}:{line}:{column}: {message}")]
    Proto { file: String, line: usize, column: usize, message: String },
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("descriptor set: {0}")]
    DescriptorSet(String),
    #[error("{file}:{line}: rpc {method}: {message}")]
    Rule { file: String, line: usize, method: String, message: String },
    #[error("no rpc has a google.api.http option: nothing to transcode")]
    NoRules,
}

/// What carries the request body into the request message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRule {
    /// No body: fields come from the path and the query.
    None,
    /// `body: "*"`: the body is the request message (less the path's fields).
    Whole,
    /// `body: "field"`: the body is that field; other fields come from the path and query.
    Field(FieldDescriptor),
}

/// One HTTP binding of an rpc (its main rule or one of its `additional_bindings`).
#[derive(Debug, Clone)]
pub struct Binding {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub http_method: &'static str,
    pub template: PathTemplate,
    /// Per template variable, the field path it sets.
    pub variables: Vec<Vec<FieldDescriptor>>,
    pub body: BodyRule,
    /// `response_body`: the response field sent as the body instead of the whole message.
    pub response_body: Option<FieldDescriptor>,
    pub method: MethodDescriptor,
    /// The gRPC path: `/package.Service/Method`.
    pub grpc_path: String,
}

/// A compiled API: its bindings in declaration order.
#[derive(Debug, Clone)]
pub struct Api {
    pub bindings: Vec<Binding>,
}

/// Compiles `source` and resolves every `google.api.http` rule.
pub fn compile(source: ProtoSource<'_>) -> Result<Api, CompileError> {
    let pool = match source {
        ProtoSource::Path(path) => {
            let p = Path::new(path);
            let text = std::fs::read_to_string(p)
                .map_err(|e| CompileError::File { file: path.to_string(), message: e.to_string() })?;
            let name = p.file_name().map_or(path.to_string(), |n| n.to_string_lossy().into_owned());
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let mut chain = ChainFileResolver::new();
            chain.add(IncludeFileResolver::new(dir.to_path_buf()));
            compile_text(chain, &name, &text)?
        }
        ProtoSource::Text { name, text } => {
            let mut chain = ChainFileResolver::new();
            chain.add(Bundled(vec![(name.to_string(), text.to_string())]));
            compile_text(chain, name, text)?
        }
        ProtoSource::DescriptorSet(bytes) => {
            DescriptorPool::decode(bytes).map_err(|e| CompileError::DescriptorSet(e.to_string()))?
        }
    };
    bindings(&pool)
}

/// protox over `chain` plus the bundled google protos; a compile error in `name` gets its line.
fn compile_text(mut chain: ChainFileResolver, name: &str, text: &str) -> Result<DescriptorPool, CompileError> {
    chain.add(Bundled(GOOGLE_API.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect()));
    chain.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(chain);
    compiler.include_source_info(true).include_imports(true);
    if let Err(e) = compiler.open_file(name) {
        let file = e.file().unwrap_or(name).to_string();
        let offset = e.labels().and_then(|mut l| l.next()).map(|l| l.offset());
        let message = e.to_string();
        return Err(match offset {
            Some(off) if file == name => {
                let (line, column) = line_col(text, off);
                CompileError::Proto { file, line, column, message }
            }
            _ => CompileError::File { file, message },
        });
    }
    Ok(compiler.descriptor_pool())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// In-memory files by name.
struct Bundled(Vec<(String, String)>);

impl FileResolver for Bundled {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.0.iter().find(|(n, _)| n == name) {
            Some((n, t)) => File::from_source(n, t),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// Every method's bindings.
fn bindings(pool: &DescriptorPool) -> Result<Api, CompileError> {
    let Some(ext) = pool.get_extension_by_name("google.api.http") else {
        return Err(CompileError::NoRules);
    };
    let mut out = Vec::new();
    for service in pool.services() {
        for method in service.methods() {
            let options = method.options();
            if !options.has_extension(&ext) {
                continue;
            }
            let rule_error = |message: String| CompileError::Rule {
                file: method.parent_file().name().to_string(),
                line: method_line(&method),
                method: method.full_name().to_string(),
                message,
            };
            let rule = options.get_extension(&ext).into_owned();
            let Value::Message(rule) = rule else { continue };
            let mut rules = vec![(rule.clone(), "")];
            if let Some(Value::List(extra)) = rule.get_field_by_name("additional_bindings").map(|v| v.into_owned()) {
                rules.extend(extra.into_iter().filter_map(|r| match r {
                    Value::Message(m) => Some((m, "additional_bindings: ")),
                    _ => None,
                }));
            }
            for (rule, prefix) in rules {
                let b = binding(&method, &rule).map_err(|m| rule_error(format!("{prefix}{m}")))?;
                out.push(b);
            }
        }
    }
    if out.is_empty() {
        return Err(CompileError::NoRules);
    }
    Ok(Api { bindings: out })
}

fn binding(method: &MethodDescriptor, rule: &prost_reflect::DynamicMessage) -> Result<Binding, String> {
    let text = |name: &str| match rule.get_field_by_name(name).as_deref() {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let (http_method, path) =
        [("GET", "get"), ("PUT", "put"), ("POST", "post"), ("DELETE", "delete"), ("PATCH", "patch")]
            .into_iter()
            .find_map(|(m, f)| rule.has_field_by_name(f).then(|| (m, text(f))))
            .ok_or_else(|| {
                "the rule has no get, put, post, delete or patch pattern (custom is not supported)".to_string()
            })?;
    let template = PathTemplate::parse(&path).map_err(|e| e.to_string())?;
    let input = method.input();
    let variables = template
        .variables
        .iter()
        .map(|v| {
            let path = field_path(&input, v)?;
            match path.last() {
                Some(f) if f.is_list() || f.is_map() || matches!(f.kind(), Kind::Message(_)) => {
                    Err(format!("path variable '{v}' names field '{}', which is not a scalar", f.full_name()))
                }
                _ => Ok(path),
            }
        })
        .collect::<Result<Vec<_>, String>>()?;
    let body = match text("body").as_str() {
        "" => BodyRule::None,
        "*" => BodyRule::Whole,
        f => BodyRule::Field(top_field(&input, f, "body")?),
    };
    let response_body = match text("response_body").as_str() {
        "" => None,
        f => Some(top_field(&method.output(), f, "response_body")?),
    };
    let grpc_path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    Ok(Binding { http_method, template, variables, body, response_body, method: method.clone(), grpc_path })
}

/// A dotted field path in `msg`; every element but the last must be a singular message.
pub fn field_path(msg: &MessageDescriptor, path: &str) -> Result<Vec<FieldDescriptor>, String> {
    let mut out = Vec::new();
    let mut current = msg.clone();
    for (i, name) in path.split('.').enumerate() {
        let f = current
            .get_field_by_name(name)
            .or_else(|| current.get_field_by_json_name(name))
            .ok_or_else(|| format!("field '{path}' not found: {} has no field '{name}'", current.full_name()))?;
        if i + 1 < path.split('.').count() {
            match f.kind() {
                Kind::Message(m) if !f.is_list() && !f.is_map() => current = m,
                _ => return Err(format!("field '{path}': '{name}' is not a singular message")),
            }
        }
        out.push(f);
    }
    Ok(out)
}

fn top_field(msg: &MessageDescriptor, name: &str, what: &str) -> Result<FieldDescriptor, String> {
    msg.get_field_by_name(name).ok_or_else(|| format!("{what} field '{name}' not found in {}", msg.full_name()))
}

/// The line of a method's declaration (1-based), from the file's source info; 0 when the
/// descriptor carries none.
fn method_line(method: &MethodDescriptor) -> usize {
    let svc = method.parent_service();
    let path = [6, svc.index() as i32, 2, method.index() as i32];
    method
        .parent_file()
        .file_descriptor_proto()
        .source_code_info
        .as_ref()
        .and_then(|info| info.location.iter().find(|l| l.path == path))
        .and_then(|l| l.span.first())
        .map_or(0, |l| *l as usize + 1)
}

#[cfg(test)]
mod tests;
