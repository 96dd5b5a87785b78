// Creates the chat's connections table in DynamoDB Local (the template's
// ConnectionsTable), for scripts/emulate-chat.sh.
import { DynamoDBClient, CreateTableCommand } from "@aws-sdk/client-dynamodb";

const ddb = new DynamoDBClient({});
await ddb.send(new CreateTableCommand({
  TableName: process.env.CHAT_TABLE,
  AttributeDefinitions: [{ AttributeName: "connectionId", AttributeType: "S" }],
  KeySchema: [{ AttributeName: "connectionId", KeyType: "HASH" }],
  BillingMode: "PAY_PER_REQUEST",
}));
