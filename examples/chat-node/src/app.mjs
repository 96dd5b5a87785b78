// The chat's three WebSocket routes. The client sends
//   {"action": "sendmessage", "name": "alice", "text": "hello"}
// and every connected client receives {"from": "alice", "text": "hello"}.
import {
  ApiGatewayManagementApiClient,
  GoneException,
  PostToConnectionCommand,
} from "@aws-sdk/client-apigatewaymanagementapi";
import { connections } from "./connections.mjs";

const MAX_TEXT = 1000;

// One client per endpoint, made once and reused while the process is warm.
// In AWS the endpoint is the API's own; locally AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI
// (which `jobcast emulate` sets, and the SDK reads) points at the emulator.
const clients = new Map();
function management({ domainName, stage }) {
  const endpoint = process.env.AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI ? undefined : `https://${domainName}/${stage}`;
  if (!clients.has(endpoint)) clients.set(endpoint, new ApiGatewayManagementApiClient(endpoint ? { endpoint } : {}));
  return clients.get(endpoint);
}

export const connect = async (event) => {
  await connections.add(event.requestContext.connectionId);
  return { statusCode: 200 };
};

export const disconnect = async (event) => {
  await connections.remove(event.requestContext.connectionId);
  return { statusCode: 200 };
};

export const sendMessage = async (event) => {
  const api = management(event.requestContext);
  const post = (id, message) =>
    api.send(new PostToConnectionCommand({ ConnectionId: id, Data: JSON.stringify(message) }));

  let body;
  try {
    body = JSON.parse(event.body);
  } catch {
    body = null;
  }
  if (typeof body?.text !== "string" || body.text.trim() === "") {
    await post(event.requestContext.connectionId, { error: 'send {"action": "sendmessage", "text": "..."}' });
    return { statusCode: 400 };
  }
  const from = String(body.name ?? "someone").slice(0, 40);
  const text = body.text.slice(0, MAX_TEXT);

  await Promise.all(
    (await connections.all()).map(async (id) => {
      try {
        await post(id, { from, text });
      } catch (e) {
        // A connection that closed without $disconnect reaching us: forget it.
        if (e instanceof GoneException) await connections.remove(id);
        else throw e;
      }
    }),
  );
  return { statusCode: 200 };
};
