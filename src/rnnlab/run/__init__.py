"""The training job behind `train.py`, in named steps: build (build.py), check the resume checkpoint
(resume.py), train (job.py), evaluate after training (rnnlab.evaluation), write the results (outputs.py)."""
