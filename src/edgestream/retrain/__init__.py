"""Retraining, the cloud stage after the Flink jobs: a retrain request (drift) is served by
:mod:`~edgestream.retrain.service`, which fetches the training set from the cloud topics
(:mod:`~edgestream.retrain.trainset`), refits the model (:mod:`~edgestream.retrain.refit`) and
publishes the signed candidate through :mod:`edgestream.rollout`."""
