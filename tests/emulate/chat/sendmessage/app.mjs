// sendmessage: broadcast `data` to every connection; forget the gone ones.
import { DynamoDBClient, ScanCommand, DeleteItemCommand } from "@aws-sdk/client-dynamodb";
import {
  ApiGatewayManagementApiClient,
  PostToConnectionCommand,
  GoneException,
} from "@aws-sdk/client-apigatewaymanagementapi";

const ddb = new DynamoDBClient({});

export const handler = async (event) => {
  const { domainName, stage } = event.requestContext;
  // In AWS the endpoint is the API's own; locally AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI
  // (read by the SDK when no endpoint is given) points at the emulator.
  const api = new ApiGatewayManagementApiClient(
    process.env.AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI ? {} : { endpoint: `https://${domainName}/${stage}` },
  );
  const data = JSON.parse(event.body).data;
  const { Items } = await ddb.send(new ScanCommand({ TableName: process.env.TABLE_NAME, ProjectionExpression: "connectionId" }));
  await Promise.all(Items.map(async ({ connectionId }) => {
    try {
      await api.send(new PostToConnectionCommand({ ConnectionId: connectionId.S, Data: data }));
    } catch (e) {
      if (e instanceof GoneException) {
        await ddb.send(new DeleteItemCommand({ TableName: process.env.TABLE_NAME, Key: { connectionId } }));
      } else {
        throw e;
      }
    }
  }));
  return { statusCode: 200, body: "Data sent." };
};
