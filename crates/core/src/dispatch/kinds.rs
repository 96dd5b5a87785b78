//! Kinds of the user's own and their targets, as `--kind KIND=TARGET` and
//! `JOBCAST_KINDS` write them.

use crate::protocol::DEMO_KIND;
use std::collections::BTreeMap;

/// Where a kind's jobs go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `sqs:<queue URL>`: `SendMessage` with the job message as body.
    Sqs(String),
    /// `lambda:<function name or ARN>`: asynchronous `Invoke` (`Event`).
    Lambda(String),
    /// `http://…` / `https://…`: a signed `POST` of the job message.
    Http(String),
    /// `command:<shell command>`: run once per job (`serve` only).
    Command(String),
    /// `states:<state machine ARN>`: `StartExecution`, named by the job id.
    States(String),
    /// `events:<bus name or ARN>`: `PutEvents`, the job message as `Detail`.
    Events(String),
    /// `ecs:<cluster>/<task definition>[?…]`: `RunTask`, the job message in
    /// the container's environment.
    Ecs(super::ecs::EcsSpec),
}

/// Why a kind or its target was refused (`--kind`, `JOBCAST_KINDS`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KindError {
    #[error("'{spec}' names no {what}")]
    Empty { spec: String, what: &'static str },
    #[error("sqs: takes the queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME), got '{0}'")]
    NotAQueueUrl(String),
    #[error("'{spec}' is not a valid URL: {reason}")]
    BadUrl { spec: String, reason: String },
    #[error(
        "unknown target '{0}': use sqs:<queue URL>, lambda:<function>, states:<state machine ARN>, events:<bus>, ecs:<cluster>/<task definition>, http(s)://<url> or command:<shell command>"
    )]
    UnknownTarget(String),
    #[error(
        "states: takes the state machine's ARN (arn:aws:states:REGION:ACCOUNT:stateMachine:NAME), got '{0}'"
    )]
    NotAStateMachine(String),
    #[error("{0}")]
    BadEcs(String),
    #[error("expected KIND=TARGET (like export=sqs:https://…), got '{0}'")]
    NotASpec(String),
    /// The kind's name itself (see `protocol::parse_kind`).
    #[error("{0}")]
    BadName(String),
    #[error("'demo' is built in and cannot be given a target; pick another kind name")]
    Demo,
    #[error("kind '{0}' is configured twice")]
    Twice(String),
    #[error(
        "kind '{kind}' posts to {url}, and http targets are signed: set JOBCAST_WEBHOOK_SECRET (e.g. `openssl rand -hex 32`)"
    )]
    UnsignedHttp { kind: String, url: String },
    #[error(
        "kind '{0}': command: targets run only under jobcast serve; use sqs:, lambda: or http(s):// here"
    )]
    CommandNotHere(String),
    #[error("cannot build the dispatch HTTP client: {0}")]
    HttpClient(String),
}

