// JobcastGateway: everything infra/template.yaml deploys, as one construct.
//
// The resources, their settings and each function's permissions follow the
// SAM template one for one (test/parity.test.mjs compares the two, so they
// cannot drift). The template's parameters are props here, with the same
// defaults; the two secrets stay stack parameters (NoEcho) unless given.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  Annotations,
  Aws,
  CfnParameter,
  Duration,
  RemovalPolicy,
  Stack,
  aws_apigatewayv2 as apigw,
  aws_dynamodb as dynamodb,
  aws_iam as iam,
  aws_lambda as lambda,
  aws_lambda_event_sources as sources,
  aws_logs as logs,
  aws_s3 as s3,
  aws_scheduler as scheduler,
  aws_sqs as sqs,
} from 'aws-cdk-lib';
import { Construct } from 'constructs';

/** Who may start jobs and follow them: your identity provider's JWTs (contract section 9). */
export interface JwtOwners {
  /** The `iss` of your users' sign-in JWTs, e.g. https://cognito-idp.REGION.amazonaws.com/POOL_ID. */
  readonly issuer: string;
  /** The `aud` of those JWTs (your app client id). */
  readonly audience: string;
  /** Where the issuer's keys are, when not at ISSUER/.well-known/jwks.json. */
  readonly jwksUrl?: string;
  /** The most unfinished jobs one user may have (0: no limit). */
  readonly maxActiveJobsPerOwner?: number;
}

/** The ARNs your kinds' targets may be reached at: the jobs function is granted exactly these. */
export interface KindTargets {
  readonly queueArns?: string[];
  readonly functionArns?: string[];
  readonly stateMachineArns?: string[];
  readonly eventBusArns?: string[];
  /** arn:aws:ecs:REGION:ACCOUNT:task-definition/FAMILY:* for every revision. */
  readonly taskDefinitionArns?: string[];
  /** The task definitions' task and execution roles (iam:PassRole to ECS tasks only). */
  readonly taskRoleArns?: string[];
}

export interface JobcastGatewayProps {
  /** Stage of the WebSocket API: clients connect to wss://…/{stage}. Default `prod`. */
  readonly stageName?: string;
  /** Signs job tokens (32 characters or more). Default: the stack parameter `TokenSecret` (NoEcho). */
  readonly tokenSecret?: string;
  /** Signs callbackUrl webhooks and http targets. Default: the stack parameter `WebhookSecret` (NoEcho, may be empty). */
  readonly webhookSecret?: string;
  /** The web origin allowed to call the jobs API and fetch files from a browser. Default `https://example.com`. */
  readonly corsAllowOrigin?: string;
  /** How long job state and idempotency keys are kept after their last update. Default 1 day. */
  readonly retention?: Duration;
  /** Days job files are kept. Default 1. */
  readonly fileRetentionDays?: number;
  /** How long a file's download URL is valid. Default 15 minutes. */
  readonly fileUrlTtl?: Duration;
  /** Retention of every log group. Default two weeks. */
  readonly logRetention?: logs.RetentionDays;
  /** Your own job kinds: KIND → TARGET (sqs:URL, lambda:NAME, states:ARN, events:BUS, ecs:…, http(s)://URL). */
  readonly kinds?: Record<string, string>;
  /** What the jobs function may send your kinds' jobs to. */
  readonly kindTargets?: KindTargets;
  /** Owners: JWT verification on POST /jobs, GET /jobs and $connect. Default off. */
  readonly jwt?: JwtOwners;
  /** Posts to @connections in flight at least during a fan-out. Default 64. */
  readonly publishConcurrency?: number;
  /** Posts in flight at most. Default 256. */
  readonly publishMaxConcurrency?: number;
  /** Where workers send updates: the updates function's own URL, or the jobs HTTP API. Default `function-url`. */
  readonly workerUpdates?: 'function-url' | 'http-api';
  /** Coalescing window (0 or none: every update is pushed). At most 10 s. */
  readonly coalesce?: Duration;
  /** A running job of your kinds with no update this long ends worker_lost (0: off). Default 5 minutes. */
  readonly heartbeatTimeout?: Duration;
  /** A job no worker reported on this long after hand-over ends not_started (0: off). Default 1 hour. */
  readonly startTimeout?: Duration;
  /** Traces: the OTLP/HTTP endpoint every function exports spans to (e.g. the ADOT collector layer's http://localhost:4318). Default: none. */
  readonly otlpEndpoint?: string;
  /**
   * Each function's code, by binary name (connect, disconnect, message,
   * jobs_api, updates, worker, authorizer, sweeper). Default: what `cargo
   * lambda build` wrote under `lambdaDir`; a binary not built yet gets a
   * placeholder that fails every invocation, and a synth warning.
   */
  readonly code?: (binary: string) => lambda.Code;
  /** Where `cargo lambda build` writes (target/lambda). Default: the repository's, found from this file. */
  readonly lambdaDir?: string;
}

