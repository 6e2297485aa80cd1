"""API-key auth in Python: the twin of plugins/auth-apikey (Rust). The presented key (Bearer or
x-api-key) is looked up by its keyed hash through the host; revoked and expired keys are refused.
Built by tools/plugin-build with componentize-py into target/test-plugins/auth-apikey-py.wasm."""
from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types


def presented_key(headers):
    for name, value in headers:
        if name == "authorization" and value[:7].lower() == "bearer ":
            return value[7:].strip()
        if name == "x-api-key":
            return value.strip()
    return None


def unauthorized(message):
    return Err(types.Reject(401, "invalid_api_key", message))


class Auth(exports.Auth):
    def authenticate(self, head: types.RequestHead) -> types.Principal:
        key = presented_key(head.headers)
        if not key:
            raise unauthorized(
                "Missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'.")
        info = host.lookup_api_key(host.hash_api_key(key))
        if info is None:
            raise unauthorized("Incorrect API key provided.")
        if info.revoked:
            raise unauthorized("This API key has been revoked.")
        if info.expires_at_ms != 0 and host.now_ms() >= info.expires_at_ms:
            raise unauthorized("This API key has expired.")
        return types.Principal(info.org_id, info.key_id,
                               [("scopes", info.scopes), ("key-prefix", info.prefix)])
