"""POST /v1/capacity/train for a CNN: the deadline is met by a data-parallel fleet (its tokens are
images), not refused as 99% short at 16 devices."""

from __future__ import annotations

import time


def test_rest_answers_the_cnn_deadline(client):
    r = client.post("/v1/capacity/train", json={"model": "resnet-50", "hardware": "h100-sxm", "tokens": 2e12,
                                                "days": 30})
    assert r.status_code in (200, 202), r.text
    doc = r.json()
    end = time.monotonic() + 300
    while r.status_code == 202 and doc["status"] in ("queued", "running") and time.monotonic() < end:
        time.sleep(0.5)
        doc = client.get(r.headers["location"]).json()
    result = doc if r.status_code == 200 else doc["result"]
    assert result["feasible"] and result["best"]["devices"] > 16 and result["best"]["micro_batch"] >= 32
