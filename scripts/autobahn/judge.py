"""Judges an Autobahn|Testsuite report of jobcast.

Every case must end OK, except:
- cases that send what API Gateway refuses by its documented limits (binary
  frames, frames over 32 KiB, messages over 128 KiB): these must end with a
  clean close carrying the limit's code (1003 or 1009), as API Gateway does;
- NON-STRICT cases listed in NON_STRICT, each with the reason it is
  acceptable (RELIABILITY.md repeats them);
- INFORMATIONAL cases, which Autobahn itself does not judge (listed).
A NON-STRICT case not listed, or any FAILED, UNIMPLEMENTED or UNCLEAN case,
fails the run. Echo expectations are met by jobcast's JSON reply (see
wstest_jobcast.py); every frame-level expectation is Autobahn's own.

    python3 scripts/autobahn/judge.py target/autobahn/report/index.json
"""
import json
import os
import re
import sys

# (case id pattern, close codes allowed, what the case sends)
LIMITS = [
    (r"1\.1\.[678]", {1009}, "a text frame over 32 KiB"),
    (r"1\.2\.[1-5]", {1003}, "a binary frame"),
    (r"1\.2\.[678]", {1009}, "a binary frame over 32 KiB"),
    (r"9\.1\.\d+", {1009}, "a text frame of 64 KiB to 16 MiB"),
    (r"9\.2\.\d+", {1009}, "a binary frame of 64 KiB to 16 MiB"),
    (r"9\.3\.\d+", {1009}, "a 4 MiB text message in fragments"),
    (r"9\.4\.\d+", {1009}, "a 4 MiB binary message in fragments"),
    (r"9\.5\.\d+", {1009}, "a 1 MiB text frame"),
    (r"9\.6\.\d+", {1009}, "a 1 MiB binary frame"),
    (r"9\.8\.\d+", {1003}, "binary messages"),
]

NON_STRICT = {
    "6.4.3": "invalid UTF-8 is found once the frame is complete, not at the "
    "first bad byte of a frame still arriving; RFC 6455 8.1 allows either",
    "6.4.4": "as 6.4.3",
}


def case_key(case_id):
    return [int(p) for p in case_id.split(".")]


def limit_of(case_id):
    for pattern, codes, what in LIMITS:
        if re.fullmatch(pattern, case_id):
            return codes, what
    return None


def main(index_path):
    with open(index_path) as f:
        agents = json.load(f)
    (agent, cases), = agents.items()
    failed, limited, non_strict, informational, ok = [], [], [], [], 0
    for case_id in sorted(cases, key=case_key):
        r = cases[case_id]
        behavior, close = r["behavior"], r["behaviorClose"]
        code = r.get("remoteCloseCode")
        limit = limit_of(case_id)
        if limit is not None:
            codes, what = limit
            with open(os.path.join(os.path.dirname(index_path), r["reportfile"])) as f:
                clean = json.load(f).get("wasClean")
            if code in codes and clean:
                limited.append(f"{case_id} ({what}: {code})")
            else:
                failed.append(f"{case_id}: sends {what}, expected close {sorted(codes)}, "
                              f"got {behavior}/{close} with {code}")
        elif behavior == "OK" and close == "OK":
            ok += 1
        elif behavior == "NON-STRICT" and close == "OK" and case_id in NON_STRICT:
            non_strict.append(f"{case_id}: {NON_STRICT[case_id]}")
        elif behavior == "INFORMATIONAL":
            informational.append(f"{case_id} (close {code})")
        else:
            failed.append(f"{case_id}: {behavior}/{close}, close {code}")

    counted = ok + len(non_strict) + len(informational)
    print(f"Autobahn|Testsuite, agent {agent}: {len(cases)} cases")
    print(f"  OK: {ok} of {counted} counted")
    print(f"  NON-STRICT, accepted: {len(non_strict)}")
    for line in non_strict:
        print(f"    {line}")
    print(f"  INFORMATIONAL: {', '.join(informational) or 'none'}")
    print(f"  refused at API Gateway's limits with the right close code: {len(limited)}")
    if failed:
        print(f"  FAILED: {len(failed)}")
        for line in failed:
            print(f"    {line}")
        return 1
    if ok == 0:
        print("no case ran")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "target/autobahn/report/index.json"))
