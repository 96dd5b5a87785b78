//! CloudFormation conditions: the template's `Conditions` evaluated against
//! the parameters given, then resources whose `Condition` is false left
//! out, every `Fn::If` replaced by the branch it picks, and
//! `Ref: AWS::NoValue` removed, so the rest of the reader sees the template
//! as CloudFormation would deploy it.

use super::intrinsics::{Names, Resolver, TemplateError};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Conditions may refer to conditions; deeper than this is a cycle.
const MAX_DEPTH: usize = 32;

fn condition_error(name: &str, problem: impl Into<String>) -> TemplateError {
    TemplateError::Resource {
        resource: format!("Conditions.{name}"),
        problem: problem.into(),
    }
}

/// The template with its conditions applied.
pub(super) fn apply(template: &Value, names: &Names) -> Result<Value, TemplateError> {
    let resources = template["Resources"]
        .as_object()
        .ok_or(TemplateError::NoResources)?;
    let cx = Resolver {
        template,
        resources,
        names,
    };
    let mut values = HashMap::new();
    if let Some(defined) = template["Conditions"].as_object() {
        for name in defined.keys() {
            let v = evaluate(&cx, defined, name, 0)?;
            values.insert(name.clone(), v);
        }
    }
    let mut kept = Map::new();
    for (id, resource) in resources {
        if let Some(c) = resource.get("Condition").and_then(Value::as_str) {
            let on = values
                .get(c)
                .copied()
                .ok_or_else(|| condition_error(c, format!("{id} names an undefined condition")))?;
            if !on {
                continue;
            }
        }
        if let Some(v) = strip(resource.clone(), &values)? {
            kept.insert(id.clone(), v);
        }
    }
    let mut out = template.clone();
    out["Resources"] = Value::Object(kept);
    Ok(out)
}

fn evaluate(
    cx: &Resolver,
    defined: &Map<String, Value>,
    name: &str,
    depth: usize,
) -> Result<bool, TemplateError> {
    if depth > MAX_DEPTH {
        return Err(condition_error(
            name,
            "conditions refer to each other in a cycle",
        ));
    }
    let expr = defined
        .get(name)
        .ok_or_else(|| condition_error(name, "is not defined in Conditions"))?;
    expression(cx, defined, name, expr, depth)
}

fn expression(
    cx: &Resolver,
    defined: &Map<String, Value>,
    name: &str,
    expr: &Value,
    depth: usize,
) -> Result<bool, TemplateError> {
    let Some((op, arg)) = expr
        .as_object()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.iter().next())
    else {
        return Err(condition_error(
            name,
            format!("{expr} is not a condition function"),
        ));
    };
    let args = || arg.as_array().map(Vec::as_slice).unwrap_or_default();
    let each = |items: &[Value]| -> Result<Vec<bool>, TemplateError> {
        items
            .iter()
            .map(|e| expression(cx, defined, name, e, depth + 1))
            .collect()
    };
    match op.as_str() {
        "Fn::Equals" => match args() {
            [a, b] => Ok(cx.string(a) == cx.string(b)),
            _ => Err(condition_error(name, "Fn::Equals takes two values")),
        },
        "Fn::Not" => match args() {
            [c] => Ok(!expression(cx, defined, name, c, depth + 1)?),
            _ => Err(condition_error(name, "Fn::Not takes one condition")),
        },
        "Fn::And" => Ok(each(args())?.into_iter().all(|b| b)),
        "Fn::Or" => Ok(each(args())?.into_iter().any(|b| b)),
        "Condition" => {
            let other = arg
                .as_str()
                .ok_or_else(|| condition_error(name, "Condition takes a condition's name"))?;
            evaluate(cx, defined, other, depth + 1)
        }
        other => Err(condition_error(
            name,
            format!(
                "{other} is not a condition function (Fn::Equals, Fn::Not, Fn::And, Fn::Or, Condition)"
            ),
        )),
    }
}

/// `v` with every `Fn::If` decided; None for `AWS::NoValue`.
fn strip(v: Value, values: &HashMap<String, bool>) -> Result<Option<Value>, TemplateError> {
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("Fn::If") => {
            let Some(Value::Array(branches)) = m.get("Fn::If") else {
                return Err(condition_error("Fn::If", "takes [condition, then, else]"));
            };
            let [Value::String(c), then, otherwise] = branches.as_slice() else {
                return Err(condition_error("Fn::If", "takes [condition, then, else]"));
            };
            let on = values
                .get(c)
                .copied()
                .ok_or_else(|| condition_error(c, "Fn::If names an undefined condition"))?;
            strip(if on { then.clone() } else { otherwise.clone() }, values)
        }
        Value::Object(m) if m.len() == 1 && m.get("Ref") == Some(&Value::from("AWS::NoValue")) => {
            Ok(None)
        }
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                if let Some(v) = strip(v, values)? {
                    out.insert(k, v);
                }
            }
            Ok(Some(Value::Object(out)))
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for v in items {
                out.extend(strip(v, values)?);
            }
            Ok(Some(Value::Array(out)))
        }
        other => Ok(Some(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulate::template::parse_text;

    const TEMPLATE: &str = r#"
Parameters:
  Issuer: { Type: String, Default: "" }
  Stage: { Type: String, Default: prod }
Conditions:
  On: !Not [!Equals [!Ref Issuer, ""]]
  Prod: !Equals [!Ref Stage, prod]
  Both: !And [!Condition On, !Condition Prod]
  Either: !Or [!Condition On, !Condition Prod]
Resources:
  Only:
    Type: AWS::ApiGatewayV2::Authorizer
    Condition: On
    Properties: { Name: a }
  Route:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      AuthorizationType: !If [On, CUSTOM, NONE]
      AuthorizerId: !If [On, !Ref Only, !Ref AWS::NoValue]
      List: [a, !If [Both, b, !Ref AWS::NoValue], !If [Either, c, d]]
"#;

    fn applied(issuer: Option<&str>) -> Value {
        let mut names = Names::default();
        if let Some(i) = issuer {
            names.parameters.insert("Issuer".into(), i.into());
        }
        apply(&parse_text(TEMPLATE).expect("parses"), &names).expect("applies")
    }

    #[test]
    fn conditions_pick_branches_and_drop_resources() {
        let off = applied(None);
        assert!(off["Resources"].get("Only").is_none());
        let p = &off["Resources"]["Route"]["Properties"];
        assert_eq!(p["AuthorizationType"], "NONE");
        assert!(p.get("AuthorizerId").is_none());
        assert_eq!(p["List"], serde_json::json!(["a", "c"]));

        let on = applied(Some("https://issuer"));
        assert!(on["Resources"].get("Only").is_some());
        let p = &on["Resources"]["Route"]["Properties"];
        assert_eq!(p["AuthorizationType"], "CUSTOM");
        assert_eq!(p["AuthorizerId"], serde_json::json!({"Ref": "Only"}));
        assert_eq!(p["List"], serde_json::json!(["a", "b", "c"]));
    }

    #[test]
    fn an_undefined_or_cyclic_condition_is_named() {
        let t = parse_text(
            "Conditions:\n  A: !Condition B\n  B: !Condition A\nResources:\n  R: {Type: X, Condition: A}\n",
        )
        .expect("parses");
        let e = apply(&t, &Names::default()).expect_err("a cycle");
        assert!(e.to_string().contains("cycle"), "{e}");
        let t = parse_text("Resources:\n  R: {Type: X, Condition: Missing}\n").expect("parses");
        let e = apply(&t, &Names::default()).expect_err("undefined");
        assert!(e.to_string().contains("Missing"), "{e}");
    }
}
