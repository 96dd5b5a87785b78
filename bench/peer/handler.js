'use strict';
// The same three WebSocket routes jobcast serves for a connection without a
// job: $connect accepts, $disconnect is counted, $default answers `ping` with
// the connection id (posted back through @connections, as in AWS) and any
// other action with an error.
const fs = require('node:fs');

// `@connections`: jobcast emulate's (it sets AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI
// for the functions it runs), else serverless-offline's.
const management = () =>
  process.env.AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI ||
  process.env.PEER_MANAGEMENT_URL ||
  `http://127.0.0.1:${process.env.PEER_WS_PORT || '3001'}`;

exports.connect = async () => ({ statusCode: 200 });

exports.disconnect = async () => {
  if (process.env.PEER_DISCONNECT_LOG) {
    fs.appendFileSync(process.env.PEER_DISCONNECT_LOG, 'x\n');
  }
  return { statusCode: 200 };
};

exports.message = async (event) => {
  const connectionId = event.requestContext.connectionId;
  let action;
  try {
    action = JSON.parse(event.body).action;
  } catch {
    action = undefined;
  }
  const reply =
    action === 'ping'
      ? { type: 'pong', connectionId }
      : { type: 'error', code: action ? 'unknown_action' : 'bad_request', message: 'send {"action":"ping"}' };
  await fetch(`${management()}/@connections/${encodeURIComponent(connectionId)}`, {
    method: 'POST',
    body: JSON.stringify(reply),
  });
  return { statusCode: 200 };
};
