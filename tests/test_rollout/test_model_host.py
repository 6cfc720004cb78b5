"""The rollout agent's only view of its worker is :class:`ModelHost`; the gateway is one."""

from __future__ import annotations

import inspect

from edgestream.rollout.agent import RolloutAgent
from edgestream.rollout.host import ModelHost


def test_the_gateway_offers_everything_a_model_host_has() -> None:
    from edgestream.edge.worker import Gateway

    members = sorted(n for n in vars(ModelHost) if not n.startswith("_"))
    assert {"locked_pipelines", "pipelines_of", "send", "send_alert"} <= set(members)
    init = inspect.getsource(Gateway.__init__)
    missing = [n for n in members if not hasattr(Gateway, n) and f"self.{n} =" not in init]
    assert missing == []


def test_the_agent_uses_no_private_field_of_its_host() -> None:
    source = inspect.getsource(RolloutAgent)
    assert "gateway._" not in source and "gateway.config" not in source
