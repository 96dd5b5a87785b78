//! What a template has that the emulator does not model: said at start,
//! with the logical id, never silently ignored.

use serde_json::{Map, Value};

/// What the resources of one type may carry that the emulator models or
/// that has no local effect; anything else is warned about.
fn known_properties(kind: &str) -> &'static [&'static str] {
    match kind {
        "AWS::ApiGatewayV2::Api" => &[
            "Name",
            "ProtocolType",
            "RouteSelectionExpression",
            "Description",
            "Tags",
            "ApiKeySelectionExpression",
            "DisableExecuteApiEndpoint",
        ],
        "AWS::ApiGatewayV2::Route" => &[
            "ApiId",
            "RouteKey",
            "Target",
            "AuthorizationType",
            "AuthorizerId",
            "OperationName",
            "RouteResponseSelectionExpression",
        ],
        "AWS::ApiGatewayV2::Integration" => &[
            "ApiId",
            "IntegrationType",
            "IntegrationUri",
            "IntegrationMethod",
            "TimeoutInMillis",
            "Description",
            "CredentialsArn",
            "PassthroughBehavior",
            "ContentHandlingStrategy",
        ],
        "AWS::ApiGatewayV2::RouteResponse" => &["ApiId", "RouteId", "RouteResponseKey"],
        "AWS::ApiGatewayV2::Authorizer" => &[
            "ApiId",
            "AuthorizerType",
            "AuthorizerUri",
            "IdentitySource",
            "Name",
            "AuthorizerCredentialsArn",
        ],
        "AWS::ApiGatewayV2::Stage" => &[
            "ApiId",
            "StageName",
            "DeploymentId",
            "AutoDeploy",
            "Description",
            "Tags",
        ],
        "AWS::ApiGatewayV2::Deployment" => &["ApiId", "StageName", "Description"],
        _ => &[],
    }
}

/// One warning per `AWS::ApiGatewayV2` resource type not modelled, and per
/// property of a modelled one that is neither modelled nor without effect,
/// among the resources `served` keeps (those of the API being served).
pub(super) fn unmodelled(
    resources: &Map<String, Value>,
    served: impl Fn(&str, &Value) -> bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for (id, r) in resources {
        let kind = r["Type"].as_str().unwrap_or_default();
        if !kind.starts_with("AWS::ApiGatewayV2::") || !served(id, r) {
            continue;
        }
        let known = known_properties(kind);
        if known.is_empty() {
            out.push(format!(
                "{id}: {kind} is not modelled; it has no effect here"
            ));
            continue;
        }
        if let Some(props) = r["Properties"].as_object() {
            for name in props.keys().filter(|k| !known.contains(&k.as_str())) {
                out.push(format!("{id}: property {name} of {kind} is not modelled"));
            }
        }
    }
    out
}