impl Target {
    /// Parses a target as written after `KIND=`.
    pub fn parse(s: &str) -> Result<Target, KindError> {
        let s = s.trim();
        let nonempty = |rest: &str, what: &'static str| -> Result<String, KindError> {
            let rest = rest.trim();
            if rest.is_empty() {
                Err(KindError::Empty {
                    spec: s.to_string(),
                    what,
                })
            } else {
                Ok(rest.to_string())
            }
        };
        if let Some(rest) = s.strip_prefix("sqs:") {
            let url = nonempty(rest, "queue URL")?;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(KindError::NotAQueueUrl(url));
            }
            Ok(Target::Sqs(url))
        } else if let Some(rest) = s.strip_prefix("lambda:") {
            Ok(Target::Lambda(nonempty(rest, "function")?))
        } else if let Some(rest) = s.strip_prefix("states:") {
            let arn = nonempty(rest, "state machine ARN")?;
            if !(arn.starts_with("arn:") && arn.contains(":stateMachine:")) {
                return Err(KindError::NotAStateMachine(arn));
            }
            Ok(Target::States(arn))
        } else if let Some(rest) = s.strip_prefix("events:") {
            Ok(Target::Events(nonempty(rest, "event bus")?))
        } else if let Some(rest) = s.strip_prefix("ecs:") {
            let spec = nonempty(rest, "cluster and task definition")?;
            Ok(Target::Ecs(
                super::ecs::EcsSpec::parse(&spec).map_err(KindError::BadEcs)?,
            ))
        } else if let Some(rest) = s.strip_prefix("command:") {
            Ok(Target::Command(nonempty(rest, "command")?))
        } else if s.starts_with("http://") || s.starts_with("https://") {
            reqwest::Url::parse(s).map_err(|e| KindError::BadUrl {
                spec: s.to_string(),
                reason: e.to_string(),
            })?;
            Ok(Target::Http(s.to_string()))
        } else {
            Err(KindError::UnknownTarget(s.to_string()))
        }
    }

    /// The target as the start-up log shows it: as written, but an http
    /// target without credentials or query (they may carry secrets).
    pub fn describe(&self) -> String {
        match self {
            Target::Sqs(u) => format!("sqs:{u}"),
            Target::Lambda(f) => format!("lambda:{f}"),
            Target::Command(c) => format!("command:{c}"),
            Target::States(a) => format!("states:{a}"),
            Target::Events(b) => format!("events:{b}"),
            Target::Ecs(e) => format!("ecs:{}/{}", e.cluster, e.task_definition),
            Target::Http(u) => match reqwest::Url::parse(u) {
                Ok(mut url) => {
                    let _ = url.set_username("");
                    let _ = url.set_password(None);
                    url.set_query(None);
                    url.to_string()
                }
                Err(_) => "http target".into(),
            },
        }
    }

    /// The target's scheme, for logs and metrics.
    pub fn scheme(&self) -> &'static str {
        match self {
            Target::Sqs(_) => "sqs",
            Target::Lambda(_) => "lambda",
            Target::Http(_) => "http",
            Target::Command(_) => "command",
            Target::States(_) => "states",
            Target::Events(_) => "events",
            Target::Ecs(_) => "ecs",
        }
    }
}

/// The `KIND=TARGET` items of a comma-separated list. A comma starts a new
/// item only when `NAME=` follows it, so a target's own commas stay in it
/// (an `ecs:` target's `subnets=a,b`).
fn split_specs(list: &str) -> Vec<&str> {
    let starts_item = |rest: &str| {
        let rest = rest.trim_start();
        rest.find('=').is_some_and(|eq| {
            eq > 0
                && rest[..eq]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
    };
    let mut items = Vec::new();
    let mut start = 0;
    for (i, _) in list.match_indices(',') {
        if starts_item(&list[i + 1..]) {
            items.push(&list[start..i]);
            start = i + 1;
        }
    }
    items.push(&list[start..]);
    items
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Parses one `KIND=TARGET`.
pub fn parse_kind_spec(s: &str) -> Result<(String, Target), KindError> {
    let (kind, target) = s
        .split_once('=')
        .ok_or_else(|| KindError::NotASpec(s.to_string()))?;
    let kind = crate::protocol::parse_kind(kind).map_err(KindError::BadName)?;
    if kind == DEMO_KIND {
        return Err(KindError::Demo);
    }
    Ok((kind, Target::parse(target)?))
}

/// The configured kinds, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kinds(pub BTreeMap<String, Target>);

impl Kinds {
    /// Parses `JOBCAST_KINDS` (`a=T1,b=T2`); a target holding a comma needs
    /// the repeatable flag instead.
    pub fn parse_list(list: &str) -> Result<Kinds, KindError> {
        let mut kinds = Kinds::default();
        for spec in split_specs(list) {
            kinds.add(parse_kind_spec(spec)?)?;
        }
        Ok(kinds)
    }

    /// Adds one kind; a kind named twice is an error.
    pub fn add(&mut self, (kind, target): (String, Target)) -> Result<(), KindError> {
        if self.0.contains_key(&kind) {
            return Err(KindError::Twice(kind));
        }
        self.0.insert(kind, target);
        Ok(())
    }

    /// Every kind accepted: `demo` and the configured ones.
    pub fn names(&self) -> Vec<String> {
        std::iter::once(DEMO_KIND.to_string())
            .chain(self.0.keys().cloned())
            .collect()
    }
}
