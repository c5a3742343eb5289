"""Keys the local STS stand-in knows, shared with the OSS stand-in in the same process."""
from __future__ import annotations

import fnmatch
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class Credential:
    access_key_id: str
    secret: str
    security_token: Optional[str] = None  # temporary credentials only
    expires_at: Optional[float] = None
    policy: Optional[Dict[str, Any]] = None  # an STS session policy narrowing what it may do

    def allows(self, action: str, bucket: str, key: str) -> bool:
        if self.policy is None:
            return True  # the long-term key of the account
        resource = f"acs:oss:local:0:{bucket}/{key}"
        allowed = False
        for statement in self.policy.get("Statement", []):
            actions = _as_list(statement.get("Action"))
            resources = _as_list(statement.get("Resource"))
            if not any(fnmatch.fnmatchcase(action, pattern) for pattern in actions):
                continue
            if not any(fnmatch.fnmatchcase(resource, pattern) for pattern in resources):
                continue
            if statement.get("Effect") == "Deny":
                return False
            allowed = allowed or statement.get("Effect") == "Allow"
        return allowed


def _as_list(value: Any) -> List[str]:
    return value if isinstance(value, list) else [value] if isinstance(value, str) else []


@dataclass
class CredentialRegistry:
    _by_id: Dict[str, Credential] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, credential: Credential) -> None:
        with self._lock:
            self._by_id[credential.access_key_id] = credential

    def get(self, access_key_id: str) -> Optional[Credential]:
        with self._lock:
            return self._by_id.get(access_key_id)
