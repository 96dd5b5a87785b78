"""A REQUEST authorizer and a $connect handler, for guarded.yaml."""


def authorize(event, context):
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    allowed = headers.get("auth") == "allow"
    return {
        "principalId": "alice",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{
                "Action": "execute-api:Invoke",
                "Effect": "Allow" if allowed else "Deny",
                "Resource": event["methodArn"],
            }],
        },
        "context": {"plan": "pro"},
    }


def connect(event, context):
    return {"statusCode": 200}
