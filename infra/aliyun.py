"""The Aliyun side: the RAM role STS assumes, and the bucket's CORS for browser uploads.

    python -m infra.aliyun --account-id 1234 --ram-user kefu-uploader --bucket my-bucket \\
        --region cn-hangzhou --origin https://shop.example [--origin ...] [--dry-run]

Uses the SDKs the app already ships (aliyunsdkcore for RAM, oss2 for the bucket), with the
account's own AccessKey from ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET.
--dry-run prints every call and document and touches nothing.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any, Dict, List

ROLE_NAME = "kefu-uploads"
POLICY_NAME = "kefu-uploads-objects"


def trust_policy(account_id: str, ram_user: str) -> Dict[str, Any]:
    """Only the app's RAM user may assume the role."""
    return {"Version": "1", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"RAM": [f"acs:ram::{account_id}:user/{ram_user}"]},
    }]}


def permission_policy(bucket: str, prefix: str) -> Dict[str, Any]:
    """What the role may do at most; each AssumeRole narrows it further with a session policy."""
    return {"Version": "1", "Statement": [{
        "Effect": "Allow", "Action": ["oss:PutObject", "oss:GetObject"],
        "Resource": [f"acs:oss:*:*:{bucket}/{prefix}*"],
    }]}


def cors_rules(origins: List[str]) -> List[Dict[str, Any]]:
    return [{"allowed_origins": origins, "allowed_methods": ["POST", "PUT", "GET", "HEAD"],
             "allowed_headers": ["*"], "expose_headers": ["ETag", "x-oss-request-id"], "max_age_seconds": 600}]


def plan(args: argparse.Namespace) -> List[Dict[str, Any]]:
    return [
        {"service": "ram", "action": "CreateRole", "params": {
            "RoleName": ROLE_NAME, "MaxSessionDuration": 3600,
            "AssumeRolePolicyDocument": json.dumps(trust_policy(args.account_id, args.ram_user))}},
        {"service": "ram", "action": "CreatePolicy", "params": {
            "PolicyName": POLICY_NAME, "PolicyDocument": json.dumps(permission_policy(args.bucket, args.prefix))}},
        {"service": "ram", "action": "AttachPolicyToRole", "params": {
            "PolicyType": "Custom", "PolicyName": POLICY_NAME, "RoleName": ROLE_NAME}},
        {"service": "oss", "action": "PutBucketCors", "params": {"bucket": args.bucket, "rules": cors_rules(args.origin)}},
    ]


def apply(steps: List[Dict[str, Any]], args: argparse.Namespace) -> None:
    import oss2
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkcore.request import CommonRequest

    key_id, secret = os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"], os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"]
    ram = AcsClient(key_id, secret, args.region)
    for step in steps:
        if step["service"] == "ram":
            request = CommonRequest(domain="ram.aliyuncs.com", version="2015-05-01", action_name=step["action"])
            request.set_method("POST")
            for name, value in step["params"].items():
                request.add_query_param(name, value)
            print(ram.do_action_with_exception(request).decode())
        else:
            bucket = oss2.Bucket(oss2.Auth(key_id, secret), f"https://oss-{args.region}.aliyuncs.com",
                                 args.bucket, region=args.region)
            rules = [oss2.models.CorsRule(**rule) for rule in step["params"]["rules"]]
            bucket.put_bucket_cors(oss2.models.BucketCors(rules))
            print(f"CORS set on {args.bucket}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--account-id", required=True)
    parser.add_argument("--ram-user", required=True, help="the RAM user whose AccessKey the functions hold")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--region", default="cn-hangzhou")
    parser.add_argument("--prefix", default="uploads/")
    parser.add_argument("--origin", action="append", required=True, help="a site origin allowed to upload (repeat)")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    steps = plan(args)
    if args.dry_run:
        print(json.dumps(steps, indent=2))
        return
    apply(steps, args)


if __name__ == "__main__":
    main()
