//! Reading a WebSocket API out of a SAM or CloudFormation template (YAML
//! or JSON): every `AWS::ApiGatewayV2::Api` with `ProtocolType: WEBSOCKET`,
//! its routes, integrations, route responses, authorizers and stage.
//!
//! Values go through the intrinsic functions such templates use for wiring
//! (`Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`): a function's reference
//! renders as its local name (the logical id, or what `--function` maps it
//! to) and its ARN as a Lambda ARN carrying that name, so an integration URI
//! resolves to the function the local runner knows.

use super::intrinsics::Resolver;
pub use super::intrinsics::{Names, TemplateError, parse_text};
use super::unmodelled::unmodelled;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// API Gateway's integration timeout when `TimeoutInMillis` is not set.
pub const DEFAULT_INTEGRATION_TIMEOUT: Duration = Duration::from_millis(29_000);

fn resource_error(resource: &str, problem: impl Into<String>) -> TemplateError {
    TemplateError::Resource {
        resource: resource.to_string(),
        problem: problem.into(),
    }
}

/// Where a route's messages go.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// `AWS_PROXY`: the Lambda function of this (local) name.
    Lambda(String),
    /// `HTTP_PROXY`: a POST of the event to this URL.
    Http(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Integration {
    pub logical_id: String,
    pub target: Target,
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub key: String,
    /// None: a route without a target (API Gateway answers it itself).
    pub integration: Option<Integration>,
    /// A `RouteResponse` exists: the integration's body goes back to the client.
    pub two_way: bool,
}

/// A `REQUEST` authorizer on `$connect`.
#[derive(Clone, Debug, PartialEq)]
pub struct Authorizer {
    pub logical_id: String,
    pub function: String,
    /// `route.request.header.X` / `route.request.querystring.Y`.
    pub identity_sources: Vec<IdentitySource>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentitySource {
    Header(String),
    Query(String),
}

/// One WebSocket API as the emulator serves it.
#[derive(Clone, Debug, PartialEq)]
pub struct WebSocketApi {
    pub logical_id: String,
    /// The part of `RouteSelectionExpression` after `$request.body.`, split
    /// on dots (`action` for the usual `$request.body.action`).
    pub selection_path: Vec<String>,
    pub routes: BTreeMap<String, Route>,
    pub stage: Option<String>,
    pub authorizer: Option<Authorizer>,
    /// What the template has that the emulator does not model, one line each
    /// with the logical id.
    pub warnings: Vec<String>,
    /// The template's functions by local name, as `emulate` runs them
    /// itself when no Invoke API is named (CONTRACT section 12).
    pub functions: BTreeMap<String, FunctionSpec>,
}

/// A function of the template (`AWS::Serverless::Function`, with SAM's
/// `Globals.Function` under it, or `AWS::Lambda::Function`).
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionSpec {
    pub logical_id: String,
    /// `nodejs20.x`, `python3.12`, `provided.al2023`, …
    pub runtime: Option<String>,
    pub handler: Option<String>,
    /// As written, relative to the template's folder.
    pub code_uri: Option<String>,
    /// `Timeout` (default 3 s).
    pub timeout: Duration,
    /// `MemorySize` (default 128 MB).
    pub memory_mb: u32,
    /// `Environment.Variables`, intrinsics resolved.
    pub environment: BTreeMap<String, String>,
    /// `ReservedConcurrentExecutions`.
    pub reserved_concurrency: Option<usize>,
    /// With `Metadata.BuildMethod: rust-cargolambda`: the binary `cargo
    /// lambda build` writes (`BuildProperties.Binary`, else the logical id).
    pub cargo_lambda_binary: Option<String>,
}

/// Lambda's `Timeout` when a function sets none.
pub const DEFAULT_FUNCTION_TIMEOUT: Duration = Duration::from_secs(3);

fn read_functions(cx: &Resolver, template: &Value) -> BTreeMap<String, FunctionSpec> {
    let globals = &template["Globals"]["Function"];
    let mut out = BTreeMap::new();
    for (id, r) in cx.resources {
        let kind = r["Type"].as_str().unwrap_or_default();
        let serverless = kind == "AWS::Serverless::Function";
        if !serverless && kind != "AWS::Lambda::Function" {
            continue;
        }
        let p = &r["Properties"];
        let prop = |name: &str| -> Option<&Value> {
            p.get(name)
                .filter(|v| !v.is_null())
                .or_else(|| serverless.then(|| globals.get(name)).flatten())
        };
        let string = |name: &str| prop(name).and_then(|v| cx.string(v));
        let number = |name: &str| string(name).and_then(|s| s.parse::<u64>().ok());
        let mut environment = BTreeMap::new();
        for source in [
            serverless.then(|| &globals["Environment"]["Variables"]),
            Some(&p["Environment"]["Variables"]),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(vars) = source.as_object() {
                for (k, v) in vars {
                    environment.insert(k.clone(), cx.string(v).unwrap_or_default());
                }
            }
        }
        let name = cx
            .names
            .functions
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.clone());
        out.insert(
            name,
            FunctionSpec {
                logical_id: id.clone(),
                runtime: string("Runtime"),
                handler: string("Handler"),
                // A CDK app's function: the asset folder the CDK wrote
                // beside the template (as `sam local` reads it).
                code_uri: if serverless {
                    string("CodeUri")
                } else {
                    r["Metadata"]["aws:asset:path"]
                        .as_str()
                        .map(str::to_string)
                        .or_else(|| string("Code"))
                },
                timeout: number("Timeout")
                    .map(Duration::from_secs)
                    .unwrap_or(DEFAULT_FUNCTION_TIMEOUT),
                memory_mb: number("MemorySize").map(|n| n as u32).unwrap_or(128),
                environment,
                reserved_concurrency: number("ReservedConcurrentExecutions").map(|n| n as usize),
                cargo_lambda_binary: (r["Metadata"]["BuildMethod"] == "rust-cargolambda").then(
                    || {
                        cx.string(&r["Metadata"]["BuildProperties"]["Binary"])
                            .unwrap_or_else(|| id.clone())
                    },
                ),
            },
        );
    }
    out
}

impl WebSocketApi {
    /// The route a message body selects: the value at the selection
    /// expression's path when a route has that key, else `$default`, else
    /// none (API Gateway's `Forbidden`). `$connect` and `$disconnect` are
    /// never selected by a message.
    pub fn select(&self, body: &str) -> Option<&Route> {
        let selected = serde_json::from_str::<Value>(body).ok().and_then(|v| {
            let mut at = &v;
            for part in &self.selection_path {
                at = at.get(part)?;
            }
            at.as_str().map(str::to_string)
        });
        selected
            .and_then(|key| self.routes.get(&key))
            .filter(|r| r.key != "$connect" && r.key != "$disconnect")
            .or_else(|| self.routes.get("$default"))
    }
}

/// The resources of one kind: logical id → properties.
fn of_type<'a>(resources: &'a Map<String, Value>, kind: &str) -> Vec<(&'a str, &'a Value)> {
    resources
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.as_str(), &r["Properties"]))
        .collect()
}

