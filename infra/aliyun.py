"""The Aliyun side: the RAM role STS assumes, the bucket's CORS for browser uploads, and the
bucket's lifecycle rule that deletes uploads never attached to a message.

    python -m infra.aliyun --account-id 1234 --ram-user kefu-uploader --bucket my-bucket \\
        --region cn-hangzhou --origin https://shop.example [--origin ...] [--dry-run]

Uses the SDKs the app already ships (aliyunsdkcore for RAM, oss2 for the bucket), with the
account's own AccessKey from ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET.
--dry-run prints every call and document and touches nothing. The lifecycle rule is merged into
the bucket's existing rules by its ID (PutBucketLifecycle replaces the whole configuration, so
the bucket's other rules are read first and kept).
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any, Dict, List

ROLE_NAME = "kefu-uploads"
POLICY_NAME = "kefu-uploads-objects"
LIFECYCLE_RULE_ID = "kefu-expire-unattached-uploads"
PENDING_DIR = "pending"  # chalicelib/uploads.py: uploads wait under <prefix>pending/ until attached


def trust_policy(account_id: str, ram_user: str) -> Dict[str, Any]:
    """Only the app's RAM user may assume the role."""
    return {"Version": "1", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"RAM": [f"acs:ram::{account_id}:user/{ram_user}"]},
    }]}


def permission_policy(bucket: str, prefix: str) -> Dict[str, Any]:
    """What the role may do at most; each AssumeRole narrows it further with a session policy.
    Deleting is allowed only in the pending area (an attached upload's pending copy)."""
    return {"Version": "1", "Statement": [{
        "Effect": "Allow", "Action": ["oss:PutObject", "oss:GetObject"],
        "Resource": [f"acs:oss:*:*:{bucket}/{prefix}*"],
    }, {
        "Effect": "Allow", "Action": ["oss:DeleteObject"],
        "Resource": [f"acs:oss:*:*:{bucket}/{prefix}{PENDING_DIR}/*"],
    }]}


def cors_rules(origins: List[str]) -> List[Dict[str, Any]]:
    return [{"allowed_origins": origins, "allowed_methods": ["POST", "PUT", "GET", "HEAD"],
             "allowed_headers": ["*"], "expose_headers": ["ETag", "x-oss-request-id"], "max_age_seconds": 600}]


def lifecycle_rules(prefix: str, days: int) -> List[Dict[str, Any]]:
    """Uploads still pending ``days`` after they were made were never attached: OSS deletes them."""
    return [{"id": LIFECYCLE_RULE_ID, "prefix": f"{prefix}{PENDING_DIR}/", "status": "Enabled",
             "expiration_days": days}]


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
        {"service": "oss", "action": "PutBucketLifecycle", "params": {
            "bucket": args.bucket, "rules": lifecycle_rules(args.prefix, args.pending_days)}},
    ]


def put_lifecycle(bucket: Any, rules: List[Dict[str, Any]]) -> None:
    """Set ``rules`` (as ``lifecycle_rules`` makes them) on an oss2 Bucket, keeping the bucket's
    rules with other IDs."""
    import oss2
    from oss2.models import BucketLifecycle, LifecycleExpiration, LifecycleRule

    ours = {rule["id"] for rule in rules}
    try:
        kept = [rule for rule in bucket.get_bucket_lifecycle().rules if rule.id not in ours]
    except oss2.exceptions.NoSuchLifecycle:
        kept = []
    wanted = [LifecycleRule(rule["id"], rule["prefix"], status=rule["status"],
                            expiration=LifecycleExpiration(days=rule["expiration_days"])) for rule in rules]
    bucket.put_bucket_lifecycle(BucketLifecycle(kept + wanted))


def apply_oss(steps: List[Dict[str, Any]], bucket: Any) -> None:
    """The plan's OSS steps against ``bucket``, an oss2 Bucket signed with the owner's key."""
    import oss2

    for step in steps:
        if step["service"] != "oss":
            continue
        if step["action"] == "PutBucketCors":
            rules = [oss2.models.CorsRule(**rule) for rule in step["params"]["rules"]]
            bucket.put_bucket_cors(oss2.models.BucketCors(rules))
            print(f"CORS set on {bucket.bucket_name}")
        elif step["action"] == "PutBucketLifecycle":
            put_lifecycle(bucket, step["params"]["rules"])
            print(f"lifecycle rule {LIFECYCLE_RULE_ID} set on {bucket.bucket_name}")
        else:
            raise ValueError(f"unknown OSS step {step['action']}")


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
    endpoint = args.oss_endpoint or f"https://oss-{args.region}.aliyuncs.com"
    apply_oss(steps, oss2.Bucket(oss2.AuthV4(key_id, secret), endpoint, args.bucket, region=args.region))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--account-id", required=True)
    parser.add_argument("--ram-user", required=True, help="the RAM user whose AccessKey the functions hold")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--region", default="cn-hangzhou")
    parser.add_argument("--prefix", default="uploads/")
    parser.add_argument("--origin", action="append", required=True, help="a site origin allowed to upload (repeat)")
    parser.add_argument("--pending-days", type=int, default=1,
                        help="days after which an upload never attached to a message is deleted")
    parser.add_argument("--oss-endpoint", help="default https://oss-<region>.aliyuncs.com")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    steps = plan(args)
    if args.dry_run:
        print(json.dumps(steps, indent=2))
        return
    apply(steps, args)


if __name__ == "__main__":
    main()
