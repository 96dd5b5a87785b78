// The configurations test/parity.test.mjs compares, each as the construct's
// props and as the SAM template's parameters for the same deployment.
// `node test/configs.js OUTDIR` synthesizes one stack per configuration.
const { App, Duration, Stack } = require('aws-cdk-lib');
const { JobcastGateway } = require('../dist/lib');

const configs = {
  // Everything at its default.
  Defaults: { props: {}, sam: {} },
  // Owners, coalescing, updates through the HTTP API, kinds of every target.
  Everything: {
    props: {
      stageName: 'live',
      corsAllowOrigin: 'https://app.example.com',
      coalesce: Duration.millis(500),
      workerUpdates: 'http-api',
      heartbeatTimeout: Duration.minutes(2),
      startTimeout: Duration.minutes(30),
      retention: Duration.hours(6),
      fileRetentionDays: 2,
      fileUrlTtl: Duration.minutes(5),
      publishConcurrency: 32,
      publishMaxConcurrency: 128,
      kinds: { export: 'sqs:https://sqs.us-east-1.amazonaws.com/123456789012/exports', thumb: 'lambda:thumbnailer' },
      kindTargets: {
        queueArns: ['arn:aws:sqs:us-east-1:123456789012:exports'],
        functionArns: ['arn:aws:lambda:us-east-1:123456789012:function:thumbnailer'],
        stateMachineArns: ['arn:aws:states:us-east-1:123456789012:stateMachine:render'],
        eventBusArns: ['arn:aws:events:us-east-1:123456789012:event-bus/jobs'],
        taskDefinitionArns: ['arn:aws:ecs:us-east-1:123456789012:task-definition/encode:*'],
        taskRoleArns: ['arn:aws:iam::123456789012:role/encode-task'],
      },
      jwt: { issuer: 'https://issuer.example.com', audience: 'app-client', jwksUrl: 'https://issuer.example.com/keys', maxActiveJobsPerOwner: 5 },
      otlpEndpoint: 'http://localhost:4318',
    },
    sam: {
      StageName: 'live',
      CorsAllowOrigin: 'https://app.example.com',
      CoalesceMs: 500,
      WorkerUpdates: 'http-api',
      HeartbeatTimeoutSeconds: 120,
      StartTimeoutSeconds: 1800,
      RetentionSeconds: 21600,
      FileRetentionDays: 2,
      FileUrlTtlSeconds: 300,
      PublishConcurrency: 32,
      PublishMaxConcurrency: 128,
      Kinds: 'export=sqs:https://sqs.us-east-1.amazonaws.com/123456789012/exports,thumb=lambda:thumbnailer',
      KindQueueArns: 'arn:aws:sqs:us-east-1:123456789012:exports',
      KindFunctionArns: 'arn:aws:lambda:us-east-1:123456789012:function:thumbnailer',
      KindStateMachineArns: 'arn:aws:states:us-east-1:123456789012:stateMachine:render',
      KindEventBusArns: 'arn:aws:events:us-east-1:123456789012:event-bus/jobs',
      KindTaskDefinitionArns: 'arn:aws:ecs:us-east-1:123456789012:task-definition/encode:*',
      KindTaskRoleArns: 'arn:aws:iam::123456789012:role/encode-task',
      JwtIssuer: 'https://issuer.example.com',
      JwtAudience: 'app-client',
      JwksUrl: 'https://issuer.example.com/keys',
      MaxActiveJobsPerOwner: 5,
      OtlpEndpoint: 'http://localhost:4318',
    },
  },
  // No sweeper: liveness, start deadline and coalescing all off.
  NoSweeper: {
    props: { heartbeatTimeout: Duration.seconds(0), startTimeout: Duration.seconds(0) },
    sam: { HeartbeatTimeoutSeconds: 0, StartTimeoutSeconds: 0 },
  },
};
module.exports = { configs };

if (require.main === module) {
  const outdir = process.argv[2];
  const app = new App({ outdir, context: { 'aws:cdk:enable-path-metadata': true } });
  for (const [name, c] of Object.entries(configs)) {
    new JobcastGateway(new Stack(app, name), 'Progress', { lambdaDir: process.env.JOBCAST_LAMBDA_DIR, ...c.props });
  }
  app.synth();
}
