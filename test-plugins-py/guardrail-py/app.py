"""A guardrail in Python, the twin of plugins/guardrail-basic's core: refuses prompts with more
than `max_messages` messages (config, default 50) or containing an AWS access key, and stops
answers that contain one (the last 32 characters travel in the stream state, so a key split
across events is caught)."""
import json
import re

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import guardrail
from wit_world.imports import types

AWS_KEY = re.compile(r"AKIA[0-9A-Z]{16}")
TAIL = 32


def config() -> dict:
    from wit_world.imports import host

    try:
        value = json.loads(host.config() or "{}")
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise Err(types.Reject(500, "guardrail_misconfigured", "guardrail-py: config is not an object"))
    return value


class Guardrail(exports.Guardrail):
    def check_prompt(self, who: types.Principal, prompt: guardrail.Prompt) -> None:
        limit = config().get("max_messages", 50)
        if len(prompt.messages) > limit:
            raise Err(types.Reject(400, "guardrail_blocked",
                                   f"The prompt has {len(prompt.messages)} messages; at most {limit} are allowed."))
        for message in prompt.messages:
            if AWS_KEY.search(message.text):
                raise Err(types.Reject(400, "guardrail_blocked",
                                       "The prompt contains what looks like an AWS access key."))

    def checks_output(self) -> bool:
        return True

    def check_output(self, who: types.Principal, state: bytes, output: guardrail.Output) -> bytes:
        text = state.decode("utf-8", "replace") + output.text
        if AWS_KEY.search(text):
            raise Err(types.Reject(403, "guardrail_blocked",
                                   "The answer was stopped: it contained what looks like an AWS access key."))
        return text[-TAIL:].encode("utf-8")
