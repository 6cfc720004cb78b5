"""Detection quality against public benchmarks: NAB scoring (windows, profiles, thresholds).

>>> from edgestream.evaluation import STANDARD_PROFILES
>>> sorted(STANDARD_PROFILES)
['reward_low_FN_rate', 'reward_low_FP_rate', 'standard']
"""

from edgestream.evaluation.nab import (
    STANDARD_PROFILES,
    Profile,
    Scores,
    SeriesResult,
    score_corpus,
)

__all__ = ["STANDARD_PROFILES", "Profile", "Scores", "SeriesResult", "score_corpus"]