/// Reads the WebSocket API (`api`: its logical id, needed when there are
/// several) out of a parsed template.
pub fn read_api(
    template: &Value,
    api: Option<&str>,
    names: &Names,
) -> Result<WebSocketApi, TemplateError> {
    let applied = super::conditions::apply(template, names)?;
    let template = &applied;
    let resources = template["Resources"]
        .as_object()
        .ok_or(TemplateError::NoResources)?;
    let cx = Resolver {
        template,
        resources,
        names,
    };
    let api_id = choose_api(resources, api)?;
    let mut out = WebSocketApi {
        logical_id: api_id.to_string(),
        selection_path: selection_path(&cx, api_id)?,
        routes: BTreeMap::new(),
        stage: None,
        authorizer: None,
        warnings: Vec::new(),
        functions: BTreeMap::new(),
    };
    out.functions = read_functions(&cx, template);
    let belongs = |p: &Value| cx.string(&p["ApiId"]).as_deref() == Some(api_id);
    let integrations = read_integrations(&cx, resources, &belongs)?;
    let two_way: Vec<String> = of_type(resources, "AWS::ApiGatewayV2::RouteResponse")
        .into_iter()
        .filter(|(_, p)| belongs(p))
        .filter_map(|(_, p)| cx.string(&p["RouteId"]))
        .collect();
    for (id, p) in of_type(resources, "AWS::ApiGatewayV2::Route") {
        if belongs(p) {
            let mut route = read_route(&cx, id, p, &integrations, &mut out)?;
            route.two_way = two_way.iter().any(|r| r == id);
            out.routes.insert(route.key.clone(), route);
        }
    }
    for (id, p) in of_type(resources, "AWS::ApiGatewayV2::Stage") {
        if belongs(p) && out.stage.is_none() {
            out.stage = cx.string(&p["StageName"]);
        } else if belongs(p) {
            out.warnings
                .push(format!("{id}: a second stage; serving only the first"));
        }
    }
    // Only what this API is made of: another API of the template (the jobs
    // HTTP API beside a WebSocket API, say) and its parts are not served.
    out.warnings.extend(unmodelled(resources, |id, r| {
        if r["Type"] == "AWS::ApiGatewayV2::Api" {
            id == api_id
        } else {
            r["Properties"].get("ApiId").is_none() || belongs(&r["Properties"])
        }
    }));
    Ok(out)
}

