"""Retraining, the cloud stage after the Flink jobs: a retrain request (drift) is served by
:mod:`~edgestream.retrain.service`; :mod:`~edgestream.retrain.candidate` fetches the training
set from the cloud topics (:mod:`~edgestream.retrain.trainset`), refits the model
(:mod:`~edgestream.retrain.refit`) and signs the candidate the service publishes through
:mod:`edgestream.rollout`."""
