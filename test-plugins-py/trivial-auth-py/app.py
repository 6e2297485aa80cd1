"""Accepts `Authorization: Bearer <token>` where the token equals the config's `token` (default
`ok`); the principal's org is `org-trivial`. The Python twin of test-plugins/trivial-auth."""
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types


class Auth(exports.Auth):
    def authenticate(self, head: types.RequestHead) -> types.Principal:
        expected = json.loads(host.config() or "{}").get("token", "ok")
        for name, value in head.headers:
            if name == "authorization" and value == f"Bearer {expected}":
                return types.Principal("org-trivial", "key-trivial", [("request-id", head.id)])
        raise Err(types.Reject(401, "invalid_api_key", "bad token"))