/// The WebSocket API asked for, or the template's only one.
fn choose_api<'a>(
    resources: &'a Map<String, Value>,
    api: Option<&str>,
) -> Result<&'a str, TemplateError> {
    let apis: Vec<&str> = of_type(resources, "AWS::ApiGatewayV2::Api")
        .into_iter()
        .filter(|(_, p)| p["ProtocolType"] == "WEBSOCKET")
        .map(|(id, _)| id)
        .collect();
    match (api, apis.as_slice()) {
        (Some(wanted), _) => apis
            .iter()
            .find(|a| **a == wanted)
            .copied()
            .ok_or_else(|| TemplateError::UnknownApi(wanted.to_string())),
        (None, []) => Err(TemplateError::NoWebSocketApi),
        (None, [one]) => Ok(one),
        (None, many) => Err(TemplateError::SeveralApis(many.len(), many.join(", "))),
    }
}

/// `RouteSelectionExpression` as the path into a message body.
fn selection_path(cx: &Resolver, api_id: &str) -> Result<Vec<String>, TemplateError> {
    let props = &cx.resources[api_id]["Properties"];
    let expression = cx
        .string(&props["RouteSelectionExpression"])
        .unwrap_or_default();
    let path = expression
        .strip_prefix("$request.body.")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            resource_error(
                api_id,
                format!("RouteSelectionExpression '{expression}' is not $request.body.<path>, the form WebSocket APIs use"),
            )
        })?;
    Ok(path.split('.').map(str::to_string).collect())
}

/// One route: its key, its integration, and (on `$connect`) its
/// authorizer, which goes into `out`.
fn read_route(
    cx: &Resolver,
    id: &str,
    p: &Value,
    integrations: &HashMap<String, Integration>,
    out: &mut WebSocketApi,
) -> Result<Route, TemplateError> {
    let key = cx
        .string(&p["RouteKey"])
        .ok_or_else(|| resource_error(id, "a route needs a RouteKey"))?;
    let integration = match cx.string(&p["Target"]) {
        None if p["Target"].is_null() => None,
        None => {
            return Err(resource_error(
                id,
                format!("Target {} refers to nothing in the template", p["Target"]),
            ));
        }
        Some(t) => {
            let target = t.strip_prefix("integrations/").unwrap_or(&t);
            Some(integrations.get(target).cloned().ok_or_else(|| {
                resource_error(
                    id,
                    format!(
                        "Target '{t}' names no integration of {} in the template",
                        out.logical_id
                    ),
                )
            })?)
        }
    };
    match p["AuthorizationType"].as_str() {
        Some("CUSTOM") if key != "$connect" => {
            return Err(resource_error(id, "authorizers apply to $connect only"));
        }
        Some("CUSTOM") => {
            let auth = cx.string(&p["AuthorizerId"]).ok_or_else(|| {
                resource_error(id, "AuthorizationType CUSTOM needs an AuthorizerId")
            })?;
            out.authorizer = Some(read_authorizer(cx, cx.resources, &auth)?);
        }
        Some("AWS_IAM") => out.warnings.push(format!(
            "{id}: AuthorizationType AWS_IAM is not checked locally; every client may connect"
        )),
        _ => {}
    }
    Ok(Route {
        key,
        integration,
        two_way: false,
    })
}

