"""A web dashboard of a deployment, read from the cloud side (what the cloud broker holds).

Pages: fleet overview (gateways: up/down, lag, outbox, model versions, rollout state), live
alerts (pushed as they arrive), fleet analytics from ``fleet.stats``, a device view (sampled
readings, window anomaly scores, alerts) and the model timeline (retrains, promotions,
rollbacks). ``edgestream up`` serves it on 127.0.0.1 and prints the URL; ``edgestream
dashboard [TOPOLOGY]`` serves it against any deployment (cloud bootstrap + registry).

>>> from edgestream.dashboard import Dashboard, DashboardConfig
>>> board = Dashboard(DashboardConfig(port=0)).start()
>>> import urllib.request, json
>>> json.load(urllib.request.urlopen(board.url + "healthz"))["ok"]
True
>>> board.stop()
"""

from edgestream.dashboard.config import DashboardConfig
from edgestream.dashboard.exceptions import DashboardError
from edgestream.dashboard.run import Dashboard

__all__ = ["Dashboard", "DashboardConfig", "DashboardError"]