/** The binaries of lambdas/, one per function. */
export const BINARIES = ['connect', 'disconnect', 'message', 'jobs_api', 'updates', 'worker', 'authorizer', 'sweeper'] as const;

const seconds = (d: Duration | undefined, fallback: number) => (d === undefined ? fallback : d.toSeconds());

export class JobcastGateway extends Construct {
  /** wss://…/{stage}: where browsers connect. */
  public readonly webSocketUrl: string;
  /** https://…: POST /jobs and the rest of the jobs API. */
  public readonly jobsApiUrl: string;
  /** The @connections endpoint (AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI for workers). */
  public readonly managementEndpoint: string;
  /** Where job messages send workers' updates (their updateUrl). */
  public readonly workerUpdatesUrl: string;
  public readonly table: dynamodb.CfnTable;
  public readonly filesBucket: s3.CfnBucket;
  public readonly jobQueue: sqs.Queue;
  public readonly deadLetterQueue: sqs.Queue;
  public readonly webSocketApi: apigw.CfnApi;
  public readonly jobsApi: apigw.CfnApi;
  /** Every function, by binary name. */
  public readonly functions: Record<string, lambda.Function> = {};

  constructor(scope: Construct, id: string, props: JobcastGatewayProps = {}) {
    super(scope, id);
    const stack = Stack.of(this);
    const stageName = props.stageName ?? 'prod';
    if (!/^[A-Za-z0-9_-]+$/.test(stageName)) throw new Error(`stageName ${stageName}: letters, digits, _ and - only`);
    const tokenSecret =
      props.tokenSecret ??
      new CfnParameter(stack, 'TokenSecret', {
        type: 'String',
        noEcho: true,
        minLength: 32,
        description: 'Secret that signs job tokens (e.g. `openssl rand -hex 32`).',
      }).valueAsString;
    if (props.tokenSecret !== undefined && props.tokenSecret.length < 32) throw new Error('tokenSecret: 32 characters or more');
    const webhookSecret =
      props.webhookSecret ??
      new CfnParameter(stack, 'WebhookSecret', {
        type: 'String',
        noEcho: true,
        default: '',
        description: 'Secret that signs callbackUrl webhooks; empty refuses callbackUrl.',
      }).valueAsString;
    const cors = props.corsAllowOrigin ?? 'https://example.com';
    const logRetention = props.logRetention ?? logs.RetentionDays.TWO_WEEKS;
    const coalesceMs = props.coalesce?.toMilliseconds() ?? 0;
    if (coalesceMs < 0 || coalesceMs > 10_000) throw new Error('coalesce: between 0 and 10 seconds');
    const heartbeat = seconds(props.heartbeatTimeout, 300);
    const start = seconds(props.startTimeout, 3600);
    const owners = props.jwt;
    const targets = props.kindTargets ?? {};
    const viaFunctionUrl = (props.workerUpdates ?? 'function-url') === 'function-url';
    const sweeperOn = heartbeat !== 0 || start !== 0 || coalesceMs !== 0;
    const code = props.code ?? builtCode(this, props.lambdaDir ?? defaultLambdaDir());

    // ------------------------------------------------------------ state
    this.table = new dynamodb.CfnTable(this, 'Table', {
      billingMode: 'PAY_PER_REQUEST',
      attributeDefinitions: ['PK', 'SK', 'GSI1PK', 'GSI1SK', 'GSI2PK', 'GSI2SK', 'GSI3PK', 'GSI3SK'].map((attributeName) => ({
        attributeName,
        attributeType: 'S',
      })),
      keySchema: [
        { attributeName: 'PK', keyType: 'HASH' },
        { attributeName: 'SK', keyType: 'RANGE' },
      ],
      globalSecondaryIndexes: [
        {
          indexName: 'GSI1',
          keySchema: [
            { attributeName: 'GSI1PK', keyType: 'HASH' },
            { attributeName: 'GSI1SK', keyType: 'RANGE' },
          ],
          projection: { projectionType: 'INCLUDE', nonKeyAttributes: ['ttl'] },
        },
        // Sparse: running jobs of worker kinds only, by liveness deadline.
        {
          indexName: 'GSI2',
          keySchema: [
            { attributeName: 'GSI2PK', keyType: 'HASH' },
            { attributeName: 'GSI2SK', keyType: 'RANGE' },
          ],
          projection: { projectionType: 'KEYS_ONLY' },
        },
        // Sparse: jobs with an owner, newest first per owner.
        {
          indexName: 'GSI3',
          keySchema: [
            { attributeName: 'GSI3PK', keyType: 'HASH' },
            { attributeName: 'GSI3SK', keyType: 'RANGE' },
          ],
          projection: { projectionType: 'ALL' },
        },
      ],
      timeToLiveSpecification: { attributeName: 'ttl', enabled: true },
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      sseSpecification: { sseEnabled: true },
    });
    this.table.applyRemovalPolicy(RemovalPolicy.RETAIN);
    const tableArn = this.table.attrArn;

    this.filesBucket = new s3.CfnBucket(this, 'FilesBucket', {
      bucketEncryption: { serverSideEncryptionConfiguration: [{ serverSideEncryptionByDefault: { sseAlgorithm: 'AES256' } }] },
      publicAccessBlockConfiguration: {
        blockPublicAcls: true,
        blockPublicPolicy: true,
        ignorePublicAcls: true,
        restrictPublicBuckets: true,
      },
      ownershipControls: { rules: [{ objectOwnership: 'BucketOwnerEnforced' }] },
      lifecycleConfiguration: {
        rules: [
          {
            id: 'expire-job-files',
            status: 'Enabled',
            prefix: 'jobs/',
            expirationInDays: props.fileRetentionDays ?? 1,
            abortIncompleteMultipartUpload: { daysAfterInitiation: 1 },
          },
        ],
      },
      corsConfiguration: {
        corsRules: [
          {
            allowedMethods: ['GET', 'HEAD'],
            allowedOrigins: [cors],
            allowedHeaders: ['*'],
            exposedHeaders: ['Content-Length', 'Content-Type', 'Content-Disposition'],
            maxAge: 600,
          },
        ],
      },
    });
    const bucketArn = this.filesBucket.attrArn;
    new s3.CfnBucketPolicy(this, 'FilesBucketPolicy', {
      bucket: this.filesBucket.ref,
      policyDocument: {
        Statement: [
          {
            Sid: 'TlsOnly',
            Effect: 'Deny',
            Principal: '*',
            Action: 's3:*',
            Resource: [bucketArn, `${bucketArn}/*`],
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          },
        ],
      },
    });

    this.deadLetterQueue = new sqs.Queue(this, 'JobDeadLetterQueue', {
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
    });
    this.jobQueue = new sqs.Queue(this, 'JobQueue', {
      // At least six times the worker's timeout, as Lambda recommends.
      visibilityTimeout: Duration.seconds(5400),
      retentionPeriod: Duration.days(4),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: 3 },
    });

