"""A mesh or torus gives one peer one of its links: a point-to-point send (a pipeline stage's
activations, a prompt's KV cache to its decode instance) runs at the peer bandwidth, collectives at
the whole link's."""

from __future__ import annotations

import pytest

from hwmodels import load_device
from hwmodels.links import Link
from planner.collectives import p2p_s
from planner.disagg import transfer_s


def test_mi300x_sends_to_one_peer_over_one_xgmi_link():
    link = load_device("mi300x").intra_node_link
    assert link.bandwidth_bytes_per_s == 448e9 and link.p2p_bandwidth_bytes_per_s == 64e9
    kv = 655e6
    assert transfer_s(link, kv, 1, 1) == pytest.approx(link.latency_s + kv / 64e9)
    # a switched fabric keeps the whole link for one peer
    nv = load_device("h100-sxm").intra_node_link
    assert nv.p2p_bandwidth_bytes_per_s == nv.bandwidth_bytes_per_s
    assert p2p_s(1e9, link) > 5 * p2p_s(1e9, nv)


def test_peer_bandwidth_is_checked_and_round_trips(tmp_path):
    from hwmodels.loader import device_to_dict as profile_to_dict
    from hwmodels.loader import load_device as load

    with pytest.raises(ValueError):
        Link(name="x", bandwidth_bytes_per_s=1e9, latency_s=0.0, peer_bandwidth_bytes_per_s=2e9)
    d = profile_to_dict(load_device("mi300x"))
    assert d["links"]["intra_node"]["peer_bandwidth_gb_per_s"] == 64
    import yaml

    d["id"] = "mi300x-copy"
    d["links"]["intra_node"]["peer_bandwidth_gb_per_s"] = 500
    path = tmp_path / "mi300x-copy.yaml"
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(Exception, match="peer_bandwidth_gb_per_s"):
        load(str(path))
