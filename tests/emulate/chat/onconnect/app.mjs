// $connect: remember the connection.
import { DynamoDBClient, PutItemCommand } from "@aws-sdk/client-dynamodb";

const ddb = new DynamoDBClient({});

export const handler = async (event) => {
  await ddb.send(new PutItemCommand({
    TableName: process.env.TABLE_NAME,
    Item: { connectionId: { S: event.requestContext.connectionId } },
  }));
  return { statusCode: 200, body: "Connected." };
};
