"""What infra/template.yaml (SAM) and a JobcastGateway synthesized by the
CDK deploy, reduced to the same terms and compared, so the two cannot drift.

Usage: parity.py SAM_TEMPLATE PARAMETERS_JSON CDK_TEMPLATE

PARAMETERS_JSON gives the SAM template's parameters for the configuration
the CDK stack was synthesized with. Both templates become one model:
functions (binary, runtime, architecture, memory, timeout, environment,
IAM statements, log group, events), WebSocket and HTTP routes (key,
function, authorization), authorizers, permissions, the table, the bucket
and its policy, the queues, log groups and schedules. References become the
referenced resource's name (SAM's logical id; the construct's child id,
with the CDK's path prefix and hash taken off), so `!GetAtt Table.Arn` and
`{"Fn::GetAtt": ["ProgressTable1A2B3C4D", "Arn"]}` are both `{Table.Arn}`.
Exit status 1 and each difference printed when they disagree.
"""

import json
import re
import sys

import yaml


class Loader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    if suffix == "Condition":
        return {"Condition": value}
    return {"Fn::" + suffix: value}


Loader.add_multi_constructor("!", _tag)

NO_VALUE = object()


class Model:
    """Evaluates one template's intrinsics for a configuration."""

    def __init__(self, template, parameters, canonical):
        self.t = template
        self.params = parameters
        self.canonical = canonical
        self.conditions = {}

    def condition(self, name):
        if name not in self.conditions:
            self.conditions[name] = bool(self.value(self.t.get("Conditions", {})[name]))
        return self.conditions[name]

    def value(self, v):
        """A value with intrinsics evaluated: strings with {Name} for what only AWS knows."""
        if isinstance(v, list):
            out = [self.value(x) for x in v]
            return [x for x in out if x is not NO_VALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (k, a), = v.items()
            if k == "Ref":
                if a == "AWS::NoValue":
                    return NO_VALUE
                if a in self.params:
                    return self.params[a]
                if a.startswith("AWS::"):
                    return "{%s}" % a
                return "{%s}" % self.canonical(a)
            if k == "Fn::GetAtt":
                return "{%s.%s}" % (self.canonical(a[0]), a[1])
            if k == "Fn::Sub":
                text, names = (a, {}) if isinstance(a, str) else (a[0], a[1])

                def sub(m):
                    name = m.group(1)
                    if name in names:
                        return str(self.value(names[name]))
                    if "." in name:
                        res, attr = name.split(".", 1)
                        return "{%s.%s}" % (self.canonical(res), attr)
                    return str(self.value({"Ref": name}))

                return re.sub(r"\$\{([^}!]+)\}", sub, text)
            if k == "Fn::Join":
                sep, parts = a
                parts = self.value(parts)
                if isinstance(parts, str):
                    parts = parts.split(",")
                return sep.join(str(p) for p in parts)
            if k == "Fn::If":
                name, yes, no = a
                return self.value(yes if self.condition(name) else no)
            if k == "Fn::Not":
                return not self.value(a[0])
            if k == "Fn::Equals":
                x, y = (self.value(e) for e in a)
                return str(x) == str(y)
            if k == "Fn::Or":
                return any(self.value(e) for e in a)
            if k == "Fn::And":
                return all(self.value(e) for e in a)
            if k == "Condition":
                return self.condition(a)
        out = {}
        for key, x in v.items():
            x = self.value(x)
            if x is not NO_VALUE:
                out[key] = x
        return out

    def resources(self):
        for rid, r in self.t["Resources"].items():
            if "Condition" in r and not self.condition(r["Condition"]):
                continue
            yield rid, r


def statements(doc):
    """A policy document's statements as comparable tuples."""
    out = set()
    for s in doc.get("Statement", []):
        listed = lambda x: tuple(sorted(x if isinstance(x, list) else [x]))
        out.add((s.get("Effect", "Allow"), listed(s["Action"]), listed(s["Resource"]), json.dumps(s.get("Condition"), sort_keys=True)))
    return out


# What the SAM template says with a managed policy, the CDK with statements.
SQS_CONSUMER = frozenset(["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ReceiveMessage"])


def sam_model(path, parameters):
    template = yaml.load(open(path), Loader=Loader)
    params = {}
    for name, p in template.get("Parameters", {}).items():
        if name in parameters:
            params[name] = parameters[name]
        elif p.get("NoEcho"):
            params[name] = "{%s}" % name  # a secret: a stack parameter on both sides
        elif "Default" in p:
            params[name] = p["Default"]
        if p.get("Type") == "CommaDelimitedList" and isinstance(params[name], str):
            params[name] = [x for x in params[name].split(",")] if params[name] else [""]
    m = Model(template, params, lambda x: x)
    globals_ = template.get("Globals", {}).get("Function", {})
    model = empty_model()
    binary_of = {}
    for rid, r in m.resources():
        if r["Type"] == "AWS::Serverless::Function":
            binary_of[rid] = r["Metadata"]["BuildProperties"]["Binary"]
    name = lambda ref: binary_of.get(ref, ref)
    for rid, r in m.resources():
        kind, p = r["Type"], m.value(r.get("Properties", {}))
        if kind == "AWS::Serverless::Function":
            g = m.value(globals_)
            env = dict(g.get("Environment", {}).get("Variables", {}))
            env.update(p.get("Environment", {}).get("Variables", {}))
            stmts = set()
            for pol in p.get("Policies", []):
                stmts |= statements(pol)
            events = set()
            for ev in p.get("Events", {}).values():
                if ev["Type"] == "SQS":
                    events.add(("sqs", ev["Properties"]["Queue"], ev["Properties"].get("BatchSize"), tuple(ev["Properties"].get("FunctionResponseTypes", []))))
                elif ev["Type"] == "ScheduleV2":
                    events.add(("schedule", ev["Properties"]["ScheduleExpression"]))
                elif ev["Type"] == "HttpApi":
                    ep = ev["Properties"]
                    model["http_routes"].add((f"{ep['Method']} {ep['Path']}", binary_of[rid], "NONE"))
            model["functions"][binary_of[rid]] = {
                "runtime": p.get("Runtime", g.get("Runtime")),
                "architectures": p.get("Architectures", g.get("Architectures")),
                "memory": int(p.get("MemorySize", g.get("MemorySize"))),
                "timeout": int(p.get("Timeout", g.get("Timeout"))),
                "env": {k: normalize_env(v, name) for k, v in env.items()},
                "statements": {normalize_stmt(s, name) for s in stmts},
                "logs": bool(p.get("LoggingConfig", {}).get("LogGroup")),
                "events": events,
            }
        elif kind == "AWS::Serverless::HttpApi":
            model["http_api"] = {"cors": p.get("CorsConfiguration"), "throttle": p.get("DefaultRouteSettings"), "access_log": bool(p.get("AccessLogSettings"))}
        else:
            add_common(model, kind, p, name, m, r)
    return model


def cdk_model(path):
    template = json.load(open(path))
    def canonical(logical):
        # STACK/Progress/CHILD[/Resource]: the construct's child id, which
        # is the SAM template's logical id.
        r = template["Resources"].get(logical, {})
        parts = r.get("Metadata", {}).get("aws:cdk:path", "").split("/")
        return parts[2] if len(parts) >= 3 else logical
    m = Model(template, {"TokenSecret": "{TokenSecret}", "WebhookSecret": "{WebhookSecret}"}, canonical)
    model = empty_model()
    binary_of = {}
    for rid, r in m.resources():
        if r["Type"] == "AWS::Lambda::Function":
            binary_of[canonical(rid)] = r["Metadata"]["jobcast:binary"]
    name = lambda ref: binary_of.get(ref, ref)
    roles = {}
    for rid, r in m.resources():
        if r["Type"] == "AWS::IAM::Policy":
            for role in m.value(r["Properties"]["Roles"]):
                roles.setdefault(role.strip("{}"), set()).update(statements(m.value(r["Properties"]["PolicyDocument"])))
    for rid, r in m.resources():
        kind, p = r["Type"], m.value(r.get("Properties", {}))
        if kind == "AWS::Lambda::Function":
            binary = r["Metadata"]["jobcast:binary"]
            role = p["Role"].strip("{}").rsplit(".", 1)[0]
            stmts = roles.get(role, set())
            events = set()
            for sid, s in m.resources():
                sp = m.value(s.get("Properties", {}))
                if s["Type"] == "AWS::Lambda::EventSourceMapping" and sp["FunctionName"].strip("{}") == canonical(rid):
                    events.add(("sqs", sp["EventSourceArn"], sp.get("BatchSize"), tuple(sp.get("FunctionResponseTypes", []))))
                    # The consumer's own grants, which SAM gives as a managed policy.
                    stmts = {s_ for s_ in stmts if not (set(s_[1]) <= SQS_CONSUMER and s_[2] == (sp["EventSourceArn"],))}
                if s["Type"] == "AWS::Scheduler::Schedule" and sp["Target"]["Arn"].startswith("{%s." % canonical(rid)):
                    events.add(("schedule", sp["ScheduleExpression"]))
            model["functions"][binary] = {
                "runtime": p["Runtime"],
                "architectures": p.get("Architectures"),
                "memory": int(p["MemorySize"]),
                "timeout": int(p["Timeout"]),
                "env": {k: normalize_env(v, name) for k, v in p.get("Environment", {}).get("Variables", {}).items()},
                "statements": {normalize_stmt(s, name) for s in stmts},
                "logs": bool(p.get("LoggingConfig", {}).get("LogGroup")),
                "events": events,
            }
        elif kind == "AWS::ApiGatewayV2::Api" and p.get("ProtocolType") == "HTTP":
            stage = next(m.value(s["Properties"]) for _, s in m.resources() if s["Type"] == "AWS::ApiGatewayV2::Stage" and m.value(s["Properties"]).get("StageName") == "$default")
            model["http_api"] = {"cors": p.get("CorsConfiguration"), "throttle": stage.get("DefaultRouteSettings"), "access_log": bool(stage.get("AccessLogSettings"))}
        elif kind == "AWS::ApiGatewayV2::Stage" and p.get("StageName") == "$default":
            continue
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::Role", "AWS::Lambda::EventSourceMapping", "AWS::Scheduler::Schedule", "AWS::CDK::Metadata"):
            continue
        else:
            add_common(model, kind, p, name, m, r)
    return model


def empty_model():
    return {"functions": {}, "ws_routes": set(), "http_routes": set(), "authorizers": set(), "permissions": set(), "other": {}, "http_api": None}


def normalize_env(v, name):
    # A function's name or ARN by its binary; the rest as it is.
    return re.sub(r"\{([A-Za-z0-9]+)(\.[A-Za-z]+)?\}", lambda m: "{%s%s}" % (name(m.group(1)), m.group(2) or ""), str(v))


def normalize_stmt(s, name):
    effect, actions, resources, cond = s
    return (effect, actions, tuple(sorted(normalize_env(r, name) for r in resources)), cond)


def add_common(model, kind, p, name, m, r):
    if kind == "AWS::ApiGatewayV2::Route":
        target = p["Target"]  # integrations/{Integration}
        integ_id = target.split("/", 1)[1].strip("{}")
        integ = None
        for rid, res in m.t["Resources"].items():
            if res["Type"] == "AWS::ApiGatewayV2::Integration" and m.canonical(rid) == integ_id:
                integ = m.value(res["Properties"])
        uri = integ["IntegrationUri"]
        fn = re.search(r"\{([A-Za-z0-9]+)\.Arn\}", uri).group(1)
        api = p["ApiId"].strip("{}")
        key = (p["RouteKey"], name(fn), p.get("AuthorizationType", "NONE"), p.get("OperationName"))
        if api == "WebSocketApi":
            model["ws_routes"].add(key)
        else:
            model["http_routes"].add(key[:3])
    elif kind == "AWS::ApiGatewayV2::Authorizer":
        model["authorizers"].add((p["ApiId"].strip("{}"), p["AuthorizerType"], normalize_env(p.get("AuthorizerUri", ""), name), tuple(p.get("IdentitySource", [])), json.dumps(p.get("JwtConfiguration"), sort_keys=True)))
    elif kind == "AWS::Lambda::Permission":
        model["permissions"].add((name(str(p["FunctionName"]).strip("{}")), p["Action"], p["Principal"], normalize_env(p.get("SourceArn", ""), name), p.get("FunctionUrlAuthType"), p.get("InvokedViaFunctionUrl")))
    elif kind == "AWS::Logs::LogGroup":
        model["other"].setdefault("log groups", []).append((p.get("LogGroupName", "(per function)"), p.get("RetentionInDays")))
        model["other"]["log groups"].sort(key=str)
    elif kind == "AWS::ApiGatewayV2::Deployment":
        model["other"]["ws deployment"] = True
    else:
        if kind == "AWS::DynamoDB::Table":
            p = dict(p, _retain=(r.get("DeletionPolicy"), r.get("UpdateReplacePolicy")))
        if kind == "AWS::Lambda::Url":
            p = dict(p, TargetFunctionArn=normalize_env(p["TargetFunctionArn"], name))
        model["other"].setdefault(kind, []).append(p)
        model["other"][kind].sort(key=lambda x: json.dumps(x, sort_keys=True, default=str))


def diff(a, b, where=""):
    out = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a:
                out.append(f"{where}/{k}: only in the CDK: {b[k]!r}")
            elif k not in b:
                out.append(f"{where}/{k}: only in SAM: {a[k]!r}")
            else:
                out += diff(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, set) and isinstance(b, set):
        for x in sorted(a - b, key=str):
            out.append(f"{where}: only in SAM: {x!r}")
        for x in sorted(b - a, key=str):
            out.append(f"{where}: only in the CDK: {x!r}")
    elif a != b:
        out.append(f"{where}: SAM {a!r} != CDK {b!r}")
    return out


def main():
    sam_path, params_json, cdk_path = sys.argv[1:4]
    sam = sam_model(sam_path, json.loads(params_json))
    cdk = cdk_model(cdk_path)
    problems = diff(sam, cdk)
    for p in problems:
        print(p)
    counts = {k: len(v) for k, v in sam.items() if isinstance(v, (set, dict))}
    print(f"compared: {counts}; {len(problems)} differences")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
