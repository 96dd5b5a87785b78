//! CloudFormation's text and intrinsic functions: YAML (with the short
//! tags) or JSON into one JSON value, and `Ref`, `Fn::GetAtt`, `Fn::Sub`
//! and `Fn::Join` evaluated to strings; what can go wrong reading a
//! template.

use serde_json::{Map, Value};
use std::collections::HashMap;

/// Why a template cannot be served; each names the resource and the fix.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TemplateError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("the template is neither YAML nor JSON: {0}")]
    Syntax(String),
    #[error("the template has no Resources section")]
    NoResources,
    #[error("no AWS::ApiGatewayV2::Api with ProtocolType WEBSOCKET in the template")]
    NoWebSocketApi,
    #[error("the template defines {0} WebSocket APIs ({1}); choose one with --api LOGICAL_ID")]
    SeveralApis(usize, String),
    #[error("--api {0}: no WebSocket API with that logical id")]
    UnknownApi(String),
    #[error("{resource}: {problem}")]
    Resource { resource: String, problem: String },
}

/// How names resolve: the template's parameters and `--function` mappings.
#[derive(Clone, Debug, Default)]
pub struct Names {
    /// Logical id → the name the local runner knows the function by.
    pub functions: HashMap<String, String>,
    /// Template parameters given a value (else their `Default`).
    pub parameters: HashMap<String, String>,
    pub region: String,
}

/// Parses a template's text (YAML with CloudFormation's short tags, or JSON).
pub fn parse_text(text: &str) -> Result<Value, TemplateError> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| TemplateError::Syntax(e.to_string()));
    }
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| TemplateError::Syntax(e.to_string()))?;
    Ok(yaml_to_json(yaml))
}

/// YAML to JSON, short tags to their long form: `!Ref X` → `{"Ref": X}`,
/// `!GetAtt A.B` → `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` → `{"Fn::Sub": s}`.
fn yaml_to_json(v: serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n).unwrap_or(Value::Null),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        other => serde_yaml_ng::to_string(&other)
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => {
            let tag = t.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = yaml_to_json(t.value);
            let (key, value) = match (name, inner) {
                ("Ref", v) => ("Ref".to_string(), v),
                ("Condition", v) => ("Condition".to_string(), v),
                ("GetAtt", Value::String(s)) => {
                    let (res, attr) = s.split_once('.').unwrap_or((&s, ""));
                    let parts = vec![Value::from(res), Value::from(attr)];
                    ("Fn::GetAtt".to_string(), Value::Array(parts))
                }
                (other, v) => (format!("Fn::{other}"), v),
            };
            Value::Object(Map::from_iter([(key, value)]))
        }
    }
}

/// Evaluates values through the intrinsic functions.
pub(super) struct Resolver<'a> {
    pub(super) template: &'a Value,
    pub(super) resources: &'a Map<String, Value>,
    pub(super) names: &'a Names,
}

impl Resolver<'_> {
    /// A value as a string, intrinsics evaluated; None for what has no
    /// string form (a missing value, a map that is no intrinsic).
    pub(super) fn string(&self, v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Object(m) if m.len() == 1 => {
                let (k, arg) = m.iter().next()?;
                match k.as_str() {
                    "Ref" => self.reference(arg.as_str()?),
                    "Fn::GetAtt" => {
                        let (res, attr) = match arg {
                            Value::Array(a) => (a.first()?.as_str()?, a.get(1)?.as_str()?),
                            Value::String(s) => s.split_once('.')?,
                            _ => return None,
                        };
                        self.attribute(res, attr)
                    }
                    "Fn::Sub" => self.sub(arg),
                    "Fn::Join" => {
                        let a = arg.as_array()?;
                        let sep = a.first()?.as_str()?;
                        match a.get(1)? {
                            Value::Array(parts) => {
                                let parts: Option<Vec<String>> =
                                    parts.iter().map(|p| self.string(p)).collect();
                                Some(parts?.join(sep))
                            }
                            // A list parameter's Ref: its items, comma-separated.
                            list => {
                                Some(self.string(list)?.split(',').collect::<Vec<_>>().join(sep))
                            }
                        }
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn function_name(&self, id: &str) -> String {
        self.names
            .functions
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    fn is_function(&self, id: &str) -> bool {
        matches!(
            self.resources.get(id).and_then(|r| r["Type"].as_str()),
            Some("AWS::Serverless::Function" | "AWS::Lambda::Function")
        )
    }

    fn reference(&self, name: &str) -> Option<String> {
        match name {
            "AWS::Region" => return Some(self.names.region.clone()),
            "AWS::AccountId" => return Some("000000000000".into()),
            "AWS::Partition" => return Some("aws".into()),
            "AWS::URLSuffix" => return Some("amazonaws.com".into()),
            "AWS::StackName" => return Some("local".into()),
            _ => {}
        }
        if self.is_function(name) {
            return Some(self.function_name(name));
        }
        if let Some(p) = self.template["Parameters"].get(name) {
            return match self.names.parameters.get(name) {
                Some(v) => Some(v.clone()),
                None => self.string(&p["Default"]),
            };
        }
        // Any other resource: its logical id, which is how routes, route
        // responses and integrations refer to each other here.
        self.resources.contains_key(name).then(|| name.to_string())
    }

    fn attribute(&self, res: &str, attr: &str) -> Option<String> {
        if self.is_function(res) && attr == "Arn" {
            return Some(format!(
                "arn:aws:lambda:{}:000000000000:function:{}",
                self.names.region,
                self.function_name(res)
            ));
        }
        self.resources.contains_key(res).then(|| res.to_string())
    }

    /// `Fn::Sub` with `${Name}`, `${Res.Attr}` and `${!Literal}`.
    fn sub(&self, arg: &Value) -> Option<String> {
        let (text, vars) = match arg {
            Value::String(s) => (s.as_str(), None),
            Value::Array(a) => (a.first()?.as_str()?, a.get(1).and_then(Value::as_object)),
            _ => return None,
        };
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}')?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.and_then(|m| m.get(name)) {
                out.push_str(&self.string(v)?);
            } else if let Some((res, attr)) = name.split_once('.') {
                out.push_str(&self.attribute(res, attr)?);
            } else {
                out.push_str(&self.reference(name)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }
}
