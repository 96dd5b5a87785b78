// An ES module handler: module state survives between invocations.
let calls = 0;
export const handler = async (event, context) => {
  calls += 1;
  console.log(`node got ${event.body}`);
  const body = JSON.parse(event.body);
  if (body.throw) throw new TypeError("thrown on purpose");
  return {
    statusCode: 200,
    body: JSON.stringify({
      lang: "node",
      calls,
      greeting: process.env.GREETING,
      requestId: context.awsRequestId,
      remaining: context.getRemainingTimeInMillis(),
      manage: process.env.AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI,
    }),
  };
};
