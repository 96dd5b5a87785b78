// A CommonJS callback handler.
exports.handler = (event, context, callback) => {
  setTimeout(() => callback(null, { statusCode: 200, body: JSON.stringify({ lang: "cjs", fn: context.functionName }) }), 5);
};
