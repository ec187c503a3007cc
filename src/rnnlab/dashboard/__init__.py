"""What a run shows in TensorBoard: the event-file logger (rnnlab.dashboard.logger: the runs
`<label>/train` and `<label>/val` per job, train and validation under the same tags, no duplicated
steps after a resume), the HParams session that a resume rewrites (session), the run's name
(run_label), its settings (hparams), and callbacks that add charts (charts), per-step cadence
(cadence), histograms and the embedding projector (histograms) and forecast figures during training
(forecast)."""