    // ---------------------------------------------------------- WebSocket API
    this.webSocketApi = new apigw.CfnApi(this, 'WebSocketApi', {
      name: `${Aws.STACK_NAME}-ws`,
      protocolType: 'WEBSOCKET',
      routeSelectionExpression: '$request.body.action',
    });
    const wsId = this.webSocketApi.ref;
    const host = `${wsId}.execute-api.${Aws.REGION}.${Aws.URL_SUFFIX}`;
    this.webSocketUrl = `wss://${host}/${stageName}`;
    this.managementEndpoint = `https://${host}/${stageName}`;
    const manageConnections = new iam.PolicyStatement({
      actions: ['execute-api:ManageConnections'],
      resources: [`arn:${Aws.PARTITION}:execute-api:${Aws.REGION}:${Aws.ACCOUNT_ID}:${wsId}/${stageName}/POST/@connections/*`],
    });

    // --------------------------------------------------------------- functions
    const environment = {
      JOBCAST_TABLE: this.table.ref,
      JOBCAST_RETENTION_SECONDS: String(seconds(props.retention, 86400)),
      JOBCAST_MANAGEMENT_ENDPOINT: this.managementEndpoint,
      JOBCAST_PUBLISH_CONCURRENCY: String(props.publishConcurrency ?? 64),
      JOBCAST_PUBLISH_MAX_CONCURRENCY: String(props.publishMaxConcurrency ?? 256),
      JOBCAST_FILES_BUCKET: this.filesBucket.ref,
      JOBCAST_FILE_URL_TTL_SECONDS: String(seconds(props.fileUrlTtl, 900)),
      OTEL_EXPORTER_OTLP_ENDPOINT: props.otlpEndpoint ?? '',
      RUST_LOG: 'info',
    };
    const fn = (id: string, binary: string, opts: { timeout?: number; env?: Record<string, string>; statements?: iam.PolicyStatement[] }) => {
      const logGroup = new logs.LogGroup(this, `${id}Logs`, { retention: logRetention, removalPolicy: RemovalPolicy.DESTROY });
      const f = new lambda.Function(this, id, {
        runtime: lambda.Runtime.PROVIDED_AL2023,
        architecture: lambda.Architecture.ARM_64,
        handler: 'bootstrap',
        code: code(binary),
        memorySize: 256,
        timeout: Duration.seconds(opts.timeout ?? 10),
        logGroup,
        environment: { ...environment, ...opts.env },
      });
      for (const s of opts.statements ?? []) f.addToRolePolicy(s);
      // The construct also makes the function depend on its role, which its
      // Role GetAtt already does: harmless, and cfn-lint's W3005 says so.
      const cfn = f.node.defaultChild as lambda.CfnFunction;
      cfn.addMetadata('cfn-lint', { config: { ignore_checks: ['W3005'] } });
      // Which binary of lambdas/ it runs (as BuildProperties.Binary in the SAM template).
      cfn.addMetadata('jobcast:binary', binary);
      this.functions[binary] = f;
      return f;
    };
    const allow = (actions: string[], resources: string[]) => new iam.PolicyStatement({ actions, resources });
    const filesRead = allow(['s3:GetObject'], [`${bucketArn}/jobs/*`]);
    const filesReadWrite = allow(['s3:GetObject', 's3:PutObject'], [`${bucketArn}/jobs/*`]);
    const itemsRw = allow(['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:Query', 'dynamodb:DeleteItem'], [tableArn]);
    const index = (name: string) => allow(['dynamodb:Query'], [`${tableArn}/index/${name}`]);

