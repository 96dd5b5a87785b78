// An ES module handler: module state survives between invocations.
let calls = 0;
export const handler = async (event, context) => {
  calls += 1;
  console.log(`node got ${event.body}`);
  const body = JSON.parse(event.body);
  if (body.throw) throw new TypeError("thrown on purpose");
  // An answer over Lambda's 6 MB limit.
  if (body.big) return { statusCode: 200, body: "x".repeat(7 * 1024 * 1024) };
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
