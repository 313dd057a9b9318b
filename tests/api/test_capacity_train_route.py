"""POST /v1/capacity/train: the API form of `tierwise capacity train`."""

from hwmodels import load_device
from planner.arch import load_arch
from planner.capacity import TrainTarget, plan_training
from planner.cli.common import clean_json
from conftest import job_result


def test_train_capacity_matches_the_library(client):
    body = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "tokens": 1e11, "days": 10, "max_devices": 512}
    got = job_result(client, client.post("/v1/capacity/train", json=body))
    want = clean_json(plan_training(load_arch("llama-3.1-8b"), load_device("h100-sxm"),
                                    TrainTarget(tokens=1e11, days=10, max_devices=512)).to_dict())
    assert got["feasible"] is True
    assert got["best"]["devices"] == want["best"]["devices"]
    assert got["best"]["tokens_per_s"] >= got["required_tokens_per_s"]


def test_train_capacity_errors(client):
    r = client.post("/v1/capacity/train", json={"model": "llama-3.1-8b", "hardware": "h100", "tokens": 1e11, "days": 10})
    assert r.status_code == 404 and "h100-sxm" in r.text
    r = client.post("/v1/capacity/train", json={"model": "llama-3.1-8b", "hardware": "h100-sxm", "tokens": -1, "days": 10})
    assert r.status_code == 422 and r.json()["error"]["field"] == "tokens"
    r = client.post("/v1/capacity/train", json={"model": "llama-3.1-8b", "hardware": "h100-sxm", "tokens": 1e11, "days": 10,
                                                "max_devices": 10**9})
    assert r.status_code == 422