    const sweeper = sweeperOn
      ? fn('SweeperFunction', 'sweeper', {
          timeout: 60,
          env: { JOBCAST_WEBHOOK_SECRET: webhookSecret },
          statements: [
            filesRead,
            allow(['dynamodb:GetItem', 'dynamodb:UpdateItem', 'dynamodb:Query', 'dynamodb:DeleteItem'], [tableArn]),
            index('GSI2'),
            manageConnections,
          ],
        })
      : undefined;
    const flush = (): iam.PolicyStatement[] => (coalesceMs && sweeper ? [allow(['lambda:InvokeFunction'], [sweeper.functionArn])] : []);
    const flushEnv = { JOBCAST_COALESCE_MS: String(coalesceMs), JOBCAST_FLUSH_FUNCTION: coalesceMs && sweeper ? sweeper.functionName : '' };

    const connect = fn('ConnectFunction', 'connect', {
      env: { JOBCAST_TOKEN_SECRET: tokenSecret },
      // A subscription is an UpdateItem, so a later subscribe keeps the streams an earlier one asked for.
      statements: [allow(['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'], [tableArn])],
    });
    const disconnect = fn('DisconnectFunction', 'disconnect', {
      statements: [allow(['dynamodb:BatchWriteItem', 'dynamodb:DeleteItem'], [tableArn]), index('GSI1')],
    });
    const message = fn('MessageFunction', 'message', {
      env: { JOBCAST_TOKEN_SECRET: tokenSecret },
      statements: [
        filesRead,
        allow(['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:Query'], [tableArn]),
        index('GSI1'),
        index('GSI3'),
        manageConnections,
      ],
    });

