"""Where the chat keeps its connection ids.

In AWS: the DynamoDB table the template creates (TABLE_NAME). Locally, under
`jobcast emulate` or `sam local` (both set AWS_SAM_LOCAL) and with no DynamoDB
endpoint given (AWS_ENDPOINT_URL_DYNAMODB), one file per connection in a
directory under the system's temporary directory, so the example needs
nothing but python3 and boto3. Each function runs in its own process, as in
Lambda: the list cannot live in memory.
"""

import os
import tempfile
import urllib.parse

TABLE = os.environ.get("TABLE_NAME", "connections")
LOCAL = os.environ.get("AWS_SAM_LOCAL") == "true" and not os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")


class InDirectory:
    def __init__(self):
        self.dir = os.path.join(tempfile.gettempdir(), f"jobcast-chat-{TABLE}")

    def _file(self, connection_id):
        # Connection ids are base64-like; quoted, they are safe file names anywhere.
        return os.path.join(self.dir, urllib.parse.quote(connection_id, safe=""))

    def add(self, connection_id):
        os.makedirs(self.dir, exist_ok=True)
        open(self._file(connection_id), "w").close()

    def remove(self, connection_id):
        try:
            os.remove(self._file(connection_id))
        except FileNotFoundError:
            pass

    def all(self):
        try:
            return [urllib.parse.unquote(name) for name in os.listdir(self.dir)]
        except FileNotFoundError:
            return []


class InDynamoDB:
    def __init__(self):
        import boto3

        self.table = boto3.resource("dynamodb").Table(TABLE)

    def add(self, connection_id):
        self.table.put_item(Item={"connectionId": connection_id})

    def remove(self, connection_id):
        self.table.delete_item(Key={"connectionId": connection_id})

    def all(self):
        ids, kwargs = [], {"ProjectionExpression": "connectionId"}
        while True:
            page = self.table.scan(**kwargs)
            ids += [item["connectionId"] for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return ids
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


connections = InDirectory() if LOCAL else InDynamoDB()
