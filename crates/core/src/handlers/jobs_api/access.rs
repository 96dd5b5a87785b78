//! Who may create, read and cancel a job.
//!
//! Without owners (no issuer configured) nothing changes from before:
//! anyone may create and read, cancelling needs the job's token. With
//! owners, `POST /jobs` needs the caller's JWT (401 without, 403 invalid);
//! reading and cancelling need the job's token or its owner's JWT: no
//! credential is 401, an invalid JWT 403 with the reason, and any other
//! credential 404, so a job id alone tells nothing about whether it exists.

use super::{Deps, presented_token, token_problem, unauthorized};
use crate::auth::JwtVerifier;
use crate::store::JobRecord;
use crate::token::TokenError;
use aws_lambda_events::apigw::ApiGatewayV2httpRequest;

use super::Problem;

fn not_found(id: &str) -> Problem {
    Problem::new(404, "not_found", format!("job {id} not found"))
}

/// A JWT is three base64url parts, the first a JSON object (`eyJ`); a job
/// token is not.
fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.matches('.').count() == 2
}

fn verify(verifier: &JwtVerifier, token: &str) -> Result<String, Problem> {
    verifier
        .verify(token)
        .map(|identity| identity.sub)
        .map_err(|why| Problem::new(403, "forbidden", format!("token refused: {why}")))
}

/// The owner a new job gets: None without owners; with owners, the `sub`
/// of the caller's bearer JWT.
pub(super) fn creator(
    deps: &Deps,
    req: &ApiGatewayV2httpRequest,
) -> Result<Option<String>, Problem> {
    let Some(verifier) = &deps.identity else {
        return Ok(None);
    };
    let Some(token) = presented_token(req, false) else {
        return Err(unauthorized(
            "creating a job needs your sign-in token: Authorization: Bearer <JWT>",
        ));
    };
    verify(verifier, &token).map(Some)
}

/// Job `id`, read from the store, if the request may `need` it; the
/// refusal otherwise (a missing job is 404 after the credential checks, so
/// a refusal never tells whether it exists).
pub(super) async fn load(
    deps: &Deps,
    req: &ApiGatewayV2httpRequest,
    id: &str,
    need: Need,
) -> Result<JobRecord, Problem> {
    let job = deps
        .store()
        .get_job(id)
        .await
        .map_err(super::store_problem)?;
    check(deps, req, id, job.as_ref(), need)?;
    job.ok_or_else(|| not_found(id))
}

/// What a request wants to do with a job.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    Read,
    Cancel,
}

/// Whether the request may `need` job `id` (`job`: as stored, None when
/// there is no such job).
fn check(
    deps: &Deps,
    req: &ApiGatewayV2httpRequest,
    id: &str,
    job: Option<&JobRecord>,
    need: Need,
) -> Result<(), Problem> {
    let token = presented_token(req, true);
    let Some(verifier) = &deps.identity else {
        // Without owners: reading is open, cancelling needs the job token.
        if need == Need::Read {
            return job.map(|_| ()).ok_or_else(|| not_found(id));
        }
        let Some(token) = token else {
            return Err(unauthorized(
                "cancelling needs the job's token (from POST /jobs): Authorization: Bearer <token> or ?token=",
            ));
        };
        deps.tokens
            .verify(id, &token, deps.clock.now().timestamp())
            .map_err(|e| token_problem(e, "job"))?;
        return job.map(|_| ()).ok_or_else(|| not_found(id));
    };
    let Some(token) = token else {
        return Err(unauthorized(
            "this job needs its token or its owner's sign-in token: Authorization: Bearer <token>",
        ));
    };
    if looks_like_jwt(&token) {
        let sub = verify(verifier, &token)?;
        return match job {
            Some(j) if j.owner.as_deref() == Some(sub.as_str()) => Ok(()),
            _ => Err(not_found(id)),
        };
    }
    match deps.tokens.verify(id, &token, deps.clock.now().timestamp()) {
        Ok(()) if job.is_some() => Ok(()),
        Err(TokenError::Expired) if job.is_some() => Err(token_problem(TokenError::Expired, "job")),
        _ => Err(not_found(id)),
    }
}