    let updatesUrl: lambda.CfnUrl | undefined;
    if (viaFunctionUrl) {
      const updates = fn('UpdatesFunction', 'updates', {
        env: {
          JOBCAST_TOKEN_SECRET: tokenSecret,
          JOBCAST_WEBHOOK_SECRET: webhookSecret,
          JOBCAST_HEARTBEAT_TIMEOUT_SECONDS: String(heartbeat),
          ...flushEnv,
        },
        statements: [filesReadWrite, itemsRw, ...flush(), manageConnections],
      });
      // Public: each request must carry its job's worker token. Both grants a
      // public function URL needs since October 2025, spelled out.
      updatesUrl = new lambda.CfnUrl(this, 'UpdatesFunctionUrl', {
        targetFunctionArn: updates.functionArn,
        authType: 'NONE',
        invokeMode: 'BUFFERED',
      });
      new lambda.CfnPermission(this, 'UpdatesUrlPermission', {
        action: 'lambda:InvokeFunctionUrl',
        functionName: updates.functionName,
        principal: '*',
        functionUrlAuthType: 'NONE',
      });
      new lambda.CfnPermission(this, 'UpdatesUrlInvokePermission', {
        action: 'lambda:InvokeFunction',
        functionName: updates.functionName,
        principal: '*',
        invokedViaFunctionUrl: true,
      });
    }

    const kindStatements: iam.PolicyStatement[] = [];
    const grant = (actions: string[], arns: string[] | undefined) => {
      if (arns?.length) kindStatements.push(allow(actions, arns));
    };
    grant(['sqs:SendMessage'], targets.queueArns);
    grant(['lambda:InvokeFunction'], targets.functionArns);
    grant(['states:StartExecution'], targets.stateMachineArns);
    grant(['events:PutEvents'], targets.eventBusArns);
    grant(['ecs:RunTask'], targets.taskDefinitionArns);
    // An ecs: kind naming no container reads the task definition's only one.
    if (targets.taskDefinitionArns?.length) kindStatements.push(allow(['ecs:DescribeTaskDefinition'], ['*']));
    if (targets.taskRoleArns?.length) {
      kindStatements.push(
        new iam.PolicyStatement({
          actions: ['iam:PassRole'],
          resources: targets.taskRoleArns,
          conditions: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
        }),
      );
    }

    const jobsFunction = fn('JobsApiFunction', 'jobs_api', {
      env: {
        JOBCAST_TOKEN_SECRET: tokenSecret,
        JOBCAST_WEBHOOK_SECRET: webhookSecret,
        JOBCAST_QUEUE_URL: this.jobQueue.queueUrl,
        JOBCAST_KINDS: Object.entries(props.kinds ?? {})
          .map(([k, t]) => `${k}=${t}`)
          .join(','),
        JOBCAST_HEARTBEAT_TIMEOUT_SECONDS: String(heartbeat),
        JOBCAST_START_TIMEOUT_SECONDS: String(start),
        JOBCAST_WEBSOCKET_URL: this.webSocketUrl,
        JOBCAST_UPDATE_URL: updatesUrl ? updatesUrl.attrFunctionUrl : '',
        JOBCAST_JWT_ISSUER: owners?.issuer ?? '',
        JOBCAST_JWT_AUDIENCE: owners?.audience ?? '',
        JOBCAST_JWKS_URL: owners?.jwksUrl ?? '',
        JOBCAST_MAX_ACTIVE_JOBS_PER_OWNER: String(owners?.maxActiveJobsPerOwner ?? 0),
        ...flushEnv,
      },
      statements: [
        filesReadWrite,
        itemsRw,
        index('GSI3'),
        allow(['sqs:SendMessage'], [this.jobQueue.queueArn]),
        ...kindStatements,
        ...flush(),
        manageConnections,
      ],
    });

