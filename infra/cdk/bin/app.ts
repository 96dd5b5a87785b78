// The example app: one stack holding a JobcastGateway, as a user's own app
// would (`npm run synth` writes cdk.out/JobcastExample.template.json).
// Synthesizes with no account and no function built (placeholders, warned).
import { App, CfnOutput, Duration, Stack } from 'aws-cdk-lib';
import { JobcastGateway } from '../lib';

const app = new App();
const stack = new Stack(app, 'JobcastExample', {
  description: 'jobcast: live progress for long-running jobs (CDK example)',
});
const progress = new JobcastGateway(stack, 'Progress', {
  // Where `cargo lambda build` wrote the functions (default: the repository's target/lambda).
  lambdaDir: process.env.JOBCAST_LAMBDA_DIR,
  kinds: { export: 'sqs:https://sqs.us-east-1.amazonaws.com/123456789012/exports' },
  kindTargets: { queueArns: ['arn:aws:sqs:us-east-1:123456789012:exports'] },
  coalesce: Duration.millis(500),
  // Owners on: set your identity provider's issuer and app client id.
  jwt: app.node.tryGetContext('jwtIssuer')
    ? { issuer: app.node.tryGetContext('jwtIssuer'), audience: app.node.tryGetContext('jwtAudience') ?? '' }
    : undefined,
});
new CfnOutput(stack, 'WebSocketUrl', { value: progress.webSocketUrl });
new CfnOutput(stack, 'JobsApiUrl', { value: progress.jobsApiUrl });
new CfnOutput(stack, 'WorkerUpdatesUrl', { value: progress.workerUpdatesUrl });
new CfnOutput(stack, 'ManagementEndpoint', { value: progress.managementEndpoint });
