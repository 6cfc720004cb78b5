"""Model rollout, the last stage of the loop: what ``fleet.models`` says and publishing to it
(:mod:`~edgestream.rollout.history`, :mod:`~edgestream.rollout.operations`), the canary policy
of the cloud side (:mod:`~edgestream.rollout.control`), and on each gateway the slots of live,
shadow and pending models (:mod:`~edgestream.rollout.slots`) run by the worker's
:class:`~edgestream.rollout.agent.RolloutAgent` through its
:class:`~edgestream.rollout.host.ModelHost` interface."""