    const worker = fn('WorkerFunction', 'worker', {
      timeout: 900,
      env: { JOBCAST_WEBHOOK_SECRET: webhookSecret, ...flushEnv },
      statements: [itemsRw, ...flush(), manageConnections],
    });
    worker.addEventSource(new sources.SqsEventSource(this.jobQueue, { batchSize: 1, reportBatchItemFailures: true }));

    const authorizer = owners
      ? fn('AuthorizerFunction', 'authorizer', {
          env: {
            JOBCAST_JWT_ISSUER: owners.issuer,
            JOBCAST_JWT_AUDIENCE: owners.audience,
            JOBCAST_JWKS_URL: owners.jwksUrl ?? '',
          },
        })
      : undefined;

    if (sweeper) {
      // Once a minute: the liveness sweep (worker_lost, not_started).
      const role = new iam.Role(this, 'SweeperScheduleRole', {
        assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com'),
        inlinePolicies: {
          invoke: new iam.PolicyDocument({ statements: [allow(['lambda:InvokeFunction'], [sweeper.functionArn])] }),
        },
      });
      new scheduler.CfnSchedule(this, 'SweeperSchedule', {
        scheduleExpression: 'rate(1 minute)',
        description: 'jobcast liveness sweep (worker_lost, not_started)',
        flexibleTimeWindow: { mode: 'OFF' },
        target: { arn: sweeper.functionArn, roleArn: role.roleArn },
      });
    }

