"""The measuring side of every fault scenario: a good-traffic probe (official openai SDK, model
"good" on the healthy provider, a fresh connection per request) giving p50 latency and errors, an
RSS sampler, and `Scenario`, which runs both around an attack, asserts the gateway came through
it, and files the figures in REPORT (written to target/faults-report.json by conftest)."""

import json
import statistics
import threading
import time

MESSAGES = [{"role": "user", "content": "Say hello"}]
EXPECTED = "Hello from the mock provider."
GOOD_COST = 11 * 1 + 6 * 2  # 11 prompt + 6 completion tokens at 1 and 2 micro-USD a token
RSS_SLACK_MB = 64
P50_BOUND_S = 1.0
REPORT = []


class GoodTraffic(threading.Thread):
    """Normal requests (model "good", healthy provider) one after another until stopped."""

    def __init__(self, gw, pause=0.02):
        super().__init__(daemon=True)
        self.gw, self.pause = gw, pause
        self.latencies, self.errors, self.ids = [], [], []
        self.stopping = threading.Event()
        self.min_n = 0
        self.client = gw.client(timeout=5)

    def run(self):
        hard_stop = time.monotonic() + 120
        while ((not self.stopping.is_set() or len(self.latencies) + len(self.errors) < self.min_n)
               and time.monotonic() < hard_stop):
            t0 = time.monotonic()
            try:
                raw = self.client.chat.completions.with_raw_response.create(model="good", messages=MESSAGES)
                content = raw.parse().choices[0].message.content
                assert content == EXPECTED, content
                self.latencies.append(time.monotonic() - t0)
                self.ids.append(raw.headers.get("x-request-id"))
            except Exception as e:  # noqa: BLE001 - every failure counts
                self.errors.append(repr(e))
            time.sleep(self.pause)

    def stop(self, min_n):
        self.min_n = min_n
        self.stopping.set()
        self.join(timeout=130)
        self.client.close()

    def p50(self):
        return statistics.median(self.latencies) if self.latencies else float("inf")


class Scenario:
    """`with Scenario(gw, name) as s:` runs good traffic and samples RSS during the attack; on a
    clean exit asserts the gateway is up, good traffic had no errors and a p50 under the bound,
    each good request has one usage record, and RSS came back under baseline + slack."""

    def __init__(self, gw, name, min_good=8):
        self.gw, self.name, self.min_good = gw, f"{name}[{gw.db}]", min_good
        self.figures = {}

    def __enter__(self):
        self.peak, self.sampling = self.gw.rss(), threading.Event()
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()
        self.traffic = GoodTraffic(self.gw)
        self.traffic.start()
        self.t0 = time.monotonic()
        return self

    def _sample(self):
        while not self.sampling.is_set():
            try:
                self.peak = max(self.peak, self.gw.rss())
            except (OSError, AssertionError):
                return
            time.sleep(0.05)

    def __exit__(self, exc_type, exc, tb):
        gw, t = self.gw, self.traffic
        t.stop(self.min_good)
        self.sampling.set()
        self.sampler.join(timeout=5)
        alive = gw.alive()
        after = gw.rss_settled(gw.rss_base + RSS_SLACK_MB) if alive else None
        fig = {"scenario": self.name, "seconds": round(time.monotonic() - self.t0, 2),
               "good_requests": len(t.latencies) + len(t.errors), "good_errors": len(t.errors),
               "good_p50_ms": round(t.p50() * 1000, 1) if t.latencies else None,
               "rss_baseline_mb": round(gw.rss_base, 1), "rss_peak_mb": round(self.peak, 1),
               "rss_after_mb": round(after, 1) if after else None, "gateway_alive": alive, **self.figures}
        REPORT.append(fig)
        self.figures = fig  # later updates still reach the report file
        print("\nFAULTS", json.dumps(fig))
        if exc_type is not None:
            return False
        assert alive, "gateway died or stopped answering /health:\n" + gw.log_tail()
        assert t.errors == [], f"{len(t.errors)} good requests failed during {self.name}: {t.errors[:3]}"
        assert t.p50() < P50_BOUND_S, f"good p50 {t.p50():.3f}s during {self.name}"
        assert after < gw.rss_base + RSS_SLACK_MB, f"RSS {after:.0f} MB after, baseline {gw.rss_base:.0f} MB"
        recs = gw.records(t.ids)
        bad = {i: r for i, r in recs.items() if len(r) != 1 or r[0]["status"] != 200 or r[0]["cost_micros"] != GOOD_COST}
        assert not bad, f"good requests without exactly one 200 record of {GOOD_COST}: {list(bad.items())[:3]}"
        return False
