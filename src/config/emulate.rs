//! The options of `jobcast emulate`.

use super::*;
use crate::emulate::template::{
    self, DEFAULT_INTEGRATION_TIMEOUT, Integration, Names, Route, Target, TemplateError,
    WebSocketApi,
};
use std::collections::BTreeMap;

/// Options of `jobcast emulate`.
#[derive(Clone, Debug, Args)]
pub struct EmulateArgs {
    /// The SAM or CloudFormation template (YAML or JSON) with your
    /// AWS::ApiGatewayV2::Api (ProtocolType WEBSOCKET).
    #[arg(long, value_name = "FILE", required_unless_present = "routes")]
    pub template: Option<std::path::PathBuf>,

    /// Which WebSocket API of the template, when it has several (logical id).
    #[arg(long, value_name = "LOGICAL_ID")]
    pub api: Option<String>,

    /// A route without a template: KEY=FUNCTION (repeatable), e.g.
    /// --route '$connect=OnConnect' --route sendmessage=SendMessage.
    #[arg(long = "route", value_name = "KEY=FUNCTION", value_parser = parse_route, conflicts_with = "template")]
    pub routes: Vec<(String, String)>,

    /// The route selection expression for --route (API Gateway's default
    /// for WebSocket APIs is $request.body.action).
    #[arg(long, value_name = "EXPR", default_value = "$request.body.action")]
    pub route_selection: String,

    /// The name a template function has in your local runner, when it is
    /// not its logical id: LogicalId=name (repeatable).
    #[arg(long = "function", value_name = "LOGICAL_ID=NAME", value_parser = parse_mapping)]
    pub functions: Vec<(String, String)>,

    /// A value for a template parameter (else its Default): NAME=VALUE
    /// (repeatable), as sam's --parameter-overrides.
    #[arg(long = "parameter", value_name = "NAME=VALUE", value_parser = parse_parameter)]
    pub parameters: Vec<(String, String)>,

    /// The program a runtime's functions run with, when emulate runs them
    /// itself: RUNTIME=PATH (like python3.12=/usr/bin/python3.12; repeatable).
    #[arg(long = "runtime", value_name = "RUNTIME=PATH", value_parser = parse_parameter)]
    pub runtimes: Vec<(String, String)>,

    /// Concurrent invocations per function run here, unless the function
    /// sets ReservedConcurrentExecutions.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub max_concurrency: Option<u16>,

    /// Environment overrides in SAM's format (`sam local --env-vars`): a
    /// JSON object whose `Parameters` apply to every function and whose
    /// logical ids apply to one; only variables the template declares.
    #[arg(long, value_name = "FILE")]
    pub env_vars: Option<std::path::PathBuf>,

    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR", value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// The stage clients connect to (ws://HOST/{stage}); the template's
    /// AWS::ApiGatewayV2::Stage when not given, else "dev".
    #[arg(long, value_parser = parse_stage)]
    pub stage: Option<String>,

    /// Close connections idle this long with 1001 (API Gateway: 10m).
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Duration,

    /// Close every connection after this long with 1001 (API Gateway: 2h).
    #[arg(long, default_value = "2h", value_parser = parse_duration, value_name = "DURATION")]
    pub max_lifetime: Duration,

    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long, default_value = "pretty", value_enum)]
    pub log_format: LogFormat,
}

fn parse_route(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, f)) if !k.trim().is_empty() && !f.trim().is_empty() => {
            Ok((k.trim().to_string(), f.trim().to_string()))
        }
        _ => Err(format!(
            "expected KEY=FUNCTION (like sendmessage=SendMessageFunction), got '{s}'"
        )),
    }
}

fn parse_mapping(s: &str) -> Result<(String, String), String> {
    parse_route(s).map_err(|_| {
        format!("expected LOGICAL_ID=NAME (like OnConnectFunction=on-connect), got '{s}'")
    })
}

fn parse_parameter(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!(
            "expected NAME=VALUE (like TableName=chat), got '{s}'"
        )),
    }
}

impl EmulateArgs {
    /// The API to serve: from the template, or from the --route flags.
    pub fn api(&self, region: &str) -> Result<WebSocketApi, TemplateError> {
        let names = Names {
            functions: self.functions.iter().cloned().collect(),
            parameters: self.parameters.iter().cloned().collect(),
            region: region.to_string(),
        };
        match &self.template {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| TemplateError::Read {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                let parsed = template::parse_text(&text)?;
                template::read_api(&parsed, self.api.as_deref(), &names)
            }
            None => self.api_from_routes(),
        }
    }

    fn api_from_routes(&self) -> Result<WebSocketApi, TemplateError> {
        let path = self
            .route_selection
            .strip_prefix("$request.body.")
            .filter(|p| !p.is_empty())
            .ok_or_else(|| TemplateError::Resource {
                resource: "--route-selection".into(),
                problem: format!("'{}' is not $request.body.<path>", self.route_selection),
            })?;
        let routes: BTreeMap<String, Route> = self
            .routes
            .iter()
            .map(|(key, function)| {
                let route = Route {
                    key: key.clone(),
                    integration: Some(Integration {
                        logical_id: function.clone(),
                        target: Target::Lambda(function.clone()),
                        timeout: DEFAULT_INTEGRATION_TIMEOUT,
                    }),
                    two_way: false,
                };
                (key.clone(), route)
            })
            .collect();
        Ok(WebSocketApi {
            logical_id: "routes".into(),
            selection_path: path.split('.').map(str::to_string).collect(),
            routes,
            stage: None,
            authorizer: None,
            warnings: Vec::new(),
            functions: BTreeMap::new(),
        })
    }
}