fn read_integrations(
    cx: &Resolver,
    resources: &Map<String, Value>,
    belongs: &dyn Fn(&Value) -> bool,
) -> Result<HashMap<String, Integration>, TemplateError> {
    let mut out = HashMap::new();
    for (id, p) in of_type(resources, "AWS::ApiGatewayV2::Integration") {
        if !belongs(p) {
            continue;
        }
        let uri = cx.string(&p["IntegrationUri"]).ok_or_else(|| {
            resource_error(
                id,
                format!(
                    "IntegrationUri {} is missing or refers to nothing in the template",
                    p["IntegrationUri"]
                ),
            )
        })?;
        let kind = cx.string(&p["IntegrationType"]).unwrap_or_default();
        let target = match kind.as_str() {
            "AWS_PROXY" => Target::Lambda(function_of_uri(&uri).ok_or_else(|| {
                resource_error(
                    id,
                    format!("IntegrationUri '{uri}' names no Lambda function (expected …:function:NAME/invocations)"),
                )
            })?),
            "HTTP_PROXY" => Target::Http(uri.clone()),
            other => {
                return Err(resource_error(
                    id,
                    format!("IntegrationType '{other}' is not served; use AWS_PROXY (Lambda) or HTTP_PROXY"),
                ));
            }
        };
        let timeout = match &p["TimeoutInMillis"] {
            Value::Null => DEFAULT_INTEGRATION_TIMEOUT,
            v => match cx.string(v).and_then(|s| s.parse::<u64>().ok()) {
                Some(ms) if (50..=29_000).contains(&ms) => Duration::from_millis(ms),
                _ => {
                    return Err(resource_error(
                        id,
                        format!("TimeoutInMillis must be 50 to 29000, got {v}"),
                    ));
                }
            },
        };
        out.insert(
            id.to_string(),
            Integration {
                logical_id: id.to_string(),
                target,
                timeout,
            },
        );
    }
    Ok(out)
}

fn read_authorizer(
    cx: &Resolver,
    resources: &Map<String, Value>,
    id: &str,
) -> Result<Authorizer, TemplateError> {
    let p = resources
        .get(id)
        .filter(|r| r["Type"] == "AWS::ApiGatewayV2::Authorizer")
        .map(|r| &r["Properties"])
        .ok_or_else(|| resource_error(id, "AuthorizerId names no AWS::ApiGatewayV2::Authorizer"))?;
    if p["AuthorizerType"] != "REQUEST" {
        return Err(resource_error(
            id,
            "only REQUEST authorizers exist for WebSocket APIs",
        ));
    }
    let uri = cx.string(&p["AuthorizerUri"]).unwrap_or_default();
    let function = function_of_uri(&uri).ok_or_else(|| {
        resource_error(
            id,
            format!("AuthorizerUri '{uri}' names no Lambda function"),
        )
    })?;
    let sources = match &p["IdentitySource"] {
        Value::Array(items) => items.iter().filter_map(|i| cx.string(i)).collect(),
        Value::Null => Vec::new(),
        v => cx.string(v).into_iter().collect::<Vec<_>>(),
    };
    let identity_sources = sources
        .iter()
        .map(|s| {
            if let Some(h) = s.strip_prefix("route.request.header.") {
                Ok(IdentitySource::Header(h.to_string()))
            } else if let Some(q) = s.strip_prefix("route.request.querystring.") {
                Ok(IdentitySource::Query(q.to_string()))
            } else {
                Err(resource_error(
                    id,
                    format!("IdentitySource '{s}' is not route.request.header.X or route.request.querystring.Y"),
                ))
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Authorizer {
        logical_id: id.to_string(),
        function,
        identity_sources,
    })
}

/// The function name in a Lambda invocation URI or ARN.
fn function_of_uri(uri: &str) -> Option<String> {
    let after = uri.rsplit_once(":function:")?.1;
    let name = after.split('/').next()?;
    // A qualified ARN (`name:alias`) invokes the name locally.
    let name = name.split(':').next()?;
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            functions: HashMap::from([("ConnectFunction".to_string(), "connect".to_string())]),
            parameters: HashMap::new(),
            region: "eu-west-1".into(),
        }
    }

    #[test]
    fn reads_the_shipped_template() {
        let t = parse_text(include_str!("../../infra/template.yaml")).expect("parses");
        let api = read_api(&t, None, &names()).expect("a WebSocket API");
        assert_eq!(api.logical_id, "WebSocketApi");
        assert_eq!(api.selection_path, vec!["action"]);
        assert_eq!(api.stage.as_deref(), Some("prod"));
        let keys: Vec<&str> = api.routes.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "$connect",
                "$default",
                "$disconnect",
                "ping",
                "subscribe",
                "sync",
                "unsubscribe"
            ]
        );
        let connect = api.routes["$connect"]
            .integration
            .as_ref()
            .expect("integrated");
        // Mapped by --function; the others keep their logical ids.
        assert_eq!(connect.target, Target::Lambda("connect".into()));
        assert_eq!(connect.timeout, DEFAULT_INTEGRATION_TIMEOUT);
        let ping = api.routes["ping"].integration.as_ref().expect("integrated");
        assert_eq!(ping.target, Target::Lambda("MessageFunction".into()));
        assert!(!api.routes["ping"].two_way);
        // What it does not model is said, with the logical id.
        assert!(
            api.warnings
                .iter()
                .any(|w| w.starts_with("WebSocketStage: property AccessLogSettings")),
            "{:?}",
            api.warnings
        );
    }

    const CHAT: &str = r#"
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Greeting:
    Type: String
    Default: hello
