//! `ecs:<cluster>/<task definition>[?container=…&subnets=…&securityGroups=…&launchType=…&assignPublicIp=…]`:
//! `RunTask` with the job message in the container's environment as
//! `JOBCAST_JOB` (what the worker libraries' `from_env` read). The
//! hand-over's `clientToken` is the job id, so a retry after a lost answer
//! does not run a second task. ECS takes at most 8 KiB of
//! overrides: a job whose message would not fit is refused at `POST
//! /jobs` (413), never handed over to fail.

use super::{Deliver, DispatchError, JobMessage, aws_failure};
use async_trait::async_trait;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerOverride, KeyValuePair, LaunchType,
    NetworkConfiguration, TaskOverride,
};
use tokio::sync::OnceCell;

/// Largest overrides ECS takes for one task (8 KiB of JSON).
pub const MAX_OVERRIDES_BYTES: usize = 8 * 1024;

/// Where a kind's tasks run, as its target names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcsSpec {
    /// Cluster name or ARN.
    pub cluster: String,
    /// `family[:revision]` or ARN.
    pub task_definition: String,
    /// The container that gets the job message (the task definition's
    /// only one when not named).
    pub container: Option<String>,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub launch_type: Option<String>,
    pub assign_public_ip: bool,
}

impl EcsSpec {
    /// Parses what follows `ecs:`.
    pub fn parse(spec: &str) -> Result<EcsSpec, String> {
        let (path, query) = spec.split_once('?').unwrap_or((spec, ""));
        // A cluster ARN holds one '/' (…:cluster/NAME) before the one that
        // ends it.
        let skip = if path.starts_with("arn:") { 1 } else { 0 };
        let cut = path
            .match_indices('/')
            .nth(skip)
            .map(|(i, _)| i)
            .ok_or_else(|| {
                format!(
                    "ecs: takes CLUSTER/TASK_DEFINITION (like ecs:jobs/encode:3), got 'ecs:{spec}'"
                )
            })?;
        let (cluster, task_definition) = (&path[..cut], &path[cut + 1..]);
        if cluster.is_empty() || task_definition.is_empty() {
            return Err(format!(
                "ecs: takes CLUSTER/TASK_DEFINITION (like ecs:jobs/encode:3), got 'ecs:{spec}'"
            ));
        }
        let mut out = EcsSpec {
            cluster: cluster.to_string(),
            task_definition: task_definition.to_string(),
            container: None,
            subnets: Vec::new(),
            security_groups: Vec::new(),
            launch_type: None,
            assign_public_ip: false,
        };
        let list = |v: &str| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "container" if !v.is_empty() => out.container = Some(v.to_string()),
                "subnets" => out.subnets = list(v),
                "securityGroups" => out.security_groups = list(v),
                "launchType" if ["FARGATE", "EC2", "EXTERNAL"].contains(&v) => {
                    out.launch_type = Some(v.to_string())
                }
                "assignPublicIp" if ["ENABLED", "DISABLED"].contains(&v) => {
                    out.assign_public_ip = v == "ENABLED"
                }
                _ => {
                    return Err(format!(
                        "ecs: unknown or bad option '{pair}'; options are container=NAME, subnets=A,B, securityGroups=A,B, launchType=FARGATE|EC2|EXTERNAL, assignPublicIp=ENABLED|DISABLED"
                    ));
                }
            }
        }
        if out.launch_type.as_deref() == Some("FARGATE") && out.subnets.is_empty() {
            return Err(format!(
                "ecs: FARGATE tasks need subnets=… (awsvpc networking), got 'ecs:{spec}'"
            ));
        }
        Ok(out)
    }
}

pub struct EcsTarget {
    client: aws_sdk_ecs::Client,
    spec: EcsSpec,
    /// The container the message goes to, named or looked up once.
    container: OnceCell<String>,
}

impl EcsTarget {
    pub fn new(client: aws_sdk_ecs::Client, spec: EcsSpec) -> EcsTarget {
        let container = match &spec.container {
            Some(c) => OnceCell::new_with(Some(c.clone())),
            None => OnceCell::new(),
        };
        EcsTarget {
            client,
            spec,
            container,
        }
    }

