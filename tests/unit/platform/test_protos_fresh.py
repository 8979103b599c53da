"""The installed cascade-protos package matches protos/ (run `make proto` after editing a .proto)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_generated_code_is_up_to_date():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_public_contract_names_are_stable():
    from cascade.router.v1 import router_pb2

    svc = router_pb2.DESCRIPTOR.services_by_name["RecommendationService"]
    assert svc.full_name == "cascade.router.v1.RecommendationService"
    assert svc.methods_by_name["Recommend"].input_type.name == "RecommendRequest"
    req = router_pb2.RecommendRequest.DESCRIPTOR.fields_by_name
    assert {n: req[n].number for n in ("user_id", "num_items", "context", "exclude_item_ids", "request_id")} == {
        "user_id": 1, "num_items": 2, "context": 3, "exclude_item_ids": 4, "request_id": 5}
    resp = router_pb2.RecommendResponse.DESCRIPTOR.fields_by_name
    assert set(resp) == {"request_id", "items", "model_version", "variant", "degraded"}