Resources:
  Chat:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: chat
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: $request.body.msg.kind
  SendRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Chat
      RouteKey: sendmessage
      Target: !Join ['/', ['integrations', !Ref SendInteg]]
  SendResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties:
      ApiId: !Ref Chat
      RouteId: !Ref SendRoute
      RouteResponseKey: $default
  SendInteg:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Chat
      IntegrationType: AWS_PROXY
      TimeoutInMillis: 5000
      IntegrationUri:
        Fn::Sub:
          - arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Fn}/invocations
          - Fn: !GetAtt SendFunction.Arn
  HookRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Chat
      RouteKey: hook
      Target: !Sub integrations/${HookInteg}
  HookInteg:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Chat
      IntegrationType: HTTP_PROXY
      IntegrationMethod: POST
      IntegrationUri: !Sub "http://127.0.0.1:9/${Greeting}"
  Model:
    Type: AWS::ApiGatewayV2::Model
    Properties:
      ApiId: !Ref Chat
      Name: m
      Schema: {}
  SendFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.handler
"#;

    #[test]
    fn the_shipped_template_with_owners_has_the_connect_authorizer() {
        let t = parse_text(include_str!("../../infra/template.yaml")).expect("parses");
        assert!(
            read_api(&t, None, &names())
                .expect("reads")
                .authorizer
                .is_none()
        );
        let mut n = names();
        n.parameters
            .insert("JwtIssuer".into(), "https://issuer.test".into());
        n.functions
            .insert("AuthorizerFunction".into(), "authorizer".into());
        let api = read_api(&t, None, &n).expect("reads");
        let auth = api.authorizer.expect("an authorizer with owners on");
        assert_eq!(auth.logical_id, "ConnectAuthorizer");
        assert_eq!(auth.function, "authorizer");
        assert_eq!(
            auth.identity_sources,
            vec![IdentitySource::Header("Host".into())]
        );
    }

    #[test]
    fn another_api_of_the_template_is_not_warned_about() {
        let t = parse_text(
            r#"{"Resources": {
              "Ws": {"Type": "AWS::ApiGatewayV2::Api", "Properties": {"ProtocolType": "WEBSOCKET", "RouteSelectionExpression": "$request.body.action"}},
              "WsStage": {"Type": "AWS::ApiGatewayV2::Stage", "Properties": {"ApiId": {"Ref": "Ws"}, "StageName": "prod", "AccessLogSettings": {}}},
              "Http": {"Type": "AWS::ApiGatewayV2::Api", "Properties": {"ProtocolType": "HTTP", "CorsConfiguration": {}}},
              "HttpStage": {"Type": "AWS::ApiGatewayV2::Stage", "Properties": {"ApiId": {"Ref": "Http"}, "StageName": "$default", "AccessLogSettings": {}}}}}"#,
        )
        .expect("parses");
        let api = read_api(&t, None, &names()).expect("reads the WebSocket API");
        assert_eq!(
            api.warnings,
            vec![
                "WsStage: property AccessLogSettings of AWS::ApiGatewayV2::Stage is not modelled"
                    .to_string()
            ]
        );
    }

    #[test]
    fn a_cdk_function_runs_from_its_asset_folder() {
        let t = parse_text(
            r#"{"Resources": {
              "Api": {"Type": "AWS::ApiGatewayV2::Api", "Properties": {"ProtocolType": "WEBSOCKET", "RouteSelectionExpression": "$request.body.action"}},
              "ProgressConnectFunction1A2B3C4D": {
                "Type": "AWS::Lambda::Function",
                "Metadata": {"aws:asset:path": "asset.0cc22cb4e651", "aws:asset:property": "Code"},
                "Properties": {"Code": {"S3Bucket": "cdk-assets", "S3Key": "0cc2.zip"}, "Handler": "bootstrap",
                  "Runtime": "provided.al2023", "Timeout": 10, "MemorySize": 256}}}}"#,
        )
        .expect("parses");
        let api = read_api(&t, None, &names()).expect("reads");
        let f = &api.functions["ProgressConnectFunction1A2B3C4D"];
        assert_eq!(f.code_uri.as_deref(), Some("asset.0cc22cb4e651"));
        assert_eq!(f.timeout, Duration::from_secs(10));
        assert_eq!(f.memory_mb, 256);
    }

    #[test]
    fn intrinsics_two_way_routes_and_warnings() {
        let t = parse_text(CHAT).expect("parses");
        let api = read_api(&t, None, &names()).expect("an API");
        assert_eq!(api.selection_path, vec!["msg", "kind"]);
        let send = &api.routes["sendmessage"];
        assert!(send.two_way);
        let integ = send.integration.as_ref().expect("integrated");
        assert_eq!(integ.target, Target::Lambda("SendFunction".into()));
        assert_eq!(integ.timeout, Duration::from_millis(5000));
        let hook = api.routes["hook"].integration.as_ref().expect("integrated");
        assert_eq!(hook.target, Target::Http("http://127.0.0.1:9/hello".into()));
        let mut given = names();
        given.parameters.insert("Greeting".into(), "hi".into());
        let api2 = read_api(&t, None, &given).expect("an API");
        let hook = api2.routes["hook"]
            .integration
            .as_ref()
            .expect("integrated");
        assert_eq!(hook.target, Target::Http("http://127.0.0.1:9/hi".into()));
        assert_eq!(api.stage, None);
        assert!(
            api.warnings.contains(
                &"Model: AWS::ApiGatewayV2::Model is not modelled; it has no effect here"
                    .to_string()
            ),
            "{:?}",
            api.warnings
        );
    }

    #[test]
    fn route_selection() {
        let t = parse_text(CHAT).expect("parses");
        let mut api = read_api(&t, None, &names()).expect("an API");
        let key = |api: &WebSocketApi, body: &str| api.select(body).map(|r| r.key.clone());
        assert_eq!(
            key(&api, r#"{"msg":{"kind":"hook"}}"#).as_deref(),
            Some("hook")
        );
        // No such route, not JSON, the path missing or not a string: no $default, no route.
        for body in [
            r#"{"msg":{"kind":"other"}}"#,
            "not json",
            "{}",
            r#"{"msg":{"kind":1}}"#,
        ] {
            assert_eq!(key(&api, body), None, "{body}");
        }
        api.routes.insert(
            "$default".into(),
            Route {
                key: "$default".into(),
                integration: None,
                two_way: false,
            },
        );
        for body in [
            r#"{"msg":{"kind":"other"}}"#,
            "not json",
            r#"{"msg":{"kind":"$connect"}}"#,
        ] {
            assert_eq!(key(&api, body).as_deref(), Some("$default"), "{body}");
        }
    }

    #[test]
    fn json_templates_read_alike() {
        let yaml = parse_text(CHAT).expect("yaml");
        let json = parse_text(&serde_json::to_string(&yaml).expect("json")).expect("json parses");
        assert_eq!(
            read_api(&yaml, None, &names()),
            read_api(&json, None, &names())
        );
    }

    #[test]
    fn what_cannot_be_served_names_the_resource() {
        let bad_timeout = CHAT.replace("TimeoutInMillis: 5000", "TimeoutInMillis: 30000");
        let e = read_api(&parse_text(&bad_timeout).expect("parses"), None, &names());
        assert!(
            matches!(&e, Err(TemplateError::Resource { resource, .. }) if resource == "SendInteg"),
            "{e:?}"
        );
        let mock = CHAT.replace("IntegrationType: HTTP_PROXY", "IntegrationType: MOCK");
        let e = read_api(&parse_text(&mock).expect("parses"), None, &names());
        assert!(
            matches!(&e, Err(TemplateError::Resource { resource, .. }) if resource == "HookInteg"),
            "{e:?}"
        );
        let dangling = CHAT.replace("!Ref SendInteg", "!Ref Nowhere");
        let e = read_api(&parse_text(&dangling).expect("parses"), None, &names());
        assert!(
            matches!(&e, Err(TemplateError::Resource { resource, .. }) if resource == "SendRoute"),
            "{e:?}"
        );
        let http_api = CHAT.replace("ProtocolType: WEBSOCKET", "ProtocolType: HTTP");
        assert_eq!(
            read_api(&parse_text(&http_api).expect("parses"), None, &names()),
            Err(TemplateError::NoWebSocketApi)
        );
        assert!(matches!(
            parse_text("a: [unclosed"),
            Err(TemplateError::Syntax(_))
        ));
    }
}