    // ------------------------------------------------- WebSocket routes
    const wsAccessLogs = new logs.LogGroup(this, 'WebSocketAccessLogs', {
      logGroupName: `/aws/apigateway/${Aws.STACK_NAME}-ws`,
      retention: logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const lambdaUri = (f: lambda.IFunction) =>
      `arn:${Aws.PARTITION}:apigateway:${Aws.REGION}:lambda:path/2015-03-31/functions/${f.functionArn}/invocations`;
    const wsIntegration = (id: string, f: lambda.Function) => {
      new lambda.CfnPermission(this, `${id}Permission`, {
        action: 'lambda:InvokeFunction',
        functionName: f.functionName,
        principal: 'apigateway.amazonaws.com',
        sourceArn: `arn:${Aws.PARTITION}:execute-api:${Aws.REGION}:${Aws.ACCOUNT_ID}:${wsId}/*`,
      });
      return new apigw.CfnIntegration(this, `${id}Integration`, {
        apiId: wsId,
        integrationType: 'AWS_PROXY',
        integrationUri: lambdaUri(f),
      });
    };
    const connectIntegration = wsIntegration('Connect', connect);
    const disconnectIntegration = wsIntegration('Disconnect', disconnect);
    const messageIntegration = wsIntegration('Message', message);

    let connectAuthorizer: apigw.CfnAuthorizer | undefined;
    if (authorizer) {
      // Verifies the JWT of ?access_token= or Sec-WebSocket-Protocol: jobcast, <JWT>;
      // no token is allowed (job tokens still work). Host: every handshake has one.
      connectAuthorizer = new apigw.CfnAuthorizer(this, 'ConnectAuthorizer', {
        apiId: wsId,
        name: 'owners',
        authorizerType: 'REQUEST',
        authorizerUri: lambdaUri(authorizer),
        identitySource: ['route.request.header.Host'],
      });
      new lambda.CfnPermission(this, 'AuthorizerPermission', {
        action: 'lambda:InvokeFunction',
        functionName: authorizer.functionName,
        principal: 'apigateway.amazonaws.com',
        sourceArn: `arn:${Aws.PARTITION}:execute-api:${Aws.REGION}:${Aws.ACCOUNT_ID}:${wsId}/authorizers/${connectAuthorizer.ref}`,
      });
    }
    const routes = [
      ['ConnectRoute', '$connect', 'Connect', connectIntegration],
      ['DisconnectRoute', '$disconnect', 'Disconnect', disconnectIntegration],
      ['SubscribeRoute', 'subscribe', 'Subscribe', messageIntegration],
      ['UnsubscribeRoute', 'unsubscribe', 'Unsubscribe', messageIntegration],
      ['SyncRoute', 'sync', 'Sync', messageIntegration],
      ['PingRoute', 'ping', 'Ping', messageIntegration],
      ['DefaultRoute', '$default', 'Default', messageIntegration],
    ] as const;
    const deployment = new apigw.CfnDeployment(this, 'WebSocketDeployment', { apiId: wsId });
    for (const [id, routeKey, operationName, integration] of routes) {
      const guarded = routeKey === '$connect' && connectAuthorizer;
      const route = new apigw.CfnRoute(this, id, {
        apiId: wsId,
        routeKey,
        operationName,
        target: `integrations/${integration.ref}`,
        ...(routeKey === '$connect' ? { authorizationType: guarded ? 'CUSTOM' : 'NONE' } : {}),
        ...(guarded ? { authorizerId: connectAuthorizer!.ref } : {}),
      });
      deployment.addResourceDependency(route);
    }
    new apigw.CfnStage(this, 'WebSocketStage', {
      apiId: wsId,
      stageName,
      deploymentId: deployment.ref,
      defaultRouteSettings: { throttlingBurstLimit: 500, throttlingRateLimit: 1000 },
      accessLogSettings: {
        destinationArn: wsAccessLogs.logGroupArn,
        format: JSON.stringify({
          requestId: '$context.requestId',
          connectionId: '$context.connectionId',
          eventType: '$context.eventType',
          routeKey: '$context.routeKey',
          status: '$context.status',
          ip: '$context.identity.sourceIp',
          requestTime: '$context.requestTime',
          integrationError: '$context.integrationErrorMessage',
          disconnectStatusCode: '$context.disconnectStatusCode',
          disconnectReason: '$context.disconnectReason',
        }),
      },
    });

    // -------------------------------------------------------- jobs HTTP API
    this.jobsApi = new apigw.CfnApi(this, 'JobsApi', {
      name: `${Aws.STACK_NAME}-jobs`,
      protocolType: 'HTTP',
      corsConfiguration: {
        allowOrigins: [cors],
        allowMethods: ['GET', 'POST', 'DELETE'],
        allowHeaders: ['authorization', 'content-type', 'idempotency-key'],
        exposeHeaders: ['location', 'retry-after', 'idempotent-replayed'],
        maxAge: 600,
      },
    });
    const jobsId = this.jobsApi.ref;
    this.jobsApiUrl = `https://${jobsId}.execute-api.${Aws.REGION}.${Aws.URL_SUFFIX}`;
    this.workerUpdatesUrl = updatesUrl ? updatesUrl.attrFunctionUrl : this.jobsApiUrl;
    const jobsAccessLogs = new logs.LogGroup(this, 'JobsApiAccessLogs', {
      logGroupName: `/aws/apigateway/${Aws.STACK_NAME}-jobs`,
      retention: logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    new apigw.CfnStage(this, 'JobsApiStage', {
      apiId: jobsId,
      stageName: '$default',
      autoDeploy: true,
      defaultRouteSettings: { throttlingBurstLimit: 200, throttlingRateLimit: 100 },
      accessLogSettings: {
        destinationArn: jobsAccessLogs.logGroupArn,
        format: JSON.stringify({
          requestId: '$context.requestId',
          ip: '$context.identity.sourceIp',
          routeKey: '$context.routeKey',
          status: '$context.status',
          latency: '$context.responseLatency',
          integrationError: '$context.integrationErrorMessage',
        }),
      },
    });
    const jobsIntegration = new apigw.CfnIntegration(this, 'JobsIntegration', {
      apiId: jobsId,
      integrationType: 'AWS_PROXY',
      integrationUri: jobsFunction.functionArn,
      payloadFormatVersion: '2.0',
    });
    new lambda.CfnPermission(this, 'JobsIntegrationPermission', {
      action: 'lambda:InvokeFunction',
      functionName: jobsFunction.functionName,
      principal: 'apigateway.amazonaws.com',
      sourceArn: `arn:${Aws.PARTITION}:execute-api:${Aws.REGION}:${Aws.ACCOUNT_ID}:${jobsId}/*`,
    });
    // POST and GET /jobs take the caller's JWT: with owners, API Gateway checks it first.
    const jwtAuthorizer = owners
      ? new apigw.CfnAuthorizer(this, 'JobsJwtAuthorizer', {
          apiId: jobsId,
          name: 'owners',
          authorizerType: 'JWT',
          identitySource: ['$request.header.Authorization'],
          jwtConfiguration: { issuer: owners.issuer, audience: [owners.audience] },
        })
      : undefined;
    const jobRoutes: [string, string, boolean][] = [
      ['CreateJobRoute', 'POST /jobs', true],
      ['ListJobsRoute', 'GET /jobs', true],
      ['GetJobRoute', 'GET /jobs/{jobId}', false],
      ['CancelJobRoute', 'DELETE /jobs/{jobId}', false],
      ['GetJobStreamRoute', 'GET /jobs/{jobId}/streams/{name}', false],
      ['JobFilesRoute', 'POST /jobs/{jobId}/files', false],
      ['JobUpdatesRoute', 'POST /jobs/{jobId}/updates', false],
    ];
    for (const [id, routeKey, withJwt] of jobRoutes) {
      const guarded = withJwt && jwtAuthorizer;
      new apigw.CfnRoute(this, id, {
        apiId: jobsId,
        routeKey,
        target: `integrations/${jobsIntegration.ref}`,
        authorizationType: guarded ? 'JWT' : 'NONE',
        ...(guarded ? { authorizerId: jwtAuthorizer!.ref } : {}),
      });
    }
  }
}

/** target/lambda of the repository this construct lives in. */
function defaultLambdaDir(): string {
  // dist/lib/ or lib/ under infra/cdk: the repository is three levels up from infra/cdk.
  const cdkDir = path.basename(path.dirname(__dirname)) === 'dist' ? path.resolve(__dirname, '../..') : path.resolve(__dirname, '..');
  return path.resolve(cdkDir, '../../target/lambda');
}

/**
 * What `cargo lambda build` wrote for a binary: target/lambda/NAME/ with its
 * `bootstrap` (a folder asset, which `jobcast emulate` and `sam local` can
 * run from cdk.out), else its bootstrap.zip; when neither is there, code
 * that fails every invocation saying so, and a synth warning.
 */
function builtCode(scope: Construct, lambdaDir: string): (binary: string) => lambda.Code {
  let placeholder: string | undefined;
  return (binary) => {
    const dir = path.join(lambdaDir, binary);
    if (fs.existsSync(path.join(dir, 'bootstrap'))) return lambda.Code.fromAsset(dir, { exclude: ['*.zip'] });
    if (fs.existsSync(path.join(dir, 'bootstrap.zip'))) return lambda.Code.fromAsset(path.join(dir, 'bootstrap.zip'));
    Annotations.of(scope).addWarningV2(
      `jobcast:unbuilt:${binary}`,
      `${binary} is not built (no ${dir}/bootstrap): placeholder code that fails every invocation; run \`cargo lambda build --release --arm64 -p jobcast-lambdas\` and synth again before deploying`,
    );
    if (!placeholder) {
      placeholder = fs.mkdtempSync(path.join(os.tmpdir(), 'jobcast-unbuilt-'));
      fs.writeFileSync(
        path.join(placeholder, 'bootstrap'),
        '#!/bin/sh\necho "jobcast: this function was deployed before cargo lambda build; build it and deploy again" >&2\nexit 1\n',
        { mode: 0o755 },
      );
    }
    return lambda.Code.fromAsset(placeholder);
  };
}