    /// The task definition's only container, when none was named.
    async fn container(&self) -> Result<&str, DispatchError> {
        self.container
            .get_or_try_init(|| async {
                let out = self
                    .client
                    .describe_task_definition()
                    .task_definition(&self.spec.task_definition)
                    .send()
                    .await
                    .map_err(|e| aws_failure(&e))?;
                let names: Vec<String> = out
                    .task_definition()
                    .map(|t| {
                        t.container_definitions()
                            .iter()
                            .filter_map(|c| c.name().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                match names.as_slice() {
                    [one] => Ok(one.clone()),
                    _ => Err(DispatchError::Fatal(format!(
                        "task definition {} has {} containers ({}); name the one for the job with ?container=NAME",
                        self.spec.task_definition,
                        names.len(),
                        names.join(", ")
                    ))),
                }
            })
            .await
            .map(String::as_str)
    }

    fn network(&self) -> Result<Option<NetworkConfiguration>, DispatchError> {
        if self.spec.subnets.is_empty() {
            return Ok(None);
        }
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(self.spec.subnets.clone()))
            .set_security_groups(
                (!self.spec.security_groups.is_empty()).then(|| self.spec.security_groups.clone()),
            )
            .assign_public_ip(if self.spec.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| DispatchError::Fatal(e.to_string()))?;
        Ok(Some(
            NetworkConfiguration::builder()
                .awsvpc_configuration(vpc)
                .build(),
        ))
    }
}

/// Task failures that retrying cannot cure.
const FATAL_REASONS: [&str; 2] = ["MISSING", "INACTIVE"];

#[async_trait]
impl Deliver for EcsTarget {
    async fn deliver(&self, message: &JobMessage, body: &str) -> Result<(), DispatchError> {
        let container = self.container().await?;
        let overrides = TaskOverride::builder()
            .container_overrides(
                ContainerOverride::builder()
                    .name(container)
                    .environment(
                        KeyValuePair::builder()
                            .name("JOBCAST_JOB")
                            .value(body)
                            .build(),
                    )
                    .build(),
            )
            .build();
        let out = self
            .client
            .run_task()
            .cluster(&self.spec.cluster)
            .task_definition(&self.spec.task_definition)
            .count(1)
            .started_by("jobcast")
            .client_token(&message.job_id)
            .set_launch_type(self.spec.launch_type.as_deref().map(LaunchType::from))
            .set_network_configuration(self.network()?)
            .overrides(overrides)
            .send()
            .await
            .map_err(|e| aws_failure(&e))?;
        if !out.tasks().is_empty() {
            return Ok(());
        }
        let reason = out
            .failures()
            .first()
            .map(|f| {
                format!(
                    "{}: {}",
                    f.reason().unwrap_or("no reason"),
                    f.detail().unwrap_or("")
                )
            })
            .unwrap_or_else(|| "no task was started".into());
        let line = format!("cluster {} ran no task: {reason}", self.spec.cluster);
        if FATAL_REASONS.iter().any(|r| reason.starts_with(r)) {
            Err(DispatchError::Fatal(line))
        } else {
            Err(DispatchError::Retryable(line))
        }
    }

    fn max_message_bytes(&self) -> Option<usize> {
        // The overrides' JSON around the message: the container's name,
        // the variable's name, the brackets.
        Some(MAX_OVERRIDES_BYTES - 256)
    }

    /// The message as the overrides carry it: a JSON string, escaped.
    fn message_size(&self, body: &str) -> usize {
        serde_json::to_string(body).map_or(body.len(), |s| s.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_options_and_arns() {
        let s = EcsSpec::parse(
            "jobs/encode:3?container=worker&subnets=subnet-1,subnet-2&securityGroups=sg-1&launchType=FARGATE&assignPublicIp=ENABLED",
        );
        let s = s.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (s.cluster.as_str(), s.task_definition.as_str()),
            ("jobs", "encode:3")
        );
        assert_eq!(s.container.as_deref(), Some("worker"));
        assert_eq!(s.subnets, ["subnet-1", "subnet-2"]);
        assert!(s.assign_public_ip);
        let arn = EcsSpec::parse("arn:aws:ecs:us-east-1:123456789012:cluster/jobs/arn:aws:ecs:us-east-1:123456789012:task-definition/encode:3")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            arn.cluster,
            "arn:aws:ecs:us-east-1:123456789012:cluster/jobs"
        );
        assert_eq!(
            arn.task_definition,
            "arn:aws:ecs:us-east-1:123456789012:task-definition/encode:3"
        );
        for bad in [
            "jobs",
            "/encode",
            "jobs/",
            "jobs/encode?color=red",
            "jobs/encode?launchType=FARGATE",
            "jobs/encode?launchType=SPOT",
        ] {
            assert!(EcsSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
