"""What a run shows in TensorBoard: the event-file logger (rnnlab.dashboard.logger: a training run
and an eval run per job, one writer each, HParams session info, no duplicated steps after a
resume), the run's name (run_label), its settings (hparams), and callbacks that add charts
(charts), per-step cadence (cadence), histograms and the embedding projector (histograms) and
forecast figures during training (forecast)."""
