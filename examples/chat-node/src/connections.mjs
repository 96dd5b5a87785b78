// Where the chat keeps its connection ids.
//
// In AWS: the DynamoDB table the template creates (TABLE_NAME). Locally, under
// `jobcast emulate` or `sam local` (both set AWS_SAM_LOCAL) and with no
// DynamoDB endpoint given (AWS_ENDPOINT_URL_DYNAMODB), one file per connection
// in a directory under the system's temporary directory, so the example needs
// nothing but node. Each function runs in its own process, as in Lambda: the
// list cannot live in memory.
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

const table = process.env.TABLE_NAME;
const local = process.env.AWS_SAM_LOCAL === "true" && !process.env.AWS_ENDPOINT_URL_DYNAMODB;

function inDirectory() {
  const dir = path.join(tmpdir(), `jobcast-chat-${table}`);
  // Connection ids are base64-like; encoded, they are safe file names anywhere.
  const file = (id) => path.join(dir, encodeURIComponent(id));
  return {
    async add(id) {
      await mkdir(dir, { recursive: true });
      await writeFile(file(id), "");
    },
    async remove(id) {
      await rm(file(id), { force: true });
    },
    async all() {
      try {
        return (await readdir(dir)).map(decodeURIComponent);
      } catch (e) {
        if (e.code === "ENOENT") return [];
        throw e;
      }
    },
  };
}

async function inDynamoDB() {
  const { DynamoDBClient, PutItemCommand, DeleteItemCommand, paginateScan } = await import(
    "@aws-sdk/client-dynamodb"
  );
  const ddb = new DynamoDBClient({});
  const key = (id) => ({ connectionId: { S: id } });
  return {
    async add(id) {
      await ddb.send(new PutItemCommand({ TableName: table, Item: key(id) }));
    },
    async remove(id) {
      await ddb.send(new DeleteItemCommand({ TableName: table, Key: key(id) }));
    },
    async all() {
      const ids = [];
      const pages = paginateScan({ client: ddb }, { TableName: table, ProjectionExpression: "connectionId" });
      for await (const page of pages) {
        for (const item of page.Items ?? []) ids.push(item.connectionId.S);
      }
      return ids;
    },
  };
}

export const connections = local ? inDirectory() : await inDynamoDB();
